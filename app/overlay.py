"""Boxes drawn over images with PIL: the layout solid, the model's re-grounded boxes dashed.

Every box has a thin dark halo so light palette colors stay visible on light images, and a
numbered tag (the object's row in the table) in its palette color.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from app.palette import RGB, color_of, text_color

Box = Sequence[float]  # pixel xyxy
DISPLAY_SIDE = 512  # long side of rendered overlays, in px
LINE = 3
HALO = (20, 20, 20)
DASH, GAP = 10, 6


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def display_size(width: int, height: int, side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(w, h) with the long side `side` and the aspect of width x height."""
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _scaled(box: Box, sx: float, sy: float) -> tuple[float, float, float, float]:
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def _solid(draw: ImageDraw.ImageDraw, box: Box, color: RGB) -> None:
    x1, y1, x2, y2 = box
    draw.rectangle((x1, y1, x2, y2), outline=HALO, width=LINE + 2)
    draw.rectangle((x1 + 1, y1 + 1, x2 - 1, y2 - 1), outline=color, width=LINE)


def _dashes(start: float, end: float):
    """(a, b) pieces of [start, end] with dash/gap rhythm."""
    pos = start
    while pos < end:
        yield pos, min(pos + DASH, end)
        pos += DASH + GAP


def _dashed(draw: ImageDraw.ImageDraw, box: Box, color: RGB) -> None:
    x1, y1, x2, y2 = box
    for width, fill in ((LINE + 2, HALO), (LINE, color)):
        for a, b in _dashes(x1, x2):
            draw.line((a, y1, b, y1), fill=fill, width=width)
            draw.line((a, y2, b, y2), fill=fill, width=width)
        for a, b in _dashes(y1, y2):
            draw.line((x1, a, x1, b), fill=fill, width=width)
            draw.line((x2, a, x2, b), fill=fill, width=width)


def _tag(draw: ImageDraw.ImageDraw, box: Box, text: str, color: RGB, bounds: tuple[int, int]) -> None:
    """A filled label at the box's top-left corner, kept inside the image."""
    font = _font(14)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 8, bottom - top + 6
    x = min(max(box[0], 0), bounds[0] - w)
    y = box[1] - h if box[1] - h >= 0 else min(box[1], bounds[1] - h)
    draw.rectangle((x, y, x + w, y + h), fill=color, outline=HALO)
    draw.text((x + 4 - left, y + 3 - top), text, fill=text_color(color), font=font)


def fit_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` as RGB at `size`; enlarging keeps pixels sharp, shrinking smooths them."""
    image = image.convert("RGB")
    if image.size == size:
        return image.copy()
    enlarging = size[0] >= image.width and size[1] >= image.height
    return image.resize(size, Image.Resampling.NEAREST if enlarging else Image.Resampling.LANCZOS)


def draw_cycle(
    image: Image.Image, layout_size: tuple[int, int], drawn: Sequence[Box], found: Sequence[Box | None],
    side: int = DISPLAY_SIDE,
) -> Image.Image:
    """A generated image stretched to the layout's aspect, drawn boxes solid, found ones dashed.

    `drawn` and `found` are in layout pixels (as `EchoGen.cycle` returns them); object i is
    drawn in `color_of(i)`; a None in `found` (no usable answer) draws nothing."""
    if len(drawn) != len(found):
        raise ValueError(f"{len(drawn)} drawn boxes but {len(found)} found ones")
    size = display_size(*layout_size, side=side)
    out = fit_image(image, size)
    sx, sy = size[0] / layout_size[0], size[1] / layout_size[1]
    draw = ImageDraw.Draw(out)
    for i, box in enumerate(found):
        if box is not None:
            _dashed(draw, _scaled(box, sx, sy), color_of(i))
    for i, box in enumerate(drawn):
        _solid(draw, _scaled(box, sx, sy), color_of(i))
        _tag(draw, _scaled(box, sx, sy), str(i + 1), color_of(i), size)
    return out


def draw_groundings(
    image: Image.Image, boxes: Sequence[tuple[int, str, Box | None]], side: int = DISPLAY_SIDE,
) -> Image.Image:
    """An image (fit to `side`) with `(color index, phrase, box in image pixels)` boxes, tagged."""
    size = display_size(*image.size, side=side)
    out = fit_image(image, size)
    sx, sy = size[0] / image.width, size[1] / image.height
    draw = ImageDraw.Draw(out)
    for index, phrase, box in boxes:
        if box is not None:
            scaled = _scaled(box, sx, sy)
            _solid(draw, scaled, color_of(index))
            _tag(draw, scaled, phrase, color_of(index), size)
    return out

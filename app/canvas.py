"""The layout canvas (a gradio_image_annotation value) <-> `model.layout.Layout`.

The canvas shows a white image (faint grid) whose pixels are the layout's pixels: a new layout is
`canvas_side(model.image_size)` px square (at least 512, for drawing comfort), an imported
one keeps its own width and height. `EchoGen` resizes layouts to its image size itself.
Canvas values are dicts `{"image": PIL | ndarray | path, "boxes": [{xmin, ymin, xmax, ymax,
label, color}]}`; box labels are the object phrases. The canvas puts each new box first in
`boxes`, so the layout's object order (drawing order) is the canvas list reversed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from model.layout import MAX_OBJECTS, Layout, LayoutError, parse_layout

from app.palette import color_of

MIN_CANVAS_SIDE = 512
MIN_BOX_MODEL_PX = 2  # a box thinner than this at the model's image size cannot be drawn by it


def canvas_side(image_size: int) -> int:
    return max(image_size, MIN_CANVAS_SIDE)


GRID_CELLS = 8  # faint guide lines; the canvas pixels themselves are never used


def blank_image(width: int, height: int) -> Image.Image:
    """White, with a faint 8x8 grid and border so the drawing area shows on a white page."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k in range(1, GRID_CELLS):
        x, y = round(k * width / GRID_CELLS), round(k * height / GRID_CELLS)
        draw.line((x, 0, x, height), fill=(238, 238, 238))
        draw.line((0, y, width, y), fill=(238, 238, 238))
    draw.rectangle((0, 0, width - 1, height - 1), outline=(200, 200, 200))
    return image


def blank_canvas(side: int) -> dict[str, Any]:
    return {"image": blank_image(side, side), "boxes": []}


def canvas_from_layout(layout: Layout) -> dict[str, Any]:
    """A white canvas of the layout's size with its boxes, object i in `color_of(i)`."""
    boxes = [
        {"xmin": round(x1), "ymin": round(y1), "xmax": round(x2), "ymax": round(y2), "label": obj.phrase,
         "color": color_of(i)}
        for i, obj in enumerate(layout.objects)
        for x1, y1, x2, y2 in [obj.box]
    ]
    return {"image": blank_image(layout.width, layout.height), "boxes": boxes[::-1]}


def recolored(canvas: dict[str, Any]) -> dict[str, Any]:
    """The same canvas with object i colored `color_of(i)` (deleting boxes can leave duplicates)."""
    boxes = canvas.get("boxes") or []
    return {**canvas, "boxes": [{**box, "color": color_of(len(boxes) - 1 - j)} for j, box in enumerate(boxes)]}


def _image_size(image: Any) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray) and image.ndim >= 2:
        return image.shape[1], image.shape[0]
    if isinstance(image, str):
        with Image.open(image) as im:
            return im.size
    raise LayoutError("the canvas has no image; press 'New canvas' to start again")


def layout_from_canvas(canvas: dict[str, Any] | None, caption: str) -> Layout:
    """What was drawn, validated; `LayoutError` says what to fix, box by box."""
    if not canvas or canvas.get("image") is None:
        raise LayoutError("the canvas has no image; press 'New canvas' to start again")
    width, height = _image_size(canvas["image"])
    boxes = canvas.get("boxes") or []
    if not boxes:
        raise LayoutError("the canvas has no boxes: draw at least one box and name it")
    if len(boxes) > MAX_OBJECTS:
        raise LayoutError(f"the canvas has {len(boxes)} boxes; the model takes at most {MAX_OBJECTS}: "
                          f"remove {len(boxes) - MAX_OBJECTS} (select a box, press Delete)")
    objects = []
    for i, box in enumerate(reversed(boxes), start=1):
        label = " ".join(str(box.get("label") or "").split())
        if not label:
            raise LayoutError(f"box {i} has no phrase: double-click it (or select it and press E) to name it")
        objects.append({"phrase": label, "box": [float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax")]})
    return parse_layout({"width": width, "height": height, "caption": caption or "", "objects": objects})


def check_drawable(layout: Layout, model_image_size: int) -> None:
    """Reject boxes too thin for the model to draw once the layout is resized to its images."""
    min_w = MIN_BOX_MODEL_PX * layout.width / model_image_size
    min_h = MIN_BOX_MODEL_PX * layout.height / model_image_size
    for i, obj in enumerate(layout.objects, start=1):
        x1, y1, x2, y2 = obj.box
        if x2 - x1 < min_w or y2 - y1 < min_h:
            raise LayoutError(
                f"box {i} ('{obj.phrase}') is {x2 - x1:.0f}x{y2 - y1:.0f} px, too small for the model's "
                f"{model_image_size} px images: make it at least {min_w:.0f}x{min_h:.0f} px"
            )

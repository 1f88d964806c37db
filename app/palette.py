"""Object colors: the layout canvas' own palette, so drawn, re-grounded and table colors match.

gradio_image_annotation colors a new box with `PALETTE[len(boxes) % len(PALETTE)]`; the app
recolors boxes by their position in the layout with the same list, so object i always has
`color_of(i)` on the canvas, in the cycle overlays, in the table and in the grounding tab.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

# gradio_image_annotation 0.5.x frontend default box colors, in order.
PALETTE: tuple[RGB, ...] = (
    (255, 168, 77), (92, 172, 238), (255, 99, 71), (118, 238, 118), (255, 145, 164),
    (0, 191, 255), (255, 218, 185), (255, 69, 0), (34, 139, 34), (255, 240, 245),
    (255, 193, 37), (255, 193, 7), (255, 250, 138),
)


def color_of(index: int) -> RGB:
    return PALETTE[index % len(PALETTE)]


def to_hex(color: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def text_color(background: RGB) -> RGB:
    """Black or white, whichever reads better on `background`."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)

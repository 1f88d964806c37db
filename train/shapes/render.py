"""Draw a Shapes World scene with PIL: supersampled antialiasing, optional blur, light noise.

Shapes are drawn at `supersample` times the output size and reduced with an area filter,
so edge pixels hold the exact coverage-weighted mix of shape and background colors.
`visibility` gives each object's visible share after occlusion, for failure analysis.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from train.shapes.geometry import shape_mask, unit_polygon
from train.shapes.world import Scene, ShapeObject


def _draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject, scale: int) -> None:
    # The box is [x1, x2) in output pixels; PIL fills the inclusive range [X1, X2 - 1].
    x1, y1 = obj.box[0] * scale, obj.box[1] * scale
    x2, y2 = obj.box[2] * scale - 1, obj.box[3] * scale - 1
    if obj.shape == "circle":
        draw.ellipse([x1, y1, x2, y2], fill=obj.rgb)
        return
    if obj.shape == "square":
        draw.rectangle([x1, y1, x2, y2], fill=obj.rgb)
        return
    polygon = unit_polygon(obj.shape, obj.star_inner)
    points = [(x1 + u * (x2 - x1), y1 + v * (y2 - y1)) for u, v in polygon]
    draw.polygon(points, fill=obj.rgb)


def render(scene: Scene) -> Image.Image:
    """The scene as a size x size RGB image; a pure function of the scene."""
    style, bg = scene.style, scene.background
    scale = style.supersample
    side = scene.size * scale
    canvas = Image.new("RGB", (side, side), bg.top)
    draw = ImageDraw.Draw(canvas)
    if bg.horizon < 1.0:
        draw.rectangle([0, round(bg.horizon * scene.size) * scale, side, side], fill=bg.bottom)
    for i in sorted(range(len(scene.objects)), key=lambda i: scene.z[i]):
        _draw_object(draw, scene.objects[i], scale)
    image = canvas.reduce(scale) if scale > 1 else canvas
    if style.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(style.blur))
    if style.noise > 0:
        rng = np.random.default_rng(style.noise_seed)
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels + rng.standard_normal(pixels.shape, dtype=np.float32) * style.noise
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
    return image


def visibility(scene: Scene) -> list[float]:
    """Share of each object's own pixels left visible by the objects drawn over it."""
    owner = np.full((scene.size, scene.size), -1, dtype=np.int16)
    full = []
    for i in sorted(range(len(scene.objects)), key=lambda i: scene.z[i]):
        obj = scene.objects[i]
        x1, y1, x2, y2 = obj.box
        mask = shape_mask(obj.shape, x2 - x1, y2 - y1, obj.star_inner)
        owner[y1:y2, x1:x2][mask] = i
        full.append((i, int(mask.sum())))
    counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(scene.objects))
    shares = [0.0] * len(scene.objects)
    for i, total in full:
        shares[i] = float(counts[i]) / total if total else 0.0
    return shares

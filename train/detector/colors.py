"""Pixel colors for the detector: background estimate, distance from it, and color names.

Object colors are named with HSV rules: seven hue sectors for the saturated colors and
darkness for black. Hue survives antialiasing (a blend of a color with a grey or near-white
background keeps its hue), so edge pixels keep their object's name.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Hue sectors in degrees, [start, end); red wraps around 0.
HUE_SECTORS = (
    ("red", 348, 15), ("orange", 15, 42), ("yellow", 42, 75), ("green", 75, 175),
    ("blue", 175, 252), ("purple", 252, 308), ("pink", 308, 348),
)
COLOR_NAMES = tuple(name for name, _, _ in HUE_SECTORS) + ("black",)
BLACK = len(HUE_SECTORS)


def to_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """[H, W, 3] float32 RGB in [0, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {array.shape}")
    return array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1]; rgb is [..., 3] in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    chroma = value - rgb.min(axis=-1)
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(value == r, (g - b) / safe % 6, np.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = np.where(chroma > 0, hue * 60.0, 0.0) % 360.0
    saturation = np.where(value > 0, chroma / np.where(value > 0, value, 1.0), 0.0)
    return hue, saturation, value


def _background_color(pixels: np.ndarray) -> np.ndarray:
    """Median of the light, unsaturated pixels of a border strip (all pixels if none are)."""
    _, s, v = rgb_to_hsv(pixels)
    light = pixels[(s < 0.2) & (v > 0.6)]
    return np.median(light if len(light) >= 4 else pixels, axis=0)


def estimate_background(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top, bottom) background colors from the top and bottom rows (equal for plain backgrounds)."""
    top = _background_color(np.concatenate([rgb[0], rgb[:2, 0], rgb[:2, -1]]))
    bottom = _background_color(np.concatenate([rgb[-1], rgb[-2:, 0], rgb[-2:, -1]]))
    return top, bottom


def _segment_nearest(rgb: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """The closest point of the segment top-bottom to each pixel (a sky/ground blend)."""
    axis = bottom - top
    t = np.clip((rgb - top) @ axis / float(axis @ axis), 0.0, 1.0)
    return top + t[..., None] * axis


def horizon_row(rgb: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> int:
    """The row where the left and right image borders turn from `top` to `bottom` colors."""
    borders = np.stack([rgb[:, 0], rgb[:, -1]], axis=1)  # [H, 2, 3]
    sky = (np.linalg.norm(borders - top, axis=-1) < np.linalg.norm(borders - bottom, axis=-1)).sum(axis=1)
    # agreement of "rows above h are sky, rows from h on are ground" for every h in 0..H
    above = np.concatenate([[0], np.cumsum(sky)])
    below = np.concatenate([np.cumsum((2 - sky)[::-1])[::-1], [0]])
    return int(np.argmax(above + below))


def background_image(rgb: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """[H, W, 3] the background behind each pixel: `top` above the horizon, `bottom` below,
    and the nearest sky/ground blend on the rows next to the horizon."""
    height = rgb.shape[0]
    if float(np.linalg.norm(top - bottom)) < 0.02:
        return np.broadcast_to(top, rgb.shape).astype(np.float32)
    horizon = horizon_row(rgb, top, bottom)
    rows = np.arange(height)[:, None, None]
    background = np.where(rows < horizon, top, bottom)
    blend = np.abs(rows - horizon + 0.5) <= 2.5
    return np.where(blend, _segment_nearest(rgb, top, bottom), background).astype(np.float32)


def background_distance(rgb: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """[H, W] RGB distance from each pixel to the background behind it."""
    return np.linalg.norm(rgb - background_image(rgb, top, bottom), axis=-1)


def color_labels(rgb: np.ndarray, distance: np.ndarray, min_saturation: float = 0.15, black_value: float = 0.3,
                 gray_value: float = 0.5, min_distance: float = 0.1) -> np.ndarray:
    """[H, W] int index into COLOR_NAMES, -1 for background or unnamed pixels.

    Colored: saturation >= min_saturation and value >= black_value, named by hue sector.
    Black: value < black_value, or unsaturated and value < gray_value (a black edge blended
    half-way into a light background). Pixels within min_distance of the background: -1."""
    hue, sat, val = rgb_to_hsv(rgb)
    labels = np.full(rgb.shape[:2], -1, dtype=np.int8)
    chromatic = (sat >= min_saturation) & (val >= black_value)
    for index, (_, start, end) in enumerate(HUE_SECTORS):
        in_sector = (hue >= start) & (hue < end) if start < end else (hue >= start) | (hue < end)
        labels[chromatic & in_sector] = index
    black = (val < black_value) | ((sat < min_saturation) & (val < gray_value))
    labels[black] = BLACK
    labels[distance < min_distance] = -1
    return labels

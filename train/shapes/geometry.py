"""Shape geometry in the unit box: the one definition shared by the renderer and the detector.

Every shape is stretched to fill its box exactly: its leftmost, rightmost, top and bottom
points touch the box sides, so a shape's box is its ground truth. Coordinates are unit-box
(u right, v down), both in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "diamond")
STAR_INNER_RANGE = (0.38, 0.5)  # inner / outer radius of the five-pointed star
STAR_INNER_TYPICAL = 0.44


def star_vertices(inner: float) -> np.ndarray:
    """[10, 2] vertices of an upright five-pointed star, normalized to fill the unit box."""
    angles = -math.pi / 2 + np.arange(10) * math.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / (hi - lo)


def unit_polygon(shape: str, inner: float = STAR_INNER_TYPICAL) -> np.ndarray | None:
    """[k, 2] unit-box vertices of a polygonal shape; None for the circle (an ellipse)."""
    if shape == "circle":
        return None
    if shape == "square":
        return np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    if shape == "triangle":  # apex up, base along the bottom side
        return np.array([[0.5, 0], [1, 1], [0, 1]], dtype=float)
    if shape == "diamond":
        return np.array([[0.5, 0], [1, 0.5], [0.5, 1], [0, 0.5]], dtype=float)
    if shape == "star":
        return star_vertices(inner)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _inside_polygon(u: np.ndarray, v: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test, vectorized over the points (u, v)."""
    inside = np.zeros(np.broadcast(u, v).shape, dtype=bool)
    for (u1, v1), (u2, v2) in zip(polygon, np.roll(polygon, -1, axis=0)):
        if v1 == v2:
            continue
        crosses = (v1 > v) != (v2 > v)
        u_at = u1 + (v - v1) * (u2 - u1) / (v2 - v1)
        inside ^= crosses & (u < u_at)
    return inside


def inside(shape: str, u: np.ndarray, v: np.ndarray, inner: float = STAR_INNER_TYPICAL) -> np.ndarray:
    """Whether unit-box points (u, v) lie inside `shape` (arrays broadcast together)."""
    if shape == "circle":
        return (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1.0
    in_box = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if shape == "square":
        return in_box
    if shape == "triangle":
        return in_box & (np.abs(2 * u - 1) <= v)
    if shape == "diamond":
        return np.abs(2 * u - 1) + np.abs(2 * v - 1) <= 1.0
    return in_box & _inside_polygon(u, v, unit_polygon(shape, inner))


def shape_mask(shape: str, width: int, height: int, inner: float = STAR_INNER_TYPICAL,
               flip: bool = False) -> np.ndarray:
    """[height, width] bool mask of `shape` filling a width x height box, sampled at pixel centers.

    `flip` turns the shape upside down (a triangle with its apex at the bottom)."""
    u = ((np.arange(width) + 0.5) / width)[None, :]
    v = ((np.arange(height) + 0.5) / height)[:, None]
    if flip:
        v = 1.0 - v
    return np.broadcast_to(inside(shape, u, v, inner), (height, width)).copy()

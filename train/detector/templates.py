"""Shape templates for the detector: which shape, and which box, best explain a component.

A hypothesis is a shape (a triangle may be upside down) drawn in a float box, blurred by
the component's estimated blur and cut at 50% coverage, as the observed mask was. Its box
is the observed extent corrected by how far that shape's own blurred edge reaches past
(flat sides) or falls short of (thin tips) its box, so blurry images keep accurate boxes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from train.shapes.geometry import SHAPES, inside, shape_mask

SUPERSAMPLE = 2  # sub-samples per pixel side when drawing a template
MIN_SIGMA = 0.4  # below this the blur is ignored (plain antialiasing)
SETTLED_FIT = 0.93  # a visible box whose template already fits this well is not grown
GROWTH_GAIN = 0.02  # least template-fit gain that lets a hidden side grow by a pixel
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Fit:
    shape: str
    flip: bool
    box: Box  # pixel xyxy in the coordinates of the observed mask
    score: float


def hypotheses():
    """(shape, flipped) pairs: every shape upright, and the triangle upside down too."""
    for shape in SHAPES:
        for flip in ((False, True) if shape == "triangle" else (False,)):
            yield shape, flip


def coverage(shape: str, flip: bool, box: Box, size: tuple[int, int], sigma: float) -> np.ndarray:
    """[h, w] float coverage of `shape` in a float `box` on an h x w canvas, blurred by sigma."""
    height, width = size
    step = 1.0 / SUPERSAMPLE
    xs = (np.arange(width * SUPERSAMPLE) + 0.5) * step
    ys = (np.arange(height * SUPERSAMPLE) + 0.5) * step
    u = ((xs - box[0]) / max(box[2] - box[0], 1e-6))[None, :]
    v = ((ys - box[1]) / max(box[3] - box[1], 1e-6))[:, None]
    fine = np.broadcast_to(inside(shape, u, 1.0 - v if flip else v), (len(ys), len(xs))).astype(np.float32)
    if sigma >= MIN_SIGMA:
        fine = ndimage.gaussian_filter(fine, sigma * SUPERSAMPLE, mode="constant")
    return fine.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3))


def _extent(soft: np.ndarray, threshold: float) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(soft >= threshold)
    if len(ys) == 0:
        return None
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def edge_offsets(shape: str, flip: bool, width: float, height: float, sigma: float,
                 threshold: float) -> tuple[float, float, float, float]:
    """How far the shape's `threshold` extent sits from its true box, per side (x1, y1, x2, y2)."""
    if sigma < MIN_SIGMA:
        return 0.0, 0.0, 0.0, 0.0
    return _edge_offsets(shape, flip, round(width), round(height), round(sigma, 1), threshold)


@functools.lru_cache(maxsize=8192)
def _edge_offsets(shape: str, flip: bool, width: int, height: int, sigma: float,
                  threshold: float) -> tuple[float, float, float, float]:
    pad = math.ceil(3 * sigma) + 1
    box = (pad, pad, pad + width, pad + height)
    size = (math.ceil(height) + 2 * pad, math.ceil(width) + 2 * pad)
    extent = _extent(coverage(shape, flip, box, size, sigma), threshold)
    if extent is None:
        return 0.0, 0.0, 0.0, 0.0
    return tuple(float(e - b) for e, b in zip(extent, box))  # type: ignore[return-value]


def iou(mask: np.ndarray, template: np.ndarray, care: np.ndarray) -> float:
    union = np.count_nonzero((mask | template) & care)
    return np.count_nonzero(mask & template) / union if union else 0.0


def best_fit(mask: np.ndarray, observed: tuple[int, int, int, int], sigma: float,
             ignore: np.ndarray | None = None, threshold: float = 0.25) -> Fit:
    """The hypothesis that best explains `mask` (pixels of coverage >= 0.5) whose `threshold`
    extent is `observed` (x1, y1, x2, y2 in mask coordinates).

    The score averages the template IoU with the IoU that ignores template pixels falling on
    `ignore` (other objects, which may hide part of this one): a shape hidden in part still
    fits, while a shape drawn over another is not mistaken for its box."""
    lenient = ~ignore | mask if ignore is not None else np.ones_like(mask)
    strict = np.ones_like(mask)
    width, height = observed[2] - observed[0], observed[3] - observed[1]
    best = Fit("square", False, tuple(map(float, observed)), -1.0)  # type: ignore[arg-type]
    for shape, flip in hypotheses():
        offsets = edge_offsets(shape, flip, width, height, sigma, threshold)
        box = tuple(o - d for o, d in zip(observed, offsets))
        template = coverage(shape, flip, box, mask.shape, sigma) >= 0.5
        score = (iou(mask, template, strict) + iou(mask, template, lenient)) / 2
        if score > best.score:
            best = Fit(shape, flip, box, score)  # type: ignore[arg-type]
    return best


def amodal_box(box: list[int], shape: str, flip: bool, visible: np.ndarray, occluder: np.ndarray,
               max_growth: float = 1.0) -> list[int]:
    """Grow a visible box into the objects in front of it until the shape template best fits.

    A side grows only where the pixels just past it belong to another object, and only while
    the template fit over the pixels no occluder covers improves by GROWTH_GAIN; `visible`
    and `occluder` are full-image bool masks."""
    height, width = visible.shape
    box = list(box)

    def fit(b: list[int]) -> float:
        crop = (slice(b[1], b[3]), slice(b[0], b[2]))
        mask = visible[crop]
        return iou(mask, shape_mask(shape, b[2] - b[0], b[3] - b[1], flip=flip), ~occluder[crop] | mask)

    for side in range(4):  # 0 left, 1 top, 2 right, 3 bottom
        x1, y1, x2, y2 = box
        strip = (occluder[y1:y2, x1 - 1] if x1 > 0 else None, occluder[y1 - 1, x1:x2] if y1 > 0 else None,
                 occluder[y1:y2, x2] if x2 < width else None, occluder[y2, x1:x2] if y2 < height else None)[side]
        if strip is None or strip.size == 0 or strip.mean() < 0.3:
            continue
        best, best_score = box, fit(box)
        if best_score >= SETTLED_FIT:
            break
        room = (x1, y1, width - x2, height - y2)[side]
        for step in range(1, min(room, int(max_growth * (x2 - x1 if side % 2 == 0 else y2 - y1))) + 1):
            candidate = list(box)
            candidate[side] += -step if side < 2 else step
            score = fit(candidate)
            if score > best_score + GROWTH_GAIN:
                best, best_score = candidate, score
        box = best
    return box

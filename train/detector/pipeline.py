"""The detector pipeline: colored pixels -> components -> fitted shapes with boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from train.detector.colors import COLOR_NAMES, background_image, color_labels, estimate_background, to_array
from train.detector.templates import amodal_box, best_fit

EDGE_MARGIN = 3  # pixels around a component searched for its faint (antialiased, blurred) edge
# Partial-coverage (10%-90%) band pixels per edge pixel ~ BAND_BASE + BAND_PER_SIGMA * sigma,
# measured on Shapes World renders blurred by known amounts (a Gaussian edge: 2.56 sigma).
BAND_BASE, BAND_PER_SIGMA = 0.4, 2.7
MAX_RESIDUAL = 0.2  # RGB distance (0-1) beyond which an unclaimed pixel is no blend of this object
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    box: Box  # pixel xyxy, x2/y2 exclusive
    color: str
    shape: str
    score: float  # template fit of the best shape, in [0, 1]

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class DetectorConfig:
    min_saturation: float = field(default=0.15, metadata={"help": "least HSV saturation of a colored pixel"})
    black_value: float = field(default=0.3, metadata={"help": "pixels darker than this are black"})
    gray_value: float = field(default=0.5, metadata={"help": "unsaturated pixels darker than this are black"})
    background_distance: float = field(default=0.1, metadata={"help": "least RGB distance (0-1) from the background"})
    core_distance: float = field(default=0.25, metadata={"help": "least background distance of a component's core"})
    min_area: float = field(default=0.002, metadata={"help": "smallest component, share of the image area"})
    min_score: float = field(default=0.3, metadata={"help": "drop detections whose template fit is lower"})
    edge_alpha: float = field(default=0.25, metadata={"help": "least coverage of a box-edge pixel (thin tips count)"})
    amodal: bool = field(default=True, metadata={"help": "grow boxes of partly hidden objects into their occluders"})

    def __post_init__(self):
        if not 0 < self.edge_alpha < 0.5:
            raise ValueError(f"edge_alpha must be in (0, 0.5), got {self.edge_alpha}")


@dataclass(frozen=True)
class _Component:
    color: int  # index into COLOR_NAMES
    window: tuple[slice, slice]  # its bounding slices grown by EDGE_MARGIN
    pixels: np.ndarray  # bool mask within window


def _grow(window: tuple[slice, slice], margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    rows, cols = (slice(max(0, w.start - margin), min(n, w.stop + margin)) for w, n in zip(window, shape))
    return rows, cols


def _thick(component: np.ndarray) -> bool:
    """False for thin fringes, such as the blend of two colors along an object's edge."""
    core = ndimage.binary_erosion(component, structure=np.ones((3, 3)))
    return core.sum() >= max(4, 0.2 * component.sum())


def find_components(labels: np.ndarray, distance: np.ndarray, cfg: DetectorConfig) -> list[_Component]:
    """Connected same-color regions big, thick and far enough from the background to be objects."""
    height, width = labels.shape
    min_pixels = max(4, cfg.min_area * height * width)
    found = []
    for color_index in range(len(COLOR_NAMES)):
        components, _ = ndimage.label(labels == color_index, structure=np.ones((3, 3)))
        for k, window in enumerate(ndimage.find_objects(components), start=1):
            if window is None:
                continue
            window = _grow(window, EDGE_MARGIN, (height, width))
            pixels = components[window] == k
            if pixels.sum() < min_pixels or distance[window][pixels].max() < cfg.core_distance:
                continue
            if _thick(pixels):
                found.append(_Component(color_index, window, pixels))
    return found


def estimate_blur(alpha: np.ndarray, region: np.ndarray, solid: np.ndarray) -> float:
    """Gaussian sigma of an object's edges, from the width of its partial-coverage band."""
    edge = solid & ~ndimage.binary_erosion(solid)
    band = region & (alpha > 0.1) & (alpha < 0.9)
    perimeter = max(int(edge.sum()), 1)
    return max(0.0, band.sum() / perimeter - BAND_BASE) / BAND_PER_SIGMA


def _core_color(colors: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """An object's own color: the median of its pixels least mixed with the background."""
    return np.median(colors[distance >= np.percentile(distance, 75)], axis=0)


def _unmix(rgb: np.ndarray, surround: np.ndarray, core: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, residual): each pixel as surround + alpha * (core - surround), and how far off it is."""
    axis = core - surround
    alpha = ((rgb - surround) * axis).sum(axis=-1) / np.maximum((axis * axis).sum(axis=-1), 1e-6)
    residual = np.linalg.norm(rgb - surround - alpha[..., None] * axis, axis=-1)
    return alpha, residual


def _coverage(rgb: np.ndarray, background: np.ndarray, owner: np.ndarray, cores: np.ndarray, index: int,
              pixels: np.ndarray) -> np.ndarray:
    """[h, w] alpha of part `index` over its window: each pixel unmixed as a blend of the part's
    core color with what surrounds it (the background, or the nearest other object, whichever
    explains it better). Unclaimed pixels that are no such blend (another object's faint edge)
    get 0."""
    alpha, residual = _unmix(rgb, background, cores[index])
    others = (owner >= 0) & (owner != index)
    if others.any():
        gap, (iy, ix) = ndimage.distance_transform_edt(~others, return_indices=True)
        near_alpha, near_residual = _unmix(rgb, cores[owner[iy, ix]], cores[index])
        closer = (gap <= EDGE_MARGIN) & (near_residual < residual)
        alpha = np.where(closer, near_alpha, alpha)
        residual = np.where(closer, near_residual, residual)
    alpha = np.where(pixels | (residual <= MAX_RESIDUAL), alpha, 0.0)
    return np.clip(alpha, 0.0, 1.0)


def _measure(index: int, parts: list[_Component], owner: np.ndarray, rgb: np.ndarray, background: np.ndarray,
             distance: np.ndarray, cores: np.ndarray, cfg: DetectorConfig) -> Detection | None:
    part = parts[index]
    window, pixels = part.window, part.pixels
    alpha = _coverage(rgb[window], background[window], owner[window], cores, index, pixels)
    mine = owner[window] == -1  # pixels no other object claims: background and edge fringes
    region = ndimage.binary_dilation(pixels, iterations=EDGE_MARGIN) & (mine | pixels)
    solid = ndimage.binary_fill_holes(region & (alpha >= 0.5))
    if solid.sum() < max(4, cfg.min_area * distance.size):
        return None
    ys, xs = np.nonzero(region & (alpha >= cfg.edge_alpha))
    observed = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    sigma = estimate_blur(alpha, region, solid)
    fit = best_fit(solid, observed, sigma, ignore=~mine & ~pixels, threshold=cfg.edge_alpha)
    if fit.score < cfg.min_score:
        return None
    top, left = window[0].start, window[1].start
    height, width = distance.shape
    limits = (width, height, width, height)
    box = [min(max(v + offset, 0.0), float(limit))
           for v, offset, limit in zip(fit.box, (left, top, left, top), limits)]
    if cfg.amodal:
        occluder = (owner >= 0) & (owner != index)
        visible = np.zeros_like(occluder)
        visible[window] = solid
        start = [round(v) for v in box]
        if start[2] > start[0] and start[3] > start[1]:
            grown = amodal_box(start, fit.shape, fit.flip, visible, occluder)
            box = [float(g) if g != s else b for g, s, b in zip(grown, start, box)]
    return Detection(tuple(round(float(v), 2) for v in box), COLOR_NAMES[part.color], fit.shape,
                     round(float(fit.score), 4))


def detect(image: Image.Image | np.ndarray, cfg: DetectorConfig = DetectorConfig()) -> list[Detection]:
    """All shapes found in an RGB image, best score first."""
    rgb = to_array(image)
    background = background_image(rgb, *estimate_background(rgb))  # [H, W, 3]
    distance = np.linalg.norm(rgb - background, axis=-1)
    labels = color_labels(rgb, distance, cfg.min_saturation, cfg.black_value, cfg.gray_value, cfg.background_distance)
    parts = find_components(labels, distance, cfg)
    owner = np.full(distance.shape, -1, dtype=np.int16)  # which part claims each pixel
    for i, part in enumerate(parts):
        owner[part.window][part.pixels] = i
    cores = np.array([_core_color(rgb[p.window][p.pixels], distance[p.window][p.pixels]) for p in parts])
    cores = cores.reshape(-1, 3)
    measured = (_measure(i, parts, owner, rgb, background, distance, cores, cfg) for i in range(len(parts)))
    detections = [d for d in measured if d is not None]
    return sorted(detections, key=lambda d: -d.score)

"""Degrade clean renders the way generated images tend to be (blur, noise, JPEG), to measure
how the detector holds up on images it will judge: `python -m train.eval detector --blur ...`."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Degradation:
    blur: float = 0.0  # Gaussian blur radius in pixels
    noise: float = 0.0  # Gaussian noise sigma on the 0-255 scale
    jpeg: int | None = None  # JPEG quality 1-95, None for no compression

    def __post_init__(self):
        if self.blur < 0 or self.noise < 0:
            raise ValueError(f"blur and noise must be >= 0, got {self.blur}, {self.noise}")
        if self.jpeg is not None and not 1 <= self.jpeg <= 95:
            raise ValueError(f"jpeg quality must be in [1, 95], got {self.jpeg}")

    @property
    def active(self) -> bool:
        return self.blur > 0 or self.noise > 0 or self.jpeg is not None


def degrade(image: Image.Image, how: Degradation, seed: int = 0) -> Image.Image:
    """Blur, then add noise (seeded), then JPEG round-trip; a pure function of its arguments."""
    image = image.convert("RGB")
    if how.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(how.blur))
    if how.noise > 0:
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels + np.random.default_rng(seed).standard_normal(pixels.shape, dtype=np.float32) * how.noise
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
    if how.jpeg is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=how.jpeg)
        buffer.seek(0)
        with Image.open(buffer) as compressed:
            image = compressed.convert("RGB")
    return image

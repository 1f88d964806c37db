"""Untrusted images -> clean RGB PIL images, or an `ImageInputError` that says what is wrong."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from model.inputs import to_rgb

MAX_IMAGE_BYTES = 25 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000


class ImageInputError(ValueError):
    """An image that cannot be used, with a message for the user."""


def _check_pixels(image: Image.Image) -> None:
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise ImageInputError(
            f"the image is {image.width}x{image.height}; the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        )


def sanitize_image(image: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, RGB (alpha over white, 16-bit rescaled)."""
    _check_pixels(image)
    if getattr(image, "is_animated", False):
        image.seek(0)
    try:
        image = ImageOps.exif_transpose(image)
        return to_rgb(image).copy()
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageInputError(f"the image could not be decoded: {err}") from None


def open_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"image not found: {path}")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise ImageInputError(f"image {path} is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(image)
                image.load()
                return sanitize_image(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageInputError(f"{path} is not a readable image ({type(err).__name__})") from None
    except OSError as err:
        raise ImageInputError(f"{path} could not be read: {err}") from None

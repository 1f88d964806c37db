"""Uploaded files -> clean inputs, or a `gr.Error` that says what is wrong.

Images go through `model.images.open_image` (size limits, EXIF rotation, first frame of an
animation, RGBA / grayscale / 16-bit -> RGB); this module adds the notes a user should see
about what was changed, and reads uploaded layout files with a size limit.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from PIL import Image, UnidentifiedImageError

from model.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageInputError, open_image
from model.layout import MAX_LAYOUT_FILE_BYTES, LayoutError

MAX_UPLOAD_MB = MAX_IMAGE_BYTES // 2**20  # also given to `launch(max_file_size=...)`


class UploadedImage(gr.Image):
    """`gr.Image` whose own decoding of an upload fails with a clear `gr.Error`, not a bare "Error".

    gr.Image opens every upload with PIL before a handler sees it; a file that is not an image,
    or one past PIL's decompression-bomb limit, would otherwise fail there without a message."""

    is_template = True  # the frontend draws it as a plain gr.Image

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Image.DecompressionBombError:
            raise gr.Error(f"the image is too large: the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels",
                           print_exception=False) from None
        except (UnidentifiedImageError, OSError) as err:
            raise gr.Error(f"the upload is not a readable image ({type(err).__name__})",
                           print_exception=False) from None


def _notes(path: str) -> list[str]:
    """What sanitizing will change, read from the file header (cheap)."""
    notes = []
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                notes.append(f"the image is animated ({im.n_frames} frames): using its first frame")
            if im.getexif().get(0x0112, 1) not in (1, None):
                notes.append("the image was rotated as its EXIF orientation says")
            if im.mode not in ("RGB", "L", "P"):
                notes.append(f"the image was converted from {im.mode} to RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        pass  # open_image reports it
    return notes


def read_image(path: str | os.PathLike | None) -> tuple[Image.Image, list[str]]:
    """(RGB image, notes for gr.Warning); `ImageInputError` for missing or unusable files."""
    if not path:
        raise ImageInputError("no image: upload one, or send a generated image from the Layout tab")
    image = open_image(path)
    return image, _notes(str(path))


def read_layout_file(path: str | os.PathLike | None) -> str:
    """The text of an uploaded .json / .jsonl layout file."""
    if not path:
        raise LayoutError("no file was uploaded")
    path = Path(path)
    if path.stat().st_size > MAX_LAYOUT_FILE_BYTES:
        raise LayoutError(f"the layout file is larger than {MAX_LAYOUT_FILE_BYTES // 2**20} MiB")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LayoutError("the layout file is not UTF-8 text (expected .json or .jsonl)") from None

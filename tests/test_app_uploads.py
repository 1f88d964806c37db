"""Odd and oversized uploads reach the model as clean RGB images, or fail with a clear message."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from app_fakes import ScriptedEchoGen
from PIL import Image

from app.handlers import Handlers
from app.uploads import UploadedImage, read_image
from gradio.data_classes import ImageData


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return str(path)


@pytest.fixture()
def odd_images(tmp_path):
    """name -> (path, size the model should see, a note the user should get or None)."""
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    gray16 = Image.fromarray(np.linspace(0, 65535, 40 * 30, dtype=np.uint16).reshape(30, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    return {
        "rgba": (_save(rgba, tmp_path / "a.png"), (40, 30), "converted from RGBA"),
        "gray": (_save(Image.new("L", (40, 30), 90), tmp_path / "g.png"), (40, 30), None),
        "gray16": (_save(gray16, tmp_path / "g16.png"), (40, 30), "converted from I;16"),
        "exif": (_save(Image.new("RGB", (40, 30)), tmp_path / "e.jpg", exif=exif), (30, 40), "EXIF"),
        "animated": (_save(frames[0], tmp_path / "x.gif", save_all=True, append_images=frames[1:]), (40, 30),
                     "animated (3 frames)"),
        "cmyk": (_save(Image.new("CMYK", (40, 30)), tmp_path / "c.jpg"), (40, 30), "converted from CMYK"),
    }


@pytest.mark.parametrize("name", ["rgba", "gray", "gray16", "exif", "animated", "cmyk"])
def test_odd_images_become_rgb_with_notes(odd_images, name):
    path, size, note = odd_images[name]
    image, notes = read_image(path)
    assert image.mode == "RGB" and image.size == size
    assert any(note in n for n in notes) if note else notes == []


def test_grounding_accepts_odd_images_and_warns(odd_images):
    fake = ScriptedEchoGen()
    path, size, _ = odd_images["exif"]
    with pytest.warns(UserWarning, match="EXIF"):
        Handlers(fake).ground_all(path, "red circle")
    assert fake.calls[-1][1] == [size]


def test_16_bit_images_keep_their_range(odd_images):
    image, _ = read_image(odd_images["gray16"][0])
    assert image.getextrema()[0] == (0, 255)


@pytest.mark.parametrize("make, message", [
    (lambda p: _save(Image.new("L", (7000, 6000)), p / "big.png"), "limit is 40 megapixels"),
    (lambda p: (p / "huge.png").write_bytes(b"\0" * (26 * 2**20)) and str(p / "huge.png"), "larger than 25 MiB"),
    (lambda p: (p / "text.png").write_text("hello") and str(p / "text.png"), "not a readable image"),
    (lambda p: str(p / "gone.png"), "not found"),
])
def test_unusable_images_give_a_clear_error(tmp_path, make, message):
    with pytest.raises(gr.Error, match=message):
        Handlers(ScriptedEchoGen()).ground_all(make(tmp_path), "red circle")


@pytest.mark.parametrize("make, message", [
    (lambda p: (p / "text.png").write_text("hello") and str(p / "text.png"), "not a readable image"),
    (lambda p: _save(Image.new("1", (15000, 13000)), p / "bomb.png"), "too large"),
])
def test_upload_component_reports_files_gradio_cannot_open(tmp_path, make, message):
    component = UploadedImage(type="filepath", image_mode=None)
    assert component.get_block_name() == "image"
    with pytest.raises(gr.Error, match=message):
        component.preprocess(ImageData(path=make(tmp_path), orig_name="upload.png"))

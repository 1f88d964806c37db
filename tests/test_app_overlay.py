"""Overlay rendering and the palette: pixel checks on small literal images."""

from __future__ import annotations

import pytest
from PIL import Image

from app.overlay import display_size, draw_cycle, draw_groundings, fit_image
from app.palette import PALETTE, color_of, text_color, to_hex

GREY = (128, 128, 128)


def grey(size=(64, 64)) -> Image.Image:
    return Image.new("RGB", size, GREY)


def count(image: Image.Image, color) -> int:
    return sum(1 for px in image.getdata() if px == color)


def test_palette_matches_the_canvas_default_colors():
    assert len(PALETTE) == 13
    assert color_of(0) == (255, 168, 77) and color_of(13) == color_of(0)
    assert to_hex((255, 168, 77)) == "#ffa84d"
    assert text_color((255, 255, 255)) == (0, 0, 0) and text_color((0, 0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("size, expected", [((512, 512), (512, 512)), ((128, 128), (512, 512)),
                                            ((768, 512), (512, 341)), ((100, 400), (128, 512))])
def test_display_size_keeps_the_aspect(size, expected):
    assert display_size(*size) == expected


def test_fit_image_enlarges_sharply_and_converts_to_rgb():
    small = Image.new("L", (2, 1))
    small.putpixel((1, 0), 255)
    big = fit_image(small, (4, 2))
    assert big.mode == "RGB" and big.getpixel((3, 1)) == (255, 255, 255) and big.getpixel((1, 1)) == (0, 0, 0)


def test_drawn_box_is_solid_and_found_box_is_dashed_in_the_same_color():
    drawn, found = [(64, 64, 448, 448)], [(96, 96, 416, 416)]
    out = draw_cycle(grey(), (512, 512), drawn, found)
    color = color_of(0)
    assert out.size == (512, 512)
    # The solid outline has no gaps along its bottom edge (top-left carries the tag).
    assert all(out.getpixel((x, 447)) == color for x in range(80, 440))
    # The dashed outline alternates between the color and the image.
    row = [out.getpixel((x, 416)) for x in range(110, 400)]
    assert color in row and GREY in row
    # Inside both boxes the image is untouched.
    assert out.getpixel((256, 256)) == GREY


def test_each_object_has_its_palette_color_and_missing_boxes_draw_nothing():
    drawn = [(10, 10, 100, 100), (200, 200, 300, 300)]
    with_found = draw_cycle(grey(), (512, 512), drawn, [(20, 20, 90, 90), (210, 210, 290, 290)])
    without = draw_cycle(grey(), (512, 512), drawn, [None, None])
    for i in range(2):
        assert count(with_found, color_of(i)) > count(without, color_of(i)) > 0


def test_cycle_overlay_maps_layout_pixels_to_the_display():
    # A 1024x512 layout is shown at 512x256: the drawn box at x=512..1024 lands on the right half.
    out = draw_cycle(grey((128, 128)), (1024, 512), [(512, 0, 1024, 512)], [None])
    assert out.size == (512, 256)
    assert out.getpixel((300, 200)) == GREY  # inside the box
    assert out.getpixel((257, 200)) == color_of(0)  # its left edge


def test_draw_cycle_rejects_mismatched_lists():
    with pytest.raises(ValueError):
        draw_cycle(grey(), (64, 64), [(0, 0, 10, 10)], [])


def test_draw_groundings_tags_each_phrase_in_its_color():
    image = grey((200, 100))
    out = draw_groundings(image, [(0, "red circle", (10, 10, 90, 90)), (3, "blue", (110, 10, 190, 90)),
                                  (1, "gone", None)])
    assert out.size == (512, 256)
    assert count(out, color_of(0)) > 0 and count(out, color_of(3)) > 0
    assert count(out, color_of(1)) == 0
    assert image.getpixel((50, 50)) == GREY  # the input is not drawn on

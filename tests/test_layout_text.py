import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.layout import parse_layout
from model.layout_text import (
    denormalize_box,
    format_layout,
    format_object,
    letterbox_denormalize,
    letterbox_normalize,
    normalize_box,
    parse_box,
    parse_layout_text,
)

LAYOUT = parse_layout({"width": 200, "height": 100, "caption": "",
                       "objects": [{"phrase": "red circle", "box": [10, 10, 60, 60]},
                                   {"phrase": "blue square in front", "box": [100, 20, 200, 100]}]})


def test_layout_text_is_plangen_format():
    assert format_layout(LAYOUT) == (
        "<grounding><ref>red circle</ref><box>[50, 100, 300, 600]</box>"
        "<ref>blue square in front</ref><box>[500, 200, 1000, 1000]</box></grounding>"
    )


def test_format_parse_round_trip():
    parsed = parse_layout_text(format_layout(LAYOUT))
    assert [p.phrase for p in parsed] == LAYOUT.phrases
    assert [p.box for p in parsed] == [(50, 100, 300, 600), (500, 200, 1000, 1000)]
    assert all(p.valid for p in parsed)


@given(st.tuples(*[st.integers(0, 1000)] * 4))
def test_any_valid_box_round_trips(box):
    x1, x2 = sorted(box[0::2])
    y1, y2 = sorted(box[1::2])
    parsed = parse_box(format_object("thing", (x1, y1, x2, y2)))
    if x2 > x1 and y2 > y1:
        assert parsed.valid and parsed.box == (x1, y1, x2, y2)
    else:
        assert not parsed.valid and parsed.box is None


@pytest.mark.parametrize("text, box, valid", [
    ("[12, 40, 300, 500]</box>", (12, 40, 300, 500), True),
    ("  [ 12 ,40,300 , 500 ]", (12, 40, 300, 500), True),
    ("12 40 300 500</box>", (12, 40, 300, 500), True),
    ("[12, 40, 300, 500, 7]</box>", (12, 40, 300, 500), False),  # five numbers
    ("[12, 40, 1300, 500]</box>", (12, 40, 1000, 500), False),  # out of range, clamped
    ("[-5, 40, 300, 500]</box>", (0, 40, 300, 500), False),
    ("[300, 40, 12, 500]</box>", None, False),  # x2 < x1
    ("[12, 40, 300", None, False),  # cut off
    ("", None, False),
    ("<box></box>", None, False),
    ("[1.5, 2, 300.7, 400]", (2, 2, 301, 400), True),
])
def test_malformed_answers_are_flagged_not_raised(text, box, valid):
    parsed = parse_box(text)
    assert parsed.box == box and parsed.valid is valid


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("0123456789[], <>/boxref-.e\n")), max_size=60))
def test_parser_never_raises_on_junk(text):
    parsed = parse_box(text)
    assert parsed.box is None or len(parsed.box) == 4
    for entry in parse_layout_text("<ref>a</ref>" + text):
        assert entry.phrase == "a"


def test_parser_survives_random_bytes():
    rng = random.Random(0)
    for _ in range(500):
        junk = "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(0, 40)))
        parse_box(junk)
        parse_layout_text(junk)
    assert parse_box(None).valid is False  # type: ignore[arg-type]


def test_normalize_denormalize():
    assert normalize_box((10, 10, 60, 60), 200, 100) == (50, 100, 300, 600)
    assert denormalize_box((50, 100, 300, 600), 200, 100) == pytest.approx((10, 10, 60, 60))
    assert normalize_box((-5, 0, 300, 50), 200, 100) == (0, 0, 1000, 500)  # clamped


def test_letterbox_matches_janus_center_padding():
    # A 200x100 image is padded to 200x200 with 50 px above and below.
    assert letterbox_normalize((0, 0, 200, 100), 200, 100) == (0, 250, 1000, 750)
    assert letterbox_denormalize((0, 250, 1000, 750), 200, 100) == pytest.approx((0, 0, 200, 100))
    # A box in the padding clips to the image.
    assert letterbox_denormalize((0, 0, 500, 100), 200, 100) == pytest.approx((0, 0, 100, 0))
    # Square images are unchanged.
    assert letterbox_normalize((10, 10, 60, 60), 100, 100) == normalize_box((10, 10, 60, 60), 100, 100)

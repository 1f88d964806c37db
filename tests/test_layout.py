import json
import math

import pytest

from model.layout import (
    MAX_OBJECTS,
    Layout,
    LayoutError,
    dumps_layouts,
    from_instancediffusion,
    load_layouts,
    loads_layouts,
    parse_layout,
)


def layout_dict(**overrides):
    data = {"width": 200, "height": 100, "caption": "two shapes",
            "objects": [{"phrase": "red circle", "box": [10, 10, 60, 60]},
                        {"phrase": "blue square", "box": [100, 20, 180, 90]}]}
    data.update(overrides)
    return data


def test_valid_layout_parses():
    layout = parse_layout(layout_dict())
    assert (layout.width, layout.height, layout.caption) == (200, 100, "two shapes")
    assert layout.phrases == ["red circle", "blue square"]
    assert layout.boxes[1] == (100.0, 20.0, 180.0, 90.0)
    assert layout.warnings == ()


@pytest.mark.parametrize("objects, message", [
    ([{"phrase": "  ", "box": [0, 0, 10, 10]}], "phrase is empty"),
    ([{"phrase": "x", "box": [10, 10, 10, 20]}], "zero or negative area"),
    ([{"phrase": "x", "box": [10, 30, 20, 20]}], "zero or negative area"),
    ([{"phrase": "x", "box": [0, 0, float("nan"), 10]}], "finite"),
    ([{"phrase": "x", "box": [0, 0, math.inf, 10]}], "finite"),
    ([{"phrase": "x", "box": [300, 0, 400, 10]}], "wholly outside"),
    ([{"phrase": "x", "box": [0, 0, 10]}], "must be a list"),
    ([{"phrase": "x", "box": ["a", 0, 1, 1]}], "must be a number"),
    ([{"phrase": "x" * 81, "box": [0, 0, 10, 10]}], "maximum is 80"),
    ([{"box": [0, 0, 10, 10]}], "must be a string"),
    ([], "no objects"),
    ([{"phrase": "x", "box": [0, 0, 10, 10]}] * (MAX_OBJECTS + 1), f"maximum is {MAX_OBJECTS}"),
])
def test_bad_objects_are_rejected_with_a_clear_message(objects, message):
    with pytest.raises(LayoutError, match=message):
        parse_layout(layout_dict(objects=objects))


@pytest.mark.parametrize("data, message", [
    ([], "must be a JSON object"),
    ({"width": 100, "objects": []}, "missing the key 'height'"),
    (layout_dict(width=0), "width must be a whole number"),
    (layout_dict(width=100.5), "width must be a whole number"),
    (layout_dict(height=True), "must be a number"),
    (layout_dict(caption="c" * 301), "maximum is 300"),
])
def test_bad_layouts_are_rejected(data, message):
    with pytest.raises(LayoutError, match=message):
        parse_layout(data)


def test_partly_outside_box_is_clipped_with_a_warning():
    layout = parse_layout(layout_dict(objects=[{"phrase": "x", "box": [-20, 50, 250, 150]}]))
    assert layout.boxes == [(0.0, 50.0, 200.0, 100.0)]
    assert "clipped" in layout.warnings[0]


def test_whitespace_is_collapsed():
    layout = parse_layout(layout_dict(objects=[{"phrase": " red \n circle ", "box": [0, 0, 5, 5]}]))
    assert layout.phrases == ["red circle"]


def test_json_jsonl_and_list_round_trip(tmp_path):
    layouts = [parse_layout(layout_dict()), parse_layout(layout_dict(caption="", width=64, height=64,
                                                                     objects=[{"phrase": "a", "box": [1, 2, 3, 4]}]))]
    jsonl = tmp_path / "many.jsonl"
    jsonl.write_text(dumps_layouts(layouts))
    assert load_layouts(jsonl) == layouts
    single = tmp_path / "one.json"
    single.write_text(json.dumps(layouts[0].to_dict(), indent=2))
    assert load_layouts(single) == layouts[:1]
    assert loads_layouts(json.dumps([l.to_dict() for l in layouts])) == layouts


def test_instancediffusion_import():
    record = {"caption": "a dog and a ball", "width": 100, "height": 50,
              "annos": [{"bbox": [10, 5, 30, 20], "caption": "a dog"}, {"bbox": [60, 10, 10, 10], "caption": "ball"}]}
    layout = from_instancediffusion(record)
    assert layout.boxes == [(10.0, 5.0, 40.0, 25.0), (60.0, 10.0, 70.0, 20.0)]
    assert layout.phrases == ["a dog", "ball"]
    assert loads_layouts(json.dumps(record)) == [layout]
    with pytest.raises(LayoutError, match="bbox"):
        from_instancediffusion({"annos": [{"caption": "x"}], "width": 10, "height": 10})


def test_file_errors_name_the_problem(tmp_path):
    with pytest.raises(LayoutError, match="not found"):
        load_layouts(tmp_path / "missing.json")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(layout_dict()) + "\n{oops\n")
    with pytest.raises(LayoutError, match="line 2 is not valid JSON"):
        load_layouts(bad)
    second_bad = tmp_path / "second.jsonl"
    second_bad.write_text(json.dumps(layout_dict()) + "\n" + json.dumps(layout_dict(objects=[])) + "\n")
    with pytest.raises(LayoutError, match="layout 2: the layout has no objects"):
        load_layouts(second_bad)
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(LayoutError, match="empty"):
        load_layouts(empty)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(LayoutError, match="UTF-8"):
        load_layouts(binary)


def test_resized_scales_boxes():
    layout = parse_layout(layout_dict()).resized(100, 200)
    assert isinstance(layout, Layout)
    assert layout.boxes[0] == (5.0, 20.0, 30.0, 120.0)

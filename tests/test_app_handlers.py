"""App handlers on literal inputs: canvas <-> layout, generate / edit / ground, import / export.

Most tests drive a scripted model (tests/app_fakes.py) so boxes and scores are known; one
runs the real tiny random Janus end to end.
"""

from __future__ import annotations

import json

import gradio as gr
import pytest
from app_fakes import SHIFT, ScriptedEchoGen

from app.canvas import blank_canvas, canvas_from_layout, check_drawable, layout_from_canvas, recolored
from app.handlers import MAX_CANDIDATES, Handlers
from app.palette import color_of, to_hex
from app.phrases import find_phrases, highlighted, join_phrases
from model.layout import LayoutError, parse_layout
from model.metrics import box_iou
from model.results import SamplingConfig

TWO = {"width": 512, "height": 512, "caption": "a red circle and a blue square",
       "objects": [{"phrase": "red circle", "box": [40, 40, 200, 200]},
                   {"phrase": "blue square", "box": [260, 260, 480, 480]}]}


def box(label, x1, y1, x2, y2):
    return {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2, "label": label, "color": (0, 0, 0)}


@pytest.fixture()
def fake():
    return ScriptedEchoGen()


@pytest.fixture()
def h(fake):
    return Handlers(fake)


# ---- canvas <-> layout -------------------------------------------------------------------
def test_canvas_lists_new_boxes_first_and_layout_keeps_drawing_order():
    canvas = {"image": blank_canvas(512)["image"], "boxes": [box("second", 300, 300, 400, 400), box("first", 0, 0, 99, 99)]}
    layout = layout_from_canvas(canvas, "  a  caption ")
    assert layout.phrases == ["first", "second"]
    assert (layout.width, layout.height, layout.caption) == (512, 512, "a caption")
    assert [b["color"] for b in recolored(canvas)["boxes"]] == [color_of(1), color_of(0)]


def test_canvas_round_trip_keeps_the_layout():
    layout = parse_layout({**TWO, "width": 768})
    canvas = canvas_from_layout(layout)
    assert canvas["image"].size == (768, 512)
    assert [b["label"] for b in canvas["boxes"]] == ["blue square", "red circle"]  # newest first, like the canvas
    assert [b["color"] for b in canvas["boxes"]] == [color_of(1), color_of(0)]
    assert layout_from_canvas(canvas, layout.caption) == layout


@pytest.mark.parametrize("canvas, message", [
    (None, "no image"),
    ({"image": None, "boxes": []}, "no image"),
    ({"boxes": []}, "no image"),
    ({"image": blank_canvas(64)["image"], "boxes": []}, "no boxes"),
    ({"image": blank_canvas(64)["image"], "boxes": [box("  ", 1, 1, 30, 30)]}, "box 1 has no phrase"),
    ({"image": blank_canvas(64)["image"], "boxes": [box(f"b{i}", 1, 1, 30, 30) for i in range(17)]}, "remove 1"),
    ({"image": blank_canvas(64)["image"], "boxes": [box("x", 100, 100, 130, 130)]}, "wholly outside"),
])
def test_bad_canvases_say_what_to_fix(canvas, message):
    with pytest.raises(LayoutError, match=message):
        layout_from_canvas(canvas, "")


def test_tiny_boxes_are_rejected_at_the_model_scale():
    ok = parse_layout({"width": 512, "height": 512, "objects": [{"phrase": "dot", "box": [0, 0, 8, 8]}]})
    check_drawable(ok, 128)  # 2 px at 128
    tiny = parse_layout({"width": 512, "height": 512, "objects": [{"phrase": "dot", "box": [0, 0, 7, 40]}]})
    with pytest.raises(LayoutError, match=r"box 1 \('dot'\) is 7x40 px, too small"):
        check_drawable(tiny, 128)


def test_clipped_boxes_are_reported_as_warnings(h):
    canvas = {"image": blank_canvas(512)["image"], "boxes": [box("edge", 400, 400, 600, 500)]}
    with pytest.warns(UserWarning, match="clipped"):
        text, _ = h.layout_from_canvas(canvas, "")
    assert json.loads(text)["objects"][0]["box"] == [400, 400, 512, 500]


# ---- generate and the cycle view ---------------------------------------------------------
def test_generate_returns_ranked_overlays_table_and_json(h, fake):
    gallery, table, summary, seed, data, picker, images = h.generate(json.dumps(TWO), 11, False, 3.5, 0.7, 3)
    assert fake.calls[-1][2:] == (3, 11, SamplingConfig(cfg=3.5, temperature=0.7))
    assert seed == 11 and len(gallery) == len(images) == 3 and gallery[0][0].size == (512, 512)
    # The fake shifts object i of candidate k by SHIFT * (i + k): candidate k = 0 ranks first.
    expected = [[box_iou(b, [v + SHIFT * (i + k) for v in b]) for i, b in enumerate(parse_layout(TWO).boxes)]
                for k in range(3)]
    assert [c["seed"] for c in data["candidates"]] == [11, 12, 13]
    assert [c["mean_iou"] for c in data["candidates"]] == pytest.approx([sum(e) / 2 for e in expected])
    assert gallery[0][1] == f"#1 · seed 11 · mean IoU {sum(expected[0]) / 2:.2f}"
    assert data["layout"] == parse_layout(TWO).to_dict()
    assert f"Mean IoU {sum(expected[0]) / 2:.2f}" in summary
    assert len(picker.choices) == 3 and picker.value == 0
    frame = table.data
    assert list(frame.columns) == ["candidate", "#", "phrase", "IoU", "L1", "result"]
    assert frame["IoU"].tolist() == pytest.approx([iou for row in expected for iou in row])
    assert frame["result"].tolist() == ["pass" if iou >= 0.5 else "fail" for row in expected for iou in row]
    assert frame["phrase"].tolist() == ["red circle", "blue square"] * 3
    assert "fail" in frame["result"].tolist()


def test_table_colors_objects_by_palette_and_quality(h):
    layout = {**TWO, "objects": TWO["objects"] + [{"phrase": "missing star", "box": [10, 300, 100, 400]}]}
    table = h.generate(json.dumps(layout), 0, False, 5, 1, 1)[1]
    styling = gr.Dataframe(interactive=False).postprocess(table).metadata["styling"]
    assert to_hex(color_of(0)) in styling[0][1] and to_hex(color_of(2)) in styling[2][1]
    assert "#c6f0c2" in styling[0][3]  # pass: green
    assert "#f8c4c4" in styling[2][3]  # no box: red
    assert table.data.iloc[2]["result"] == "no box"
    fair = h.generate(json.dumps(TWO), 0, False, 5, 1, 3)[1]  # candidate #3, object 2: IoU 0.44
    assert "#ffe6a0" in gr.Dataframe(interactive=False).postprocess(fair).metadata["styling"][5][3]


def test_randomized_seed_is_drawn_and_shown_back(h, fake):
    seed = h.generate(json.dumps(TWO), 5, True, 5, 1, 1)[3]
    assert 0 <= seed < 2**31 and fake.calls[-1][3] == seed


def test_empty_caption_only_warns(h):
    with pytest.warns(UserWarning, match="no caption"):
        h.generate(json.dumps({**TWO, "caption": ""}), 0, False, 5, 1, 1)


def test_jsonl_uses_the_first_layout_with_a_warning(h, fake):
    second = {**TWO, "caption": "second"}
    with pytest.warns(UserWarning, match="holds 2 layouts"):
        h.generate(json.dumps(TWO) + "\n" + json.dumps(second), 0, False, 5, 1, 1)
    assert fake.calls[-1][1].caption == TWO["caption"]


@pytest.mark.parametrize("layout_json, settings, message", [
    ("", (0, False, 5, 1, 1), "empty"),
    ("{not json", (0, False, 5, 1, 1), "not valid JSON"),
    (json.dumps({**TWO, "objects": []}), (0, False, 5, 1, 1), "no objects"),
    (json.dumps({**TWO, "objects": [{"phrase": "dot", "box": [0, 0, 3, 3]}]}), (0, False, 5, 1, 1), "too small"),
    (json.dumps(TWO), (0, False, 0.5, 1, 1), "cfg must be >= 1"),
    (json.dumps(TWO), (0, False, 5, -1, 1), "temperature"),
    (json.dumps(TWO), (0, False, 5, 1, MAX_CANDIDATES + 1), "number of candidates"),
])
def test_generate_rejects_bad_input_with_a_message(h, layout_json, settings, message):
    with pytest.raises(gr.Error, match=message):
        h.generate(layout_json, *settings)


def test_generate_with_the_real_tiny_model(tiny_echogen):
    """The random model writes no usable boxes: every object is reported, none passes."""
    gallery, table, summary, seed, data, _, images = Handlers(tiny_echogen).generate(
        json.dumps(TWO), 3, False, 2.0, 1.0, 2)
    assert seed == 3 and len(gallery) == 2 and len(table.data) == 4
    assert images[0].size == (tiny_echogen.image_size,) * 2
    assert sorted(c["seed"] for c in data["candidates"]) == [3, 4]


def test_edit_layout_sends_layout_and_candidate_seed_back(h):
    data = h.generate(json.dumps(TWO), 20, False, 5, 1, 2)[4]
    canvas, caption, seed, randomize = h.edit_layout(data, 1)
    assert layout_from_canvas(canvas, caption) == parse_layout(TWO)
    assert seed == data["candidates"][1]["seed"] and randomize is False
    with pytest.raises(gr.Error, match="no candidate #3"):
        h.edit_layout(data, 2)
    with pytest.raises(gr.Error, match="press Generate"):
        h.edit_layout(None, 0)


def test_send_to_grounding_takes_the_picked_image_and_phrases(h):
    out = h.generate(json.dumps(TWO), 0, False, 5, 1, 2)
    image, text, tabs = h.send_to_grounding(out[6], out[4], 1)
    assert image is out[6][1] and [s.phrase for s in find_phrases(text)] == ["red circle", "blue square"]
    assert tabs.selected == "ground"
    with pytest.raises(gr.Error, match="Generate again"):
        h.send_to_grounding([], out[4], 0)


# ---- import / export ---------------------------------------------------------------------
def test_import_export_round_trip(h):
    canvas, caption = h.import_layout(json.dumps(TWO))
    text, path = h.export_layout(canvas, caption)
    assert json.loads(text) == parse_layout(TWO).to_dict()
    assert json.loads(open(path, encoding="utf-8").read()) == json.loads(text)


def test_import_instancediffusion_and_files(h, tmp_path):
    record = {"caption": "c", "width": 300, "height": 200, "annos": [{"bbox": [10, 20, 50, 60], "caption": "cat"}]}
    canvas, caption = h.import_layout(json.dumps(record))
    assert caption == "c" and canvas["image"].size == (300, 200)
    assert canvas["boxes"][0] == {"xmin": 10, "ymin": 20, "xmax": 60, "ymax": 80, "label": "cat",
                                        "color": color_of(0)}
    path = tmp_path / "layout.jsonl"
    path.write_text(json.dumps(TWO) + "\n", encoding="utf-8")
    text, canvas, caption = h.import_file(str(path))
    assert caption == TWO["caption"] and len(canvas["boxes"]) == 2
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(gr.Error, match="not UTF-8"):
        h.import_file(str(path))
    with pytest.raises(gr.Error, match="object 1 phrase is empty"):
        h.import_layout(json.dumps({**TWO, "objects": [{"phrase": "", "box": [0, 0, 9, 9]}]}))


# ---- grounding tab -----------------------------------------------------------------------
def test_phrases_are_found_and_colored_in_order(h):
    text = "a red circle and two blue squares on a beige background"
    spans = find_phrases(text)
    assert [s.phrase for s in spans] == ["red circle", "blue squares"]
    assert highlighted(text, spans)[1] == ("red circle", "red circle")
    view = h.phrases(text)
    assert view.color_map == {"red circle": to_hex(color_of(0)), "blue squares": to_hex(color_of(1))}
    assert find_phrases("  ,, and ;") == [] and h.phrases("").color_map == {}
    assert join_phrases(["cat, dog", "x"]) == "cat, dog\nx"


def test_pick_phrase_reads_the_clicked_label(h):
    assert h.pick_phrase(gr.SelectData(None, {"index": 1, "value": ["red  circle", "red circle"]})) == "red circle"
    with pytest.raises(gr.Error, match="highlighted"):
        h.pick_phrase(gr.SelectData(None, {"index": 0, "value": ["a ", None]}))


def test_ground_draws_the_phrase_in_its_color(h, fake, tmp_path):
    path = tmp_path / "im.png"
    from PIL import Image

    Image.new("RGB", (200, 100), "white").save(path)
    out, data = h.ground(str(path), "red circle, blue square", "blue square")
    assert fake.calls[-1] == ("ground", [(200, 100)], [["blue square"]])
    assert data == [{"phrase": "blue square", "box": [20.0, 20.0, 60.0, 60.0], "valid": True}]
    assert color_of(1) in set(out.getdata()) and color_of(0) not in set(out.getdata())
    with pytest.warns(UserWarning, match="no usable box for: missing cat"):
        _, data = h.ground_all(str(path), "red circle, missing cat")
    assert data[1]["box"] is None
    with pytest.warns(UserWarning, match="does not see absent dog in the image"):
        out, data = h.ground(str(path), "red circle, absent dog", "absent dog")
    assert data == [{"phrase": "absent dog", "box": [20.0, 20.0, 60.0, 60.0], "valid": True, "present": 0.1}]
    assert color_of(1) not in set(out.getdata()), "a phrase the model does not see gets no box drawn"
    for bad, message in [("", "no phrase"), ("   ", "no phrase")]:
        with pytest.raises(gr.Error, match=message):
            h.ground(str(path), "x", bad)
    with pytest.raises(gr.Error, match="no phrases"):
        h.ground_all(str(path), " and ")
    with pytest.raises(gr.Error, match="no image"):
        h.ground_all(None, "red circle")

"""Shapes World: scene rules, expressions, rendering, records, samplers and the synth CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.layout import Layout, parse_layout
from train.detector.colors import COLOR_NAMES, HUE_SECTORS, rgb_to_hsv
from train.shapes.expressions import distinguishing_texts, sample_expressions
from train.shapes.geometry import SHAPES, shape_mask
from train.shapes.records import RecordError, load_records
from train.shapes.render import render, visibility
from train.shapes.samplers import make_sampler, random_box_layout, scene_from_layout
from train.shapes.world import (
    COLORS, PLAIN_BACKGROUNDS, Background, Scene, SceneConfig, ShapeObject, box_intersection, caption,
    parse_phrase, sample_rgb, sample_scene,
)
from train.synth import image_rng, main as synth_main, make_example, write_split

ROOT = Path(__file__).resolve().parents[1]
WHITE = Background("white", (250, 250, 250), (250, 250, 250), 1.0)


def scenes(n: int = 200, seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def obj(color, shape, box, layer=0):
    return ShapeObject(color, shape, box, layer, (0, 0, 0))


# ---- scene rules ---------------------------------------------------------------------------

def test_scenes_follow_the_world_rules():
    cfg = SceneConfig()
    for scene in scenes():
        assert 1 <= len(scene.objects) <= cfg.max_objects
        for i, o in enumerate(scene.objects):
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 < x2 <= cfg.size and 0 <= y1 < y2 <= cfg.size
            for side in (x2 - x1, y2 - y1):
                assert round(cfg.min_side * cfg.size) - 1 <= side <= cfg.max_side * cfg.size + 1
            assert o.color in COLORS and o.shape in SHAPES
            for j, other in enumerate(scene.objects):
                if j != i and box_intersection(o.box, other.box) > 0:
                    assert o.layer != other.layer and o.color != other.color


def test_depth_words_say_which_overlapping_object_is_drawn_on_top():
    for scene in scenes():
        z = scene.z
        for i, o in enumerate(scene.objects):
            overlapping = [j for j, p in enumerate(scene.objects) if j != i and box_intersection(o.box, p.box) > 0]
            if not overlapping:
                assert o.phrase == o.name
            elif o.phrase.endswith("in front"):
                assert all(z[i] > z[j] for j in overlapping)
            else:
                assert o.phrase == f"{o.name} behind" and all(z[i] < z[j] for j in overlapping)


def test_scene_sampling_is_deterministic_per_seed():
    assert scenes(20, seed=5) == scenes(20, seed=5)
    assert scenes(20, seed=5) != scenes(20, seed=6)


def test_caption_counts_and_names_the_background():
    scene = Scene(128, Background("beige", (1, 1, 1), (1, 1, 1), 1.0), (
        obj("yellow", "square", (0, 0, 20, 20)), obj("blue", "circle", (40, 0, 60, 20)),
        obj("blue", "circle", (80, 0, 100, 20)), obj("orange", "star", (0, 40, 20, 60))))
    assert caption(scene) == "a yellow square, two blue circles and an orange star on a beige background"
    sky = Scene(128, Background("sky over grass", (1, 1, 1), (2, 2, 2), 0.5), (obj("red", "diamond", (0, 0, 9, 9)),))
    assert caption(sky) == "a red diamond under a pale sky over grass"


def test_parse_phrase_reads_depth_words_and_rejects_unknown_words():
    assert parse_phrase("red circle in front") == ("red", "circle", 1)
    assert parse_phrase("Blue  star behind") == ("blue", "star", 0)
    assert parse_phrase("black diamond") == ("black", "diamond", None)
    with pytest.raises(ValueError):
        parse_phrase("teal circle")


# ---- colors ----------------------------------------------------------------------------------

def _named(rgb) -> str:
    hue, sat, val = (float(v) for v in rgb_to_hsv(np.array(rgb, dtype=np.float32) / 255))
    if val < 0.3:
        return "black"
    for name, start, end in HUE_SECTORS:
        if (start <= hue < end) if start < end else (hue >= start or hue < end):
            return name
    raise AssertionError(rgb)


def test_every_shade_of_a_color_reads_as_that_color_and_never_as_a_background():
    rng = np.random.default_rng(0)
    for color in COLORS:
        for _ in range(200):
            rgb = sample_rgb(rng, color)
            assert _named(rgb) == color
            _, sat, val = rgb_to_hsv(np.array(rgb, dtype=np.float32) / 255)
            assert sat >= 0.35 or val <= 0.2  # backgrounds are light and nearly grey
    for rgb in PLAIN_BACKGROUNDS.values():
        _, sat, val = rgb_to_hsv(np.array(rgb, dtype=np.float32) / 255)
        assert sat < 0.15 and val > 0.8
    assert set(COLOR_NAMES) == set(COLORS)


# ---- expressions -----------------------------------------------------------------------------

def test_unique_objects_are_named_and_namesakes_get_referring_words():
    objects = (obj("red", "circle", (0, 0, 20, 20)), obj("red", "circle", (60, 50, 110, 100)),
               obj("blue", "square", (30, 0, 50, 20)))
    assert distinguishing_texts(2, objects, 128) == ["blue square"]
    assert set(distinguishing_texts(0, objects, 128)) == {"leftmost red circle", "top red circle", "smaller red circle"}
    assert set(distinguishing_texts(1, objects, 128)) == {
        "rightmost red circle", "bottom red circle", "larger red circle"}


def test_depth_expression_when_only_position_and_size_cannot_tell():
    objects = (obj("red", "circle", (10, 10, 40, 40), layer=1), obj("blue", "square", (30, 30, 60, 60), layer=0),
               obj("red", "circle", (12, 80, 42, 110), layer=0))
    assert "red circle in front" in distinguishing_texts(0, objects, 128)
    assert not any("behind" in t for t in distinguishing_texts(2, objects, 128))


def _resolve(text: str, objects) -> int:
    """An independent reading of an expression: the index of the object it names."""
    words = text.split()
    candidates = [i for i, o in enumerate(objects) if o.name in text]
    centers = {i: ((objects[i].box[0] + objects[i].box[2]) / 2, (objects[i].box[1] + objects[i].box[3]) / 2)
               for i in candidates}
    pick = {"leftmost": lambda: min(candidates, key=lambda i: centers[i][0]),
            "rightmost": lambda: max(candidates, key=lambda i: centers[i][0]),
            "top": lambda: min(candidates, key=lambda i: centers[i][1]),
            "bottom": lambda: max(candidates, key=lambda i: centers[i][1])}
    for word in ("larger", "largest"):
        pick[word] = lambda: max(candidates, key=lambda i: objects[i].area)
    for word in ("smaller", "smallest"):
        pick[word] = lambda: min(candidates, key=lambda i: objects[i].area)
    if words[0] in pick:
        return pick[words[0]]()
    if text.endswith("in front") or text.endswith("behind"):
        layer = 1 if text.endswith("in front") else 0
        hits = [i for i in candidates if objects[i].layer == layer and any(
            j != i and box_intersection(objects[i].box, o.box) > 0 for j, o in enumerate(objects))]
        assert len(hits) == 1
        return hits[0]
    assert len(candidates) == 1, text
    return candidates[0]


def test_every_expression_picks_out_its_own_object():
    rng = np.random.default_rng(1)
    count = 0
    for scene in scenes(300, seed=2):
        for expr in sample_expressions(rng, scene):
            assert _resolve(expr.text, scene.objects) == expr.object
            assert expr.box == scene.objects[expr.object].box
            count += 1
    assert count > 500


# ---- rendering -------------------------------------------------------------------------------

def test_render_is_deterministic_and_objects_fill_their_boxes():
    scene = scenes(1, seed=3)[0]
    a, b = np.asarray(render(scene)), np.asarray(render(scene))
    assert a.shape == (128, 128, 3) and np.array_equal(a, b)
    lone = Scene(64, WHITE, (ShapeObject("black", "diamond", (10, 20, 41, 51), 0, (0, 0, 0)),))
    dark = np.asarray(render(lone)).mean(axis=2) < 125  # pixels more than half covered
    ys, xs = np.nonzero(dark)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (10, 20, 41, 51)


def test_shape_masks_have_the_expected_fill():
    fills = {s: shape_mask(s, 400, 400).mean() for s in SHAPES}
    assert fills["square"] == 1.0
    assert fills["circle"] == pytest.approx(np.pi / 4, abs=0.01)
    assert fills["triangle"] == pytest.approx(0.5, abs=0.01)
    assert fills["diamond"] == pytest.approx(0.5, abs=0.01)
    assert 0.3 < fills["star"] < 0.45


def test_visibility_counts_what_front_objects_hide():
    back = ShapeObject("red", "square", (0, 0, 40, 40), 0, (255, 0, 0))
    front = ShapeObject("blue", "square", (20, 0, 60, 40), 1, (0, 0, 255))
    assert visibility(Scene(64, WHITE, (back, front))) == [0.5, 1.0]


# ---- records, splits and the CLI ------------------------------------------------------------------

def test_splits_never_share_a_scene():
    cfg = SceneConfig()
    seen = {}
    for split in ("train", "val", "test"):
        for index in range(30):
            scene = make_example(0, split, index, cfg)[0]
            key = tuple((o.color, o.shape, o.box) for o in scene.objects)
            assert key not in seen
            seen[key] = split
    assert image_rng(0, "test", 3).random() == image_rng(0, "test", 3).random()


def test_written_records_parse_as_layouts_and_match_their_images(tmp_path):
    write_split(tmp_path, "val", 8, seed=4, cfg=SceneConfig(size=64), progress=False)
    records = load_records(tmp_path, "val")
    assert len(records) == 8
    for record in records:
        layout = parse_layout(record)
        assert (layout.width, layout.height) == (64, 64)
        assert layout.phrases == [o["phrase"] for o in record["objects"]]
        assert (tmp_path / record["image"]).is_file()
        for expr in record["expressions"]:
            assert record["objects"][expr["object"]]["box"] == expr["box"]
    again = tmp_path / "again"
    write_split(again, "val", 8, seed=4, cfg=SceneConfig(size=64), progress=False)
    assert (again / "val.jsonl").read_text() == (tmp_path / "val.jsonl").read_text()


@pytest.mark.parametrize("content, message", [
    ("{not json\n", "not valid JSON"),
    ('{"id": "a", "image": "x.png", "width": 64, "height": 64, "objects": []}\n', "no objects"),
    ('{"id": "a", "image": "x.png", "width": 64, "height": 64, '
     '"objects": [{"phrase": "red circle", "box": [0, 0, 9, 9]}]}\n',
     "'color' and 'shape'"),
])
def test_load_records_explains_bad_files(tmp_path, content, message):
    (tmp_path / "test.jsonl").write_text(content)
    with pytest.raises(RecordError, match=message):
        load_records(tmp_path, "test")


def test_load_records_rejects_unknown_splits_and_missing_directories(tmp_path):
    with pytest.raises(RecordError, match="unknown split"):
        load_records(tmp_path, "dev")
    with pytest.raises(RecordError, match="not found"):
        load_records(tmp_path / "nope", "test")
    with pytest.raises(RecordError, match="no test split"):
        load_records(tmp_path, "test")


def test_synth_cli_writes_a_split(tmp_path):
    out = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "train.synth", "--out", str(out), "--n", "5", "--seed", "1", "--split", "test",
         "--size", "64", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = (out / "test.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["width"] == 64
    assert json.loads((out / "test.meta.json").read_text())["seed"] == 1


def test_synth_cli_rejects_bad_arguments():
    assert synth_main(["--n", "0", "--bench"]) == 2
    assert synth_main(["--n", "3"]) == 2  # no --out


# ---- RL layout samplers ------------------------------------------------------------------------

def test_samplers_give_valid_layouts_in_the_world_vocabulary():
    rng = np.random.default_rng(7)
    for kind in ("scene", "random"):
        sample = make_sampler(kind)
        for _ in range(50):
            layout = sample(rng)
            assert isinstance(layout, Layout) and layout.caption
            assert parse_layout(layout.to_dict()) == layout
            for phrase in layout.phrases:
                parse_phrase(phrase)
    with pytest.raises(ValueError, match="unknown layout sampler"):
        make_sampler("coco")


def test_random_boxes_ignore_the_scene_rules():
    rng = np.random.default_rng(0)
    overlaps_same_color = 0
    for _ in range(300):
        layout = random_box_layout(rng)
        names = [parse_phrase(p)[0] for p in layout.phrases]
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                box_i = tuple(map(int, layout.boxes[i]))
                box_j = tuple(map(int, layout.boxes[j]))
                overlaps_same_color += names[i] == names[j] and box_intersection(box_i, box_j) > 0
    assert overlaps_same_color > 0


def test_scene_from_layout_draws_phrases_in_depth_order():
    layout = parse_layout({"width": 256, "height": 256, "objects": [
        {"phrase": "red square in front", "box": [0, 0, 128, 128]},
        {"phrase": "blue square behind", "box": [64, 64, 192, 192]}]})
    scene = scene_from_layout(layout, 64)
    assert [o.box for o in scene.objects] == [(0, 0, 32, 32), (16, 16, 48, 48)]
    pixel = np.asarray(render(scene))[24, 24]
    assert pixel[0] > 150 and pixel[2] < 100  # red drawn over blue


@pytest.mark.slow
def test_generator_speed_at_128px():
    from train.synth import benchmark

    assert benchmark(400, 0, SceneConfig())["images_per_cpu_s"] >= 200  # CPU time: robust on a busy machine

"""The color-pairs split: records grounded only where the color word decides the answer."""

import json

from train.data import parse_record, read_records
from train.shapes.color_pairs import color_pair_objects, color_pair_record, main

SCENE = {"id": "s", "image": "images/s.png", "width": 40, "height": 40, "caption": "shapes",
         "objects": [{"phrase": "red circle", "box": [0, 0, 10, 10], "color": "red", "shape": "circle"},
                     {"phrase": "blue circle", "box": [20, 20, 30, 30], "color": "blue", "shape": "circle"},
                     {"phrase": "red star", "box": [0, 20, 10, 30], "color": "red", "shape": "star"}],
         "expressions": [{"text": "red circle", "box": [0, 0, 10, 10], "object": 0},
                         {"text": "blue circle", "box": [20, 20, 30, 30], "object": 1},
                         {"text": "red star", "box": [0, 20, 10, 30], "object": 2}]}


def test_only_objects_sharing_a_shape_in_another_color_are_picked():
    assert color_pair_objects(SCENE) == [0, 1]
    same_color = {**SCENE, "objects": [{**o, "color": "red"} for o in SCENE["objects"]]}
    assert color_pair_objects(same_color) == []
    assert color_pair_record(same_color) is None


def test_a_color_pair_record_draws_every_object_but_grounds_the_pair_only(tmp_path):
    record = parse_record(color_pair_record(SCENE), tmp_path)
    assert len(record.layout.objects) == 3
    assert [q.phrase for q in record.queries] == ["red circle", "blue circle"]
    assert [q.phrase for q in parse_record(SCENE, tmp_path).queries][:3] == ["red circle", "blue circle", "red star"]


def test_the_command_writes_a_split_training_reads(tmp_path, capsys):
    lone = {**SCENE, "id": "t", "objects": SCENE["objects"][2:], "expressions": []}
    (tmp_path / "train.jsonl").write_text(json.dumps(SCENE) + "\n" + json.dumps(lone) + "\n")
    assert main(["--data", str(tmp_path)]) == 0
    assert "wrote 1 records (2 grounding queries)" in capsys.readouterr().out
    (record,) = read_records(tmp_path, "color_pairs")
    assert len(record.queries) == 2


def test_a_missing_split_is_a_clear_error(tmp_path, capsys):
    assert main(["--data", str(tmp_path)]) == 1
    assert "python -m train.synth" in capsys.readouterr().err

"""`python -m train.eval`: every subcommand on a tiny Shapes World set, with fake models injected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import train.eval.__main__ as cli
from shapes_fakes import OracleModel, PickyOracle, SceneOracle
from train.eval.cycle import evaluate_cycle
from train.eval.fidelity import evaluate_detector, evaluate_fidelity
from train.eval.fresh import evaluate_fresh, fresh_scenes
from train.eval.grounding import evaluate_grounding
from train.shapes.records import load_records
from train.shapes.world import SceneConfig
from train.synth import write_split

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    write_split(out, "test", 16, seed=3, cfg=SceneConfig(), progress=False)
    return out


@pytest.fixture(scope="module")
def records(data):
    return load_records(data, "test")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train.eval", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def use_model(monkeypatch, model) -> None:
    monkeypatch.setattr(cli, "_load_model", lambda args: model)


# ---- evaluation functions with fakes -------------------------------------------------------------

def test_fidelity_of_a_perfect_generator_matches_the_detector_ceiling(data, records):
    ceiling = evaluate_detector(data, records)
    oracle = OracleModel(image_size=96)
    perfect = evaluate_fidelity(oracle, records, seed=10, batch_size=5)
    assert ceiling["AP"] >= 0.85
    assert perfect["AP"] == pytest.approx(ceiling["AP"], abs=0.06)
    assert perfect["presence"] >= 0.95 and perfect["color"] >= 0.95
    assert [seed for name, seed in oracle.calls] == [10, 15, 20, 25]  # seed + batch start
    skewed = evaluate_fidelity(OracleModel(image_size=96, skew=0.4), records)
    assert skewed["AP"] < perfect["AP"] - 0.5
    assert skewed["color"] < 0.5 and skewed["presence"] < perfect["presence"]


def test_fidelity_candidates_keep_the_image_the_model_regrounds_best(data, records):
    one = evaluate_fidelity(PickyOracle(), records, batch_size=8)  # candidate 0: the skewed drawing
    picky = PickyOracle()
    best = evaluate_fidelity(picky, records, batch_size=8, candidates=2)
    ceiling = evaluate_fidelity(OracleModel(), records, batch_size=8)
    assert one["AP"] < ceiling["AP"] - 0.5
    assert best["AP"] == pytest.approx(ceiling["AP"])
    assert picky.calls == [("cycles", 0), ("cycles", 8)]
    with pytest.raises(ValueError, match="candidates"):
        evaluate_fidelity(picky, records, candidates=0)


def test_fidelity_compose_scores_the_composed_drawings(data, records):
    picky = PickyOracle()
    composed = evaluate_fidelity(picky, records, batch_size=8, candidates=2, compose=True)
    assert composed["AP"] == pytest.approx(evaluate_fidelity(OracleModel(), records, batch_size=8)["AP"])
    assert picky.calls == [("compose", 0), ("compose", 8)]


def test_grounding_of_a_perfect_grounder_is_exact(data, records):
    perfect = evaluate_grounding(OracleModel(data_dir=data, records=records), records, data, batch_size=4)
    assert perfect["n"] == sum(len(r["expressions"]) for r in records)
    assert perfect["Acc@0.5"] == 1.0 and perfect["mAcc"] == 1.0 and perfect["valid"] == 1.0
    assert set(perfect["by_kind"]) <= {"name", "referring"} and perfect["by_size"]
    # shifted by half a box width: IoU 1/3 for every expression
    skewed = evaluate_grounding(OracleModel(data_dir=data, records=records, skew=0.5), records, data)
    assert skewed["Acc@0.5"] == 0.0 and skewed["mAcc"] == 0.0
    blind = evaluate_grounding(OracleModel(), records, data)  # knows no image: answers no box
    assert blind["Acc@0.5"] == 0.0 and blind["valid"] == 0.0


def test_cycle_of_a_perfect_model_and_a_sloppy_one(records):
    perfect = evaluate_cycle(OracleModel(), records, seed=3)
    assert perfect["mean_iou"] == 1.0 and perfect["mean_l1"] == 0.0 and perfect["pass_rate"] == 1.0
    sloppy = evaluate_cycle(OracleModel(skew=0.5), records)
    assert sloppy["mean_iou"] == pytest.approx(1 / 3) and sloppy["pass_rate"] == 0.0


@pytest.fixture(scope="module")
def fresh_oracle_scenes():
    return fresh_scenes(0, 3 + 20)  # what `evaluate_fresh(model, 3, 20)` renders


def test_fresh_scenes_are_a_pure_function_of_seed_and_index():
    (a, image_a), = fresh_scenes(5, 1)
    (b, image_b), = fresh_scenes(5, 1)
    (c, _), = fresh_scenes(5, 1, seed=1)
    assert a == b and image_a.tobytes() == image_b.tobytes() and a != c


def test_fresh_of_a_perfect_grounder_is_exact(fresh_oracle_scenes):
    metrics = evaluate_fresh(SceneOracle(fresh_oracle_scenes), scenes=3, pair_scenes=20)
    assert metrics["grounding"]["acc_at_0.5"] == 1.0 and metrics["grounding"]["objects"] > 5
    assert metrics["grounding"]["constant_box_mean_iou"] < 0.5
    assert metrics["own_object"]["share"] == 1.0 and metrics["own_object"]["chance"] < 0.6
    assert metrics["color_pairs"]["pairs"] >= 5
    assert metrics["color_pairs"]["differ"] == metrics["color_pairs"]["both_right"] == 1.0


def test_fresh_color_pairs_catch_a_color_blind_grounder(fresh_oracle_scenes):
    metrics = evaluate_fresh(SceneOracle(fresh_oracle_scenes, color_blind=True), scenes=3, pair_scenes=20)
    assert metrics["color_pairs"]["differ"] == metrics["color_pairs"]["both_right"] == 0.0
    assert metrics["own_object"]["share"] < 1.0


# ---- the CLI in process (fake model injected) ------------------------------------------------------

@pytest.mark.parametrize("command, key", [("fidelity", "AP"), ("grounding", "mAcc"), ("cycle", "mean_iou")])
def test_model_commands_print_a_table_and_write_json(data, records, tmp_path, monkeypatch, capsys, command, key):
    use_model(monkeypatch, OracleModel(data_dir=data, records=records))
    out = tmp_path / "metrics.json"
    assert cli.main([command, "--data", str(data), "--max", "6", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"| {command} metric | value |") and f"| {key} |" in printed
    saved = json.loads(out.read_text())
    assert saved["run"]["records"] == 6 and saved["run"]["command"] == command and key in saved


def test_fresh_command_needs_no_data(fresh_oracle_scenes, tmp_path, monkeypatch, capsys):
    use_model(monkeypatch, SceneOracle(fresh_oracle_scenes))
    out = tmp_path / "fresh.json"
    assert cli.main(["fresh", "--scenes", "3", "--pair-scenes", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| fresh metric | value |") and "| grounding/acc_at_0.5 | 1.0000 |" in printed
    saved = json.loads(out.read_text())
    assert saved["run"]["scenes"] == 3 and saved["color_pairs"]["differ"] == 1.0


def test_json_format_and_sampling_options(data, monkeypatch, capsys):
    use_model(monkeypatch, OracleModel())
    assert cli.main(["cycle", "--data", str(data), "--max", "2", "--format", "json", "--cfg", "3", "--seed", "7",
                     "--no-progress"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["run"]["cfg"] == 3.0 and payload["run"]["seed"] == 7 and payload["mean_iou"] == 1.0
    assert payload["run"]["temperature"] == 0.9, "a flag not given keeps the model's own default"
    assert cli.main(["cycle", "--data", str(data), "--max", "1", "--format", "json", "--no-progress"]) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    assert (run["cfg"], run["temperature"]) == (4.0, 0.9)
    use_model(monkeypatch, PickyOracle())
    assert cli.main(["fidelity", "--data", str(data), "--max", "2", "--format", "json", "--candidates", "2",
                     "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["candidates"] == 2
    assert cli.main(["fidelity", "--data", str(data), "--max", "2", "--format", "json", "--candidates", "2",
                     "--compose", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["compose"] is True


class BlankRoundTrip:
    """A model whose image tokenizer loses everything: round trips come back white."""

    def round_trip(self, images):
        from PIL import Image

        return [Image.new("RGB", image.size, "white") for image in images]


def test_detector_round_trip_scores_the_model_s_round_trips(data, monkeypatch, capsys):
    use_model(monkeypatch, BlankRoundTrip())
    assert cli.main(["detector", "--data", str(data), "--max", "4", "--round-trip", "some/model", "--no-progress"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["presence"] == 0.0 and payload["AP"] <= 0.0
    assert payload["run"]["round_trip"] == "some/model" and "cfg" not in payload["run"]


def test_bad_sampling_settings_are_input_errors(data, monkeypatch, capsys):
    use_model(monkeypatch, OracleModel())
    assert cli.main(["fidelity", "--data", str(data), "--cfg", "0.5"]) == 2
    assert capsys.readouterr().err.startswith("error: cfg must be >= 1")
    assert cli.main(["fidelity", "--data", str(data), "--candidates", "0"]) == 2
    assert capsys.readouterr().err == "error: --candidates must be at least 1, got 0\n"
    assert cli.main(["grounding", "--data", str(data), "--batch-size", "0"]) == 2


# ---- the CLI as a subprocess ---------------------------------------------------------------------

def test_detector_command_prints_coco_metrics(data, tmp_path):
    out = tmp_path / "det.json"
    result = run_cli("detector", "--data", str(data), "--no-progress", "--out", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {"AP", "AP50", "AP75", "presence", "color", "shape"} <= set(metrics)
    assert metrics["AP"] >= 0.85
    assert json.loads(out.read_text())["AP"] == metrics["AP"]


def test_refl4_command_scores_a_prediction_file(tmp_path):
    ann = tmp_path / "ann.jsonl"
    ann.write_text('{"id": "1", "bbox": [0, 0, 10, 10]}\n{"id": "2", "bbox": [0, 0, 10, 10]}\n')
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"id": "1", "pred_bbox": [0, 0, 10, 10], "format": "xyxy"},
                                {"id": "2", "pred_bbox": [0, 0, 10, 5], "format": "xywh"}]))
    result = run_cli("refl4", "--pred", str(pred), "--ann", str(ann))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["Acc@0.5"] == 0.5  # IoU 0.5 is not > 0.5
    assert metrics["mAcc"] == 0.5


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`python -m train.eval ... | head`: the pipe is closed before the metrics are printed."""
    ann = tmp_path / "ann.jsonl"
    ann.write_text('{"id": "1", "bbox": [0, 0, 10, 10]}\n{"id": "2", "bbox": [0, 0, 10, 10]}\n')
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"id": i, "pred_bbox": [0, 0, 10, 10], "format": "xyxy"} for i in "12"]))
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write the command makes now fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "train.eval", "refl4", "--pred", str(pred), "--ann", str(ann)],
                                cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr


def _bad_jsonl(tmp_path: Path) -> Path:
    (tmp_path / "test.jsonl").write_text('{"id": "a", "image": "a.png"\n')
    return tmp_path


def _missing_image(tmp_path: Path) -> Path:
    (tmp_path / "test.jsonl").write_text(json.dumps({
        "id": "a", "image": "images/a.png", "width": 64, "height": 64,
        "objects": [{"phrase": "red circle", "box": [0, 0, 9, 9], "color": "red", "shape": "circle"}]}) + "\n")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (lambda tmp, data: ["detector", "--data", str(tmp / "missing")], "data directory not found"),
    (lambda tmp, data: ["detector", "--data", str(data), "--split", "dev"], "invalid choice"),
    (lambda tmp, data: ["detector", "--data", str(data), "--split", "train"], "no train split"),
    (lambda tmp, data: ["detector", "--data", str(_bad_jsonl(tmp))], "not valid JSON"),
    (lambda tmp, data: ["detector", "--data", str(_missing_image(tmp))], "images missing"),
    (lambda tmp, data: ["detector", "--data", str(data), "--max", "0"], "--max must be at least 1"),
    (lambda tmp, data: ["detector", "--data", str(data), "--jpeg", "0"], "jpeg quality"),
    (lambda tmp, data: ["grounding", "--data", str(data), "--model", str(tmp / "nomodel")], "cannot load the model"),
    (lambda tmp, data: ["detector", "--data", str(data), "--round-trip", str(tmp / "nomodel")],
     "cannot load --round-trip"),
    (lambda tmp, data: ["refl4", "--pred", str(tmp / "p.json"), "--ann", str(tmp / "a.json")], "file not found"),
    (lambda tmp, data: ["fresh", "--scenes", "0"], "--scenes and --pair-scenes must be at least 1"),
    (lambda tmp, data: ["fresh", "--model", str(tmp / "nomodel")], "cannot load the model"),
    (lambda tmp, data: ["nonsense"], "invalid choice"),
])
def test_bad_input_gives_one_line_and_exit_code_2(data, tmp_path, args, message):
    result = run_cli(*args(tmp_path, data))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


def test_presence_command_on_a_real_tiny_model(data, tiny_echogen, monkeypatch, capsys):
    use_model(monkeypatch, tiny_echogen)
    assert cli.main(["presence", "--data", str(data), "--max", "3", "--format", "json", "--round-trip",
                     "--no-progress"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert 0.0 <= payload["AUC"] <= 1.0 and payload["absent_phrases"] == 3
    assert payload["run"]["round_trip"] is True and payload["run"]["command"] == "presence"

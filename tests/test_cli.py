"""`python -m model` end to end in a subprocess, and its bad-input contract: one line, exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = {"width": 256, "height": 128, "caption": "a red circle and a blue square",
          "objects": [{"phrase": "red circle", "box": [10, 10, 100, 100]},
                      {"phrase": "blue square", "box": [140, 20, 250, 120]}]}


def run_cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "model", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def layout_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("layouts") / "layout.json"
    path.write_text(json.dumps(LAYOUT))
    return path


def test_cycle_generate_and_ground_end_to_end(tmp_path, tiny_janus_dir, layout_file):
    out = tmp_path / "out"
    cycle = run_cli("cycle", "--layout", layout_file, "--num-images", 2, "--out", out, "--model", tiny_janus_dir)
    assert cycle.returncode == 0, cycle.stderr
    record = json.loads(cycle.stdout)
    assert record["layout"] == 0 and len(record["candidates"]) == 2
    assert {o["phrase"] for o in record["candidates"][0]["objects"]} == {"red circle", "blue square"}
    assert 0.0 <= record["mean_iou"] <= 1.0
    image_path = Path(record["candidates"][0]["path"])
    assert image_path.is_file()

    gen = run_cli("generate", "--layout", layout_file, "--out", out / "gen", "--seed", 3, "--model", tiny_janus_dir,
                  "--cfg", 2, "--temperature", 0.7, "--top-k", 10, "--fp32-weights")
    assert gen.returncode == 0, gen.stderr
    assert json.loads(gen.stdout)["images"][0]["seed"] == 3

    ground = run_cli("ground", "--image", image_path, "--phrase", "red circle", "--phrase", "blue square",
                     "--model", tiny_janus_dir)
    assert ground.returncode == 0, ground.stderr
    answer = json.loads(ground.stdout)
    assert [o["phrase"] for o in answer["objects"]] == ["red circle", "blue square"]

    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"image": str(image_path), "phrases": ["red circle"]}) + "\n"
                     + json.dumps({"image": image_path.name, "phrases": ["a", "b"]}) + "\n")
    shutil_copy = (tmp_path / image_path.name)
    shutil_copy.write_bytes(image_path.read_bytes())
    lines = run_cli("ground", "--batch", batch, "--model", tiny_janus_dir)
    assert lines.returncode == 0, lines.stderr
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [len(r["objects"]) for r in records] == [1, 2]


def bad_inputs(tmp_path, model, layout_file):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"width": 10')
    zero_area = tmp_path / "zero.json"
    zero_area.write_text(json.dumps({**LAYOUT, "objects": [{"phrase": "x", "box": [5, 5, 5, 9]}]}))
    too_many = tmp_path / "many.json"
    too_many.write_text(json.dumps({**LAYOUT, "objects": [{"phrase": "x", "box": [0, 0, 9, 9]}] * 40}))
    empty_phrase = tmp_path / "empty.json"
    empty_phrase.write_text(json.dumps({**LAYOUT, "objects": [{"phrase": "", "box": [0, 0, 9, 9]}]}))
    not_image = tmp_path / "not.png"
    not_image.write_text("hello")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{ nope")
    gray = tmp_path / "gray.png"
    Image.new("L", (20, 20)).save(gray)
    return {
        "malformed json": ["cycle", "--layout", bad_json, "--model", model],
        "zero-area box": ["cycle", "--layout", zero_area, "--model", model],
        "too many boxes": ["generate", "--layout", too_many, "--out", tmp_path / "o", "--model", model],
        "empty phrase": ["cycle", "--layout", empty_phrase, "--model", model],
        "missing layout": ["cycle", "--layout", tmp_path / "missing.json", "--model", model],
        "missing model": ["cycle", "--layout", layout_file, "--model", tmp_path / "no-model"],
        "corrupt model": ["cycle", "--layout", layout_file, "--model", corrupt],
        "missing adapter": ["cycle", "--layout", layout_file, "--model", model, "--adapter", tmp_path / "none"],
        "not an image": ["ground", "--image", not_image, "--phrase", "x", "--model", model],
        "no phrase": ["ground", "--image", gray, "--model", model],
        "blank phrase": ["ground", "--image", gray, "--phrase", "  ", "--model", model],
        "bad cfg": ["cycle", "--layout", layout_file, "--cfg", "0.2", "--model", model],
        "bad top-p": ["cycle", "--layout", layout_file, "--top-p", "2", "--model", model],
        "no beams": ["ground", "--image", gray, "--phrase", "x", "--beams", "0", "--model", model],
        "too many images": ["cycle", "--layout", layout_file, "--num-images", "1000", "--model", model],
        "unknown command": ["paint"],
        "missing argument": ["generate", "--layout", layout_file],
        "bad device": ["cycle", "--layout", layout_file, "--device", "tpu9", "--model", model],
    }


def assert_one_line_error(name, code, stdout, stderr):
    assert code == 2, f"{name}: exit {code}\n{stderr}"
    assert "Traceback" not in stderr, f"{name}:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: {lines}"
    assert stdout == ""


def test_fp32_weights_flag_picks_the_exact_decode_loop(tiny_janus_dir):
    from model.cli import _load_model, build_parser
    from model.matmul import half_matmul_available

    command = ["generate", "--layout", "layout.json", "--out", "out", "--model", str(tiny_janus_dir)]
    assert _load_model(build_parser().parse_args(command)).half_weights is half_matmul_available()
    assert _load_model(build_parser().parse_args([*command, "--fp32-weights"])).half_weights is False


def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, tiny_janus_dir, layout_file, capsys):
    """Every case through `main` in-process (the same code `python -m model` runs)."""
    from model.cli import main

    for name, args in bad_inputs(tmp_path, tiny_janus_dir, layout_file).items():
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        assert_one_line_error(name, code, captured.out, captured.err)


@pytest.mark.parametrize("case", ["malformed json", "corrupt model", "unknown command"])
def test_bad_input_in_a_real_process(tmp_path, tiny_janus_dir, layout_file, case):
    result = run_cli(*bad_inputs(tmp_path, tiny_janus_dir, layout_file)[case])
    assert_one_line_error(case, result.returncode, result.stdout, result.stderr)


def test_grayscale_image_is_grounded(tmp_path, tiny_janus_dir):
    gray = tmp_path / "gray.png"
    Image.new("L", (20, 40)).save(gray)
    result = run_cli("ground", "--image", gray, "--phrase", "thing", "--model", tiny_janus_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["height"] == 40
    found = record["objects"][0]
    assert 0.0 <= found["present"] <= 1.0 and found["absent"] == (found["present"] < 0.5)

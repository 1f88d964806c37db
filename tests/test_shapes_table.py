"""The recipe's results table: cells come from the eval JSONs, missing metrics show as '-'."""

import json
from pathlib import Path

import pytest

from train.recipes import shapes_table


def test_markdown_rows_follow_the_columns():
    results = {"fidelity": {"AP": 0.5, "AP50": 0.75, "AP75": 0.25, "presence": 1.0, "color": 0.9, "shape": 0.8},
               "grounding": {"Acc@0.5": 0.96, "Acc@0.75": 0.5, "mAcc": 0.45}, "cycle": {"mean_iou": 0.7}}
    table = shapes_table.markdown([("stage 1", results), ("half", {"cycle": {"mean_iou": 0.123456}})])
    header, rule, full, half = table.splitlines()
    assert header.split(" | ")[1:3] == ["AP", "AP50"] and rule.count("|---") == len(shapes_table.COLUMNS) + 1
    assert full == "| stage 1 | 0.500 | 0.750 | 0.250 | 1.000 | 0.900 | 0.800 | 0.960 | 0.500 | 0.450 | 0.700 |"
    assert half.endswith("| - | 0.123 |") and half.count("-") == len(shapes_table.COLUMNS) - 1


def test_no_finished_model_is_a_clear_error(tmp_path, capsys):
    assert shapes_table.main(["--out", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "no finished stage model" in capsys.readouterr().err


@pytest.fixture
def recipe_calls(monkeypatch):
    """The recipe's steps recorded instead of run: step names, ("vision", start), stage argvs."""
    from train.recipes import shapes

    calls = []
    monkeypatch.setattr(shapes, "run_data", lambda out, data, n: calls.append("data"))
    monkeypatch.setattr(shapes, "run_vq", lambda out, steps, grid: calls.append(("vq", grid)))
    monkeypatch.setattr(shapes, "run_init", lambda out, grid, regrid_from: calls.append(("init", grid, regrid_from)))
    monkeypatch.setattr(shapes, "run_vision", lambda out, start: calls.append(("vision", start)))

    class FakeStage:
        class FakeRun:
            pass

        @staticmethod
        def main(cfg):
            calls.append(cfg)

    monkeypatch.setattr("importlib.import_module", lambda name: FakeStage)
    monkeypatch.setattr(shapes, "load_config", lambda cls, argv: argv)
    return calls


def test_recipe_warm_start_skips_vq_and_init_and_pretrains_the_given_models_encoder(tmp_path, recipe_calls):
    from train.recipes import shapes

    warm = tmp_path / "earlier-model"
    assert shapes.main(["--out", str(tmp_path / "run"), "--until", "pmtp", "--warm-start", str(warm)]) == 0
    calls = recipe_calls
    assert calls[:2] == ["data", ("vision", warm)] and len(calls) == 3  # no vq or init step
    argv = calls[2]
    assert argv[argv.index("--config") + 1].endswith("train/configs/shapes/pmtp_warm.yaml")
    assert argv[argv.index("--model.path") + 1] == str(tmp_path / "run" / "vision")


def test_recipe_continue_skips_the_vision_step_and_trains_the_given_model(tmp_path, recipe_calls):
    from train.recipes import shapes

    earlier = tmp_path / "earlier-model"
    assert shapes.main(["--out", str(tmp_path / "run"), "--until", "pmtp", "--continue", str(earlier)]) == 0
    assert recipe_calls[0] == "data" and len(recipe_calls) == 2  # no vq, init or vision step
    argv = recipe_calls[1]
    assert argv[argv.index("--config") + 1].endswith("train/configs/shapes/pmtp_continue.yaml")
    assert argv[argv.index("--model.path") + 1] == str(earlier)


def test_recipe_overrides_reach_every_stage_or_the_one_named(tmp_path, recipe_calls):
    from train.recipes import shapes

    assert shapes.main(["--out", str(tmp_path / "run"), "--until", "djo", "--continue", str(tmp_path / "m"),
                        "--set", "pmtp:train.max_steps=4500", "--set", "train.num_threads=1",
                        "--set", "data.data_dir=C:/shapes"]) == 0
    pmtp, djo = recipe_calls[1:]
    assert "--train.max_steps=4500" in pmtp and "--train.max_steps=4500" not in djo
    for argv in (pmtp, djo):
        assert "--train.num_threads=1" in argv and "--data.data_dir=C:/shapes" in argv


def test_recipe_refuses_warm_start_and_continue_together(tmp_path, capsys):
    from train.recipes import shapes

    with pytest.raises(SystemExit) as exit_info:
        shapes.main(["--out", str(tmp_path), "--warm-start", "a", "--continue", "b"])
    assert exit_info.value.code == 2 and "not both" in capsys.readouterr().err


def test_recipe_grid_16_reaches_the_vq_and_init_steps(tmp_path, recipe_calls):
    from train.recipes import shapes

    assert shapes.main(["--out", str(tmp_path / "run"), "--until", "init", "--grid", "16"]) == 0
    assert recipe_calls == ["data", ("vq", 16), ("init", 16, None)]
    recipe_calls.clear()
    assert shapes.main(["--out", str(tmp_path / "run"), "--until", "init"]) == 0
    assert recipe_calls == ["data", ("vq", 8), ("init", 8, None)]


def test_recipe_regrid_moves_the_earlier_model_and_trains_it_with_its_own_stage1_config(tmp_path, recipe_calls):
    from train.recipes import shapes

    earlier, run = tmp_path / "earlier-model", tmp_path / "run"
    assert shapes.main(["--out", str(run), "--until", "pmtp", "--grid", "16", "--regrid", str(earlier)]) == 0
    assert recipe_calls[:4] == ["data", ("vq", 16), ("init", 16, earlier), ("vision", run / "init")]
    argv = recipe_calls[4]
    assert argv[argv.index("--config") + 1].endswith("train/configs/shapes/pmtp_regrid.yaml")
    assert argv[argv.index("--model.path") + 1] == str(run / "vision")


def test_recipe_refuses_a_grid_for_an_earlier_model(tmp_path, capsys):
    from train.recipes import shapes

    for argv in (["--grid", "16", "--continue", "b"], ["--regrid", "b"], ["--grid", "16", "--regrid", "a",
                                                                              "--warm-start", "b"]):
        with pytest.raises(SystemExit) as exit_info:
            shapes.main(["--out", str(tmp_path), *argv])
        assert exit_info.value.code == 2 and "--regrid" in capsys.readouterr().err


def test_table_sampling_flags_reach_every_eval_and_their_own_folder(tmp_path, monkeypatch, capsys):
    model = tmp_path / "run" / "pmtp" / "final" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    argvs = []

    def fake_eval(argv):  # writes one metric per command where train.eval would
        argvs.append(argv)
        metrics = {"fidelity": {"AP": 0.5}, "grounding": {"mAcc": 0.4}, "cycle": {"mean_iou": 0.6}}[argv[0]]
        Path(argv[argv.index("--out") + 1]).write_text(json.dumps(metrics))
        return 0

    monkeypatch.setattr(shapes_table, "eval_main", fake_eval)
    assert shapes_table.main(["--out", str(tmp_path / "run"), "--data", str(tmp_path), "--cfg", "3",
                              "--temperature", "0.7", "--fp32-weights", "--eval-dir", "eval_c3"]) == 0
    assert len(argvs) == 3 and all(a[-5:] == ["--fp32-weights", "--cfg", "3.0", "--temperature", "0.7"]
                                   for a in argvs)
    assert (tmp_path / "run" / "eval_c3" / "pmtp" / "fidelity.json").is_file()
    assert "| stage 1 (PMTP) | 0.500 |" in capsys.readouterr().out
    assert shapes_table.main(["--out", str(tmp_path / "run"), "--data", str(tmp_path)]) == 0
    assert "--cfg" not in argvs[-1] and "--fp32-weights" not in argvs[-1], "without flags: each model's defaults"


def test_export_writes_the_builtin_sampling_defaults(tmp_path, tiny_janus_dir):
    from model.echogen import EchoGen
    from model.results import SamplingConfig
    from train.recipes import shapes

    shapes.export(tiny_janus_dir, tmp_path / "exported")
    assert EchoGen.load(tmp_path / "exported").sampling == SamplingConfig(
        cfg=shapes.SHAPES_CFG, temperature=shapes.SHAPES_TEMPERATURE)
    assert EchoGen.load(tiny_janus_dir).sampling == SamplingConfig(), "the source checkpoint is left as it was"

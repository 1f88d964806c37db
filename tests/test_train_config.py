"""Run configs: YAML plus command-line overrides, validation, and the saved resolved config."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from train.config import ConfigError, ModelConfig, TrainConfig, load_config, option, save_config
from train.cycle_rl import CycleRLRun
from train.djo import DJORun
from train.pmtp import PMTPRun


def write(tmp_path, data) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_yaml_then_overrides(tmp_path):
    path = write(tmp_path, {"model": {"path": "m", "init_tiny": True}, "train": {"max_steps": 7, "lr": 1},
                            "pmtp": {"grounding_weight": 0.5}})
    cfg = load_config(PMTPRun, ["--config", path, "--train.max_steps", "9", "--batch_size=3", "--full",
                                "--lora.modules_to_save", "[embed_tokens, lm_head]", "--resume", "latest",
                                "--mixed_precision", "no", "--model.adapter", "null"])
    assert cfg.train.max_steps == 9 and cfg.train.batch_size == 3
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.full is True and cfg.model.init_tiny is True
    assert cfg.lora.modules_to_save == ["embed_tokens", "lm_head"]
    assert cfg.train.resume == "latest"
    assert cfg.train.mixed_precision == "no" and cfg.model.adapter is None  # text, not YAML's false
    assert cfg.pmtp.grounding_weight == 0.5 and cfg.pmtp.l2i_weight == 1.0


def test_a_partial_section_keeps_the_stage_defaults(tmp_path):
    cfg = load_config(DJORun, ["--config", write(tmp_path, {"train": {"max_steps": 3}})])
    assert cfg.train.output_dir == "runs/djo"
    assert load_config(CycleRLRun, []).train.output_dir == "runs/cycle_rl"


@pytest.mark.parametrize("args, message", [
    (["--train.max_step", "3"], "unknown key"),
    (["--nonsense", "1"], "unknown option"),
    (["--train.max_steps", "many"], "must be int"),
    (["--train.max_steps", "0"], "max_steps must be >= 1"),
    (["--model.dtype", "int8"], "model.dtype"),
    (["--pmtp.caption_dropout", "1.5"], "caption_dropout"),
    (["--pmtp.number_noise", "2"], "number_noise"),
    (["--model.merge_adapter"], "needs model.adapter"),
    (["--model.init_tiny"], "needs model.path"),
])
def test_bad_values_are_rejected_with_the_field_name(args, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PMTPRun, args)


def test_stage_sections_validate():
    with pytest.raises(ConfigError, match="rollout"):
        load_config(DJORun, ["--djo.rollout", "sideways"])
    with pytest.raises(ConfigError, match="djo.number_noise"):
        load_config(DJORun, ["--djo.number_noise", "-0.1"])
    with pytest.raises(ConfigError, match="group_size"):
        load_config(CycleRLRun, ["--rl.group_size", "1"])
    with pytest.raises(ConfigError, match="temperature"):
        load_config(CycleRLRun, ["--rl.temperature", "0"])
    with pytest.raises(ConfigError, match="cfg must be >= 1"):
        load_config(CycleRLRun, ["--rl.cfg", "0.5"])
    with pytest.raises(ConfigError, match="unknown key"):  # log-probs must match sampling: no truncation
        load_config(CycleRLRun, ["--rl.top_k", "5"])
    with pytest.raises(ConfigError, match="multiples"):
        load_config(CycleRLRun, ["--rl.num_iterations", "2", "--train.max_steps", "5"])


def test_ambiguous_bare_names_are_refused():
    @dataclass
    class Two:
        model: ModelConfig = field(default_factory=ModelConfig)
        other: TrainConfig = field(default_factory=TrainConfig)
        again: TrainConfig = field(default_factory=TrainConfig)

    with pytest.raises(ConfigError, match="ambiguous"):
        load_config(Two, ["--max_steps", "2"])
    assert load_config(Two, ["--again.max_steps", "2"]).again.max_steps == 2


def test_saved_config_reloads_to_the_same_config(tmp_path):
    cfg = load_config(CycleRLRun, ["--rl.w_valid", "0.5", "--train.lr", "3e-5", "--model.path", "x"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(CycleRLRun, ["--config", str(tmp_path / "config.yaml")]) == cfg


def test_every_field_has_help():
    import dataclasses

    for run in (PMTPRun, DJORun, CycleRLRun):
        for section in dataclasses.fields(run):
            for f in dataclasses.fields(section.default_factory()):
                assert f.metadata.get("help"), f"{run.__name__}.{section.name}.{f.name} has no help"
    assert option("x", default=1).metadata["help"] == "x"


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "train" / "configs").glob("*/*.yaml")))
def test_shipped_stage_configs_load(path):
    if path.parent.name == "accelerate":
        return
    if path.stem.startswith("vq"):
        from train.vq import VQRun

        assert load_config(VQRun, ["--config", str(path)]).vq.base_channels % 32 == 0
        return
    if path.stem == "vision":
        from train.vision_pretrain import VisionPretrainRun

        assert load_config(VisionPretrainRun, ["--config", str(path)]).vision.steps > 0
        return
    stage = {"pmtp": PMTPRun, "pmtp_warm": PMTPRun, "pmtp_continue": PMTPRun, "pmtp_regrid": PMTPRun,
             "pmtp_absent": PMTPRun, "djo": DJORun, "cycle_rl": CycleRLRun}[path.stem]
    cfg = load_config(stage, ["--config", str(path)])
    assert cfg.train.output_dir.startswith("runs/")


@pytest.mark.parametrize("stage", ["pmtp", "djo", "cycle_rl", "vision_pretrain"])
def test_stage_commands_end_bad_input_with_one_error_line(stage, tmp_path):
    import subprocess
    import sys

    bad = {"vision_pretrain": ["--vision.model", str(tmp_path / "missing")]}.get(
        stage, ["--model.path", str(tmp_path / "missing")])
    for argv in (["--train.max_steps", "-3"] if stage != "vision_pretrain" else ["--vision.steps", "0"], bad):
        out = subprocess.run([sys.executable, "-m", f"train.{stage}", *argv], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent, timeout=120)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert lines[-1].startswith("error:") and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("setting, cuda_bf16, cpu, expected", [
    ("auto", None, {"amx_bf16": True, "avx512_bf16": True}, "bf16"),  # a CPU with AMX tiles
    ("auto", None, {"amx_bf16": False, "avx512_bf16": True}, "no"),  # bf16 dot products only: not faster here
    ("auto", None, {}, "no"),
    ("auto", True, {}, "bf16"),
    ("auto", False, {"amx_bf16": True}, "no"),  # on a GPU the GPU decides
    ("no", None, {"amx_bf16": True}, "no"),
    ("fp16", True, {}, "fp16"),
    (None, None, {"amx_bf16": True}, None),  # accelerate launch decides
])
def test_auto_mixed_precision_is_bf16_where_bf16_is_native(setting, cuda_bf16, cpu, expected):
    from train.loop import resolve_mixed_precision

    assert resolve_mixed_precision(setting, cuda_bf16, cpu) == expected


def test_auto_mixed_precision_is_a_valid_setting():
    assert load_config(PMTPRun, ["--train.mixed_precision", "auto"]).train.mixed_precision == "auto"
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(PMTPRun, ["--train.mixed_precision", "bfloat16"])

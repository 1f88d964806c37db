"""Each stage as a user runs it: `python -m train.<stage>` on the shipped smoke config, a tiny
random Janus and a few synthetic images; checkpoints, exact resume, reload through model/,
a 2-process accelerate launch and the benchmark."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.logging_utils import read_metrics

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
       "PYTHONPATH": str(ROOT)}
STEPS = {"pmtp": 4, "djo": 2, "cycle_rl": 2}  # a checkpoint at half of them


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    from train.data import synthesize

    out = tmp_path_factory.mktemp("shapes")
    synthesize(out, 8, 32)
    return out


def run_stage(stage, out, tiny_dir, data_dir, *extra, launcher=(sys.executable, "-m")):
    args = [*launcher, f"train.{stage}", "--config", str(ROOT / f"train/configs/smoke/{stage}.yaml"),
            "--model.path", str(tiny_dir), "--model.init_tiny", "false", "--data.data_dir", str(data_dir),
            "--train.output_dir", str(out), "--train.max_steps", str(STEPS[stage]),
            "--train.save_every", str(STEPS[stage] // 2), "--train.val_every", str(STEPS[stage]),
            "--train.batch_size", "1", "--train.progress", "false", *extra]
    done = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return read_metrics(out / "metrics.csv")


@pytest.mark.parametrize("stage", ["pmtp", "djo", "cycle_rl"])
def test_stage_checkpoints_resumes_exactly_and_reloads(stage, tmp_path, tiny_janus_dir, shapes_dir):
    n, half = STEPS[stage], STEPS[stage] // 2
    full = tmp_path / "full"
    straight = run_stage(stage, full, tiny_janus_dir, shapes_dir)
    assert sorted(straight["train/loss"]) == list(range(1, n + 1))
    for step in (half, n):
        ckpt = full / f"checkpoint-{step}"
        assert (ckpt / "adapter" / "adapter_model.safetensors").is_file()
        assert (ckpt / "config.yaml").is_file() and (ckpt / "optimizer.bin").is_file()
    assert "val/cycle_iou" in straight and (full / "images" / f"step-{n}").is_dir()

    # "Interrupted" after checkpoint-{half}: a fresh process resumes from it and finishes.
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(full / f"checkpoint-{half}", resumed_dir / f"checkpoint-{half}")
    resumed = run_stage(stage, resumed_dir, tiny_janus_dir, shapes_dir, "--train.resume", "latest")
    assert sorted(resumed["train/loss"]) == list(range(half + 1, n + 1))
    for step in range(half + 1, n + 1):
        assert resumed["train/loss"][step] == pytest.approx(straight["train/loss"][step], abs=1e-5)

    from model.echogen import EchoGen
    from model.layout import parse_layout
    from model.results import SamplingConfig

    eg = EchoGen.load(tiny_janus_dir, adapter=full / "final" / "adapter")
    layout = parse_layout({"width": 32, "height": 32, "objects": [{"phrase": "red circle", "box": [2, 2, 20, 20]}]})
    assert eg.generate([layout], sampling=SamplingConfig(cfg=3.0)).images[0][0].size == (32, 32)
    if stage == "cycle_rl":
        assert straight["train/kl"][1] == 0.0


def test_full_training_saves_a_model_that_loads(tmp_path, tiny_janus_dir, shapes_dir):
    metrics = run_stage("cycle_rl", tmp_path, tiny_janus_dir, shapes_dir, "--full", "--train.val_every", "0")
    assert metrics["train/kl"][1] == 0.0  # the frozen reference copy equals the start
    from model.loading import load_janus

    model, _ = load_janus(tmp_path / "final" / "model")
    base, _ = load_janus(tiny_janus_dir)
    trained = dict(model.named_parameters())
    assert any(not torch.equal(p, trained[name]) for name, p in base.named_parameters())
    assert torch.equal(base.model.vqmodel.decoder.conv_in.weight, model.model.vqmodel.decoder.conv_in.weight)


def test_two_process_accelerate_launch(tmp_path, tiny_janus_dir, shapes_dir):
    ENV["ACCELERATE_USE_CPU"] = "true"  # gloo DDP on CPU processes
    try:
        launcher = (sys.executable, "-m", "accelerate.commands.launch",
                    "--config_file", str(ROOT / "train/configs/accelerate/multi_gpu.yaml"),
                    "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "29533", "-m")
        metrics = run_stage("pmtp", tmp_path, tiny_janus_dir, shapes_dir, "--train.val_every", "0",
                            launcher=launcher)
    finally:
        ENV.pop("ACCELERATE_USE_CPU")
    assert sorted(metrics["train/loss"]) == [1, 2, 3, 4]
    ckpt = tmp_path / "checkpoint-4"
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    assert (tmp_path / "final" / "adapter" / "adapter_model.safetensors").is_file()


def test_bench_prints_throughput_and_memory(tmp_path, tiny_janus_dir, shapes_dir):
    args = [sys.executable, "-m", "train.bench", "--stage", "pmtp", "--config",
            str(ROOT / "train/configs/smoke/pmtp.yaml"), "--steps", "2", "--warmup", "1", "--json",
            "--model.path", str(tiny_janus_dir), "--model.init_tiny", "false", "--data.data_dir", str(shapes_dir)]
    done = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == 2 and result["steps_per_s"] > 0 and result["samples_per_s"] > 0
    assert result["peak_memory_gib"] > 0 and result["peak_memory_kind"] == "peak RSS"
    refused = subprocess.run([sys.executable, "-m", "train.bench", "--stage", "pmtp", "--size", "7b"],
                             cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    if not torch.cuda.is_available():
        assert refused.returncode != 0 and "allow-cpu-large" in refused.stderr

"""The VQ trainer: loss weighting, a few real steps, resume, and the saved tokenizer."""

import json

import torch

from train import vq
from train.config import load_config


def test_foreground_weights_favour_shape_pixels():
    white, red, black, light_grey = [1.0, 1.0, 1.0], [0.9, 0.1, 0.1], [0.05, 0.05, 0.05], [0.85, 0.85, 0.8]
    pixels = torch.tensor([white, red, black, light_grey]).T.reshape(1, 3, 1, 4) * 2 - 1
    weights = vq.foreground_weights(pixels, 4.0).flatten()
    assert weights[0] == 1.0
    assert weights[1] > 4.0 and weights[2] > 4.0
    assert weights[3] < 2.0
    assert torch.equal(vq.foreground_weights(pixels, 0.0), torch.ones(1, 1, 1, 4))


def test_vq_trains_resumes_and_saves_a_janus_vq(tmp_path):
    from transformers import JanusVQVAE

    args = ["--out", str(tmp_path), "--steps", "3", "--full_size_steps", "1", "--batch_size", "2",
            "--image_size", "64", "--crop", "32", "--channel_multiplier", "[1, 1, 1]", "--codebook_size", "16",
            "--save_every", "2", "--restart_every", "1"]
    report = vq.main(load_config(vq.VQRun, args))
    assert report["steps"] == 3 and 0 < report["psnr_db"] < 100
    assert set(report["round_trip_fidelity"]) >= {"AP", "presence", "color", "shape"}
    assert json.loads((tmp_path / "vq_report.json").read_text())["steps"] == 3
    saved = JanusVQVAE.from_pretrained(tmp_path / "vq")
    norms = saved.quantize.embedding.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))  # unit rows: encode picks training's codes
    tokens = saved.encode(torch.zeros(1, 3, 64, 64)).image_tokens
    assert tokens.numel() == (64 // 4) ** 2 and int(tokens.max()) < 16

    # Resume from the last checkpoint (step 3) to 4 steps: one more step, not a fresh start.
    (tmp_path / "vq" / "config.json").unlink()
    resumed = vq.main(load_config(vq.VQRun, args[:2] + ["--steps", "4"] + args[4:] + ["--resume"]))
    assert resumed["steps"] == 4 and resumed["steps_this_run"] == 1


def test_vq_config_refuses_what_janus_cannot_build():
    import pytest

    from train.config import ConfigError

    with pytest.raises(ConfigError, match="equal channel multipliers"):
        vq.VQTrainConfig(channel_multiplier=[1, 2, 2], num_res_blocks=0)
    with pytest.raises(ConfigError, match="multiple of 32"):
        vq.VQTrainConfig(base_channels=48)

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


def test_decoder_steps_keep_every_code_and_train_the_decoder(tmp_path):
    from safetensors.torch import load_file

    first = ["--out", str(tmp_path / "a"), "--steps", "2", "--full_size_steps", "1", "--batch_size", "2",
             "--image_size", "64", "--crop", "32", "--channel_multiplier", "[1, 1, 1]", "--codebook_size", "16",
             "--eval_images", "4"]
    vq.main(load_config(vq.VQRun, first))
    polish = ["--out", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "vq"), "--steps", "0",
              "--full_size_steps", "0", "--decoder_steps", "3", "--decoder_full_size_steps", "1",
              "--batch_size", "2", "--image_size", "64", "--crop", "32", "--eval_images", "4"]
    report = vq.main(load_config(vq.VQRun, polish))
    assert report["decoder_steps"] == 3 and report["steps_this_run"] == 3
    before, after = load_file(tmp_path / "a" / "vq" / "model.safetensors"), load_file(tmp_path / "b" / "vq" / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (not name.startswith(("decoder.", "post_quant_conv."))), name
    pixels = vq.render_batch(0, "val", 0, 2, 64)
    from transformers import JanusVQVAE

    codes = [JanusVQVAE.from_pretrained(tmp_path / d / "vq").encode(pixels).image_tokens for d in "ab"]
    assert torch.equal(*codes)


def test_init_refuses_what_is_not_a_saved_vq(tmp_path, tiny_janus_dir):
    import pytest

    from train.config import ConfigError

    with pytest.raises(ConfigError, match="no config.json"):
        vq.load_vq(tmp_path)
    with pytest.raises(ConfigError, match="not a VQ"):
        vq.load_vq(tiny_janus_dir)
    with pytest.raises(ConfigError, match="nothing to train"):
        vq.VQTrainConfig(steps=0, full_size_steps=0)


def test_cli_reports_a_bad_init_in_one_line(tmp_path):
    import subprocess
    import sys

    args = ["--init", str(tmp_path), "--steps", "0", "--full_size_steps", "0", "--decoder_steps", "1",
            "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-m", "train.vq", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --init")
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()

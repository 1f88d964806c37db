"""Encoder pre-training: dense per-patch targets on literal records, and a short real run."""

import json

import torch

from train.config import load_config
from train.vision_pretrain import COLOR_NAMES, SHAPE_NAMES, VisionPretrainRun, dense_losses, main, patch_targets

RECORD = {"width": 32, "height": 32, "objects": [
    {"box": [0, 0, 14, 14], "color": "red", "shape": "circle", "z": 0},
    {"box": [18, 18, 32, 32], "color": "blue", "shape": "square", "z": 1},
    {"box": [2, 2, 12, 12], "color": "green", "shape": "star", "z": 1},  # in front of the red circle
]}


def test_patch_targets_name_the_topmost_object_at_each_patch_center():
    t = patch_targets(RECORD, grid=2)  # centers (8, 8), (24, 8), (8, 24), (24, 24), row-major
    green, blue = 1 + COLOR_NAMES.index("green"), 1 + COLOR_NAMES.index("blue")
    assert t.color.tolist() == [green, 0, 0, blue]
    assert t.shape.tolist() == [1 + SHAPE_NAMES.index("star"), 0, 0, 1 + SHAPE_NAMES.index("square")]
    assert t.foreground.tolist() == [True, False, False, True]
    torch.testing.assert_close(t.box[0], torch.tensor([2, 2, 12, 12]) / 32)
    torch.testing.assert_close(t.box[1], torch.zeros(4))


def test_dense_losses_are_low_for_a_head_that_reads_the_answer():
    targets = [patch_targets(RECORD, grid=2)]
    n_color, n_shape = len(COLOR_NAMES) + 1, len(SHAPE_NAMES) + 1
    # features that are the answers themselves: one-hot color, one-hot shape, box logits
    features = torch.cat([torch.nn.functional.one_hot(targets[0].color, n_color).float() * 20,
                          torch.nn.functional.one_hot(targets[0].shape, n_shape).float() * 20,
                          torch.logit(targets[0].box.clamp(1e-4, 1 - 1e-4))], dim=-1).unsqueeze(0)  # [1, P, C]
    head = torch.nn.Linear(features.shape[-1], features.shape[-1])
    with torch.no_grad():
        head.weight.copy_(torch.eye(features.shape[-1]))
        head.bias.zero_()
    loss, stats = dense_losses(features, head, targets, box_weight=5.0)
    assert stats["color_acc"] == stats["shape_acc"] == 1.0 and stats["box_l1"] < 1e-3 and float(loss) < 1e-3
    wrong, _ = dense_losses(torch.zeros_like(features), head, targets, box_weight=5.0)
    assert float(wrong) > 1.0


def test_a_short_run_saves_a_loadable_model_with_a_new_encoder(tiny_janus_dir, tmp_path):
    from model.echogen import EchoGen

    out = tmp_path / "vision"
    cfg = load_config(VisionPretrainRun, ["--vision.model", str(tiny_janus_dir), "--vision.out", str(out),
                                          "--vision.steps", "3", "--vision.batch_size", "2",
                                          "--vision.val_images", "2", "--vision.num_threads", "1"])
    report = main(cfg)
    assert set(report["val_after"]) >= {"color_acc", "shape_acc", "box_l1"}
    assert json.loads((out / "vision_report.json").read_text())["steps"] == 3
    before, after = EchoGen.load(tiny_janus_dir).model, EchoGen.load(out).model
    assert not torch.equal(before.model.vision_model.embeddings.patch_embedding.weight,
                           after.model.vision_model.embeddings.patch_embedding.weight)
    assert torch.equal(before.model.language_model.layers[0].mlp.down_proj.weight,
                       after.model.language_model.layers[0].mlp.down_proj.weight)  # only the encoder trains

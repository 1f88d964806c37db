"""`python -m train.vision_pretrain`: pre-train the understanding encoder (SigLIP) on Shapes World.

Janus-Pro reads images through a SigLIP encoder pre-trained on web-scale data; the built-in
model's tiny SigLIP starts from random weights, and learning it from the grounding loss alone
is slow: for hundreds of steps the model writes one box for every phrase (the extent of all
shapes), because the patch features cannot tell the LM which shape is "the red circle" until
attention picks the right patches, and attention cannot pick them until the features tell them
apart. This step gives the encoder what a pre-trained one brings: every patch feature learns,
from dense targets read off the renderer's records, the color and shape of the topmost object
at its center (or background) and that object's box. Not in the paper; the paper starts from
Janus-Pro's pre-trained encoder.

Images are rendered on the fly from the train split's seed stream (never val or test); the
LM, the aligner and the VQ are untouched. The result is the start model with its encoder
replaced, saved whole to `--vision.out` (a model dir stage 1 starts from), plus
`vision_report.json` with per-patch accuracies on val renders. `--vision.resume` continues
from the last state saved every `save_every` steps.

    python -m train.vision_pretrain --vision.model assets/echogen-shapes --vision.out runs/shapes/vision
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from train.config import ConfigError, option, run_cli
from train.shapes.geometry import SHAPES
from train.shapes.world import COLORS, SceneConfig

logger = logging.getLogger(__name__)
COLOR_NAMES, SHAPE_NAMES = list(COLORS), list(SHAPES)  # class 0 of each target is the background


@dataclass
class VisionPretrainConfig:
    model: str = option("the model whose encoder is pre-trained (a model dir)", default="assets/echogen-shapes")
    out: str = option("where the model with the new encoder is saved", default="runs/shapes/vision")
    steps: int = option("optimizer steps", default=1500)
    batch_size: int = option("images per step", default=32)
    lr: float = option("peak learning rate (100 warm-up steps, then cosine to 10%)", default=1e-3)
    box_weight: float = option("weight of the box L1 term (boxes in 0-1 units)", default=5.0)
    seed: int = option("render seed of the train split (as train.synth)", default=0)
    first_image: int = option("index of the first train-split image rendered", default=0)
    val_images: int = option("val renders for the report", default=64)
    save_every: int = option("steps between resumable states", default=250)
    num_threads: int = option("torch CPU threads (0: torch's choice)", default=2)
    resume: bool = option("continue from the state under OUT/state", default=False)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("vision.steps and vision.batch_size must be >= 1")
        if self.lr <= 0 or self.box_weight < 0:
            raise ConfigError("vision.lr must be > 0 and vision.box_weight >= 0")


@dataclass
class VisionPretrainRun:
    vision: VisionPretrainConfig = field(default_factory=VisionPretrainConfig)


@dataclass
class PatchTargets:
    color: torch.Tensor  # [P] 0 = background, 1 + index in COLOR_NAMES
    shape: torch.Tensor  # [P] 0 = background, 1 + index in SHAPE_NAMES
    box: torch.Tensor  # [P, 4] the object's x1, y1, x2, y2 / image side (zeros on background)
    foreground: torch.Tensor  # [P] bool


def patch_targets(record: dict, grid: int) -> PatchTargets:
    """Dense targets of a Shapes World record on a grid x grid patch raster (row-major, as
    SigLIP orders its patches): the topmost object whose box holds the patch center."""
    side = record["width"]
    step = side / grid
    centers = (torch.arange(grid, dtype=torch.float32) + 0.5) * step  # [g]
    cy, cx = torch.meshgrid(centers, centers, indexing="ij")  # [g, g] each
    cx, cy = cx.flatten(), cy.flatten()  # [P]
    color = torch.zeros(grid * grid, dtype=torch.long)
    shape = torch.zeros(grid * grid, dtype=torch.long)
    box = torch.zeros(grid * grid, 4)
    for obj in sorted(record["objects"], key=lambda o: o.get("z", 0)):  # later (front) objects overwrite
        x1, y1, x2, y2 = obj["box"]
        inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
        color[inside] = 1 + COLOR_NAMES.index(obj["color"])
        shape[inside] = 1 + SHAPE_NAMES.index(obj["shape"])
        box[inside] = torch.tensor([x1, y1, x2, y2], dtype=torch.float32) / side
    return PatchTargets(color, shape, box, color > 0)


def dense_losses(features: torch.Tensor, head: nn.Linear, targets: list[PatchTargets], box_weight: float):
    """features [B, P, C] -> (loss, stats): CE of color and shape, L1 of the box on object patches."""
    out = head(features)  # [B, P, 1 + colors + 1 + shapes + 4]
    n_color, n_shape = len(COLOR_NAMES) + 1, len(SHAPE_NAMES) + 1
    color_logits, shape_logits, box = out.split((n_color, n_shape, 4), dim=-1)
    color = torch.stack([t.color for t in targets])  # [B, P]
    shape = torch.stack([t.shape for t in targets])
    target_box = torch.stack([t.box for t in targets])  # [B, P, 4]
    fg = torch.stack([t.foreground for t in targets])  # [B, P]
    color_loss = F.cross_entropy(color_logits.flatten(0, 1), color.flatten())
    shape_loss = F.cross_entropy(shape_logits.flatten(0, 1), shape.flatten())
    box_loss = (box.sigmoid() - target_box).abs()[fg].mean() if bool(fg.any()) else box.sum() * 0
    stats = {
        "color_acc": (color_logits.argmax(-1) == color).float().mean().item(),
        "shape_acc": (shape_logits.argmax(-1) == shape).float().mean().item(),
        "object_shape_acc": (shape_logits.argmax(-1) == shape)[fg].float().mean().item() if bool(fg.any()) else 0.0,
        "box_l1": box_loss.item(),
    }
    return color_loss + shape_loss + box_weight * box_loss, stats


def _batch(processor, cfg: VisionPretrainConfig, split: str, start: int, n: int, grid: int):
    from model.inputs import pixel_values
    from train.synth import make_example

    examples = [make_example(cfg.seed, split, start + i, SceneConfig(size=processor.image_processor.size["height"]))
                for i in range(n)]
    pixels = pixel_values(processor.image_processor, [image for _, _, image in examples], "cpu", torch.float32)
    return pixels, [patch_targets(record, grid) for _, record, _ in examples]


def _features(model, pixels: torch.Tensor) -> torch.Tensor:
    return model.model.vision_model(pixels, return_dict=True).last_hidden_state  # [B, P, C]


def evaluate(model, head, processor, cfg: VisionPretrainConfig, grid: int) -> dict[str, float]:
    """Per-patch accuracies and box L1 on val renders (the encoder in eval mode)."""
    model.eval()
    with torch.no_grad():
        pixels, targets = _batch(processor, cfg, "val", 0, cfg.val_images, grid)
        _, stats = dense_losses(_features(model, pixels), head, targets, cfg.box_weight)
    model.train()
    return stats


def main(run: VisionPretrainRun) -> dict:
    from model.loading import load_janus

    cfg = run.vision
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out, state_path = Path(cfg.out), Path(cfg.out) / "state" / "state.pt"
    model, processor = load_janus(cfg.model, device="cpu", dtype=torch.float32)
    encoder = model.model.vision_model
    vision_cfg = model.config.vision_config
    grid = vision_cfg.image_size // vision_cfg.patch_size
    torch.manual_seed(cfg.seed)
    head = nn.Linear(vision_cfg.hidden_size, len(COLOR_NAMES) + len(SHAPE_NAMES) + 2 + 4)
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(encoder.parameters()) + list(head.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    step = 0
    if cfg.resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        encoder.load_state_dict(state["encoder"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        logger.info("resumed at step %d", step)
    model.train()
    logger.info("config: %s", json.dumps(asdict(cfg)))
    before = evaluate(model, head, processor, cfg, grid)
    bar = tqdm(total=cfg.steps, initial=step, desc="vision")
    start = time.perf_counter()
    while step < cfg.steps:
        lr = cfg.lr * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * step / cfg.steps)) * 0.9 + 0.1)
        for group in optimizer.param_groups:
            group["lr"] = lr
        pixels, targets = _batch(processor, cfg, "train", cfg.first_image + step * cfg.batch_size, cfg.batch_size,
                                 grid)
        loss, stats = dense_losses(_features(model, pixels), head, targets, cfg.box_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", color=f"{stats['color_acc']:.2f}", box=f"{stats['box_l1']:.3f}")
        if step % cfg.save_every == 0 and step < cfg.steps:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"encoder": encoder.state_dict(), "head": head.state_dict(),
                        "optimizer": optimizer.state_dict(), "step": step}, state_path)
    bar.close()
    report = {"steps": cfg.steps, "train_seconds_this_run": time.perf_counter() - start,
              "val_before": before, "val_after": evaluate(model, head, processor, cfg, grid)}
    for p in model.parameters():
        p.requires_grad_(True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    (out / "vision_report.json").write_text(json.dumps(report, indent=2))
    logger.info("vision report: %s", report)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_cli(lambda cfg: print(json.dumps(main(cfg))), VisionPretrainRun, sys.argv[1:])

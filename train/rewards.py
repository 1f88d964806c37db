"""Cycle RL rewards: one float per generated image.

`cycle` (the method): a pure function of the drawn boxes and the boxes the model grounded again.
Boxes are pixel xyxy in one image frame. Per object, `w_iou * IoU + w_l1 * (1 - L1)` (L1 is the
mean coordinate error normalized by the image size, `model.metrics.box_l1`); an answer that
did not parse into a box scores IoU 0 and L1 1. The image's reward is the mean over its
objects, plus `w_valid` times the share of answers that parsed cleanly (a format reward).

`detector` (a diagnostic, not the method; Shapes World phrases only): the evaluation's own
detector scores each image as `python -m train.eval reward` does (`object_fidelity`). Training on
it asks how far stage 3's GRPO can move the drawing at a given budget with a reward that agrees
with the evaluation by construction, which separates "the reward is weak" from "the budget is".
"""

from __future__ import annotations

from typing import Callable, Sequence

from PIL import Image

from model.metrics import Box, box_iou, box_l1
from train.shapes.world import parse_phrase


def object_reward(iou: float, l1: float, w_iou: float = 1.0, w_l1: float = 1.0) -> float:
    return w_iou * iou + w_l1 * (1.0 - l1)


def cycle_reward(
    drawn: Sequence[Box], grounded: Sequence[Box | None], width: float, height: float,
    valid: Sequence[bool] | None = None, w_iou: float = 1.0, w_l1: float = 1.0, w_valid: float = 0.0,
) -> float:
    """Reward of one generated image: mean object reward plus the validity term."""
    if len(drawn) != len(grounded) or not drawn:
        raise ValueError(f"need one grounded box per drawn box, got {len(drawn)} and {len(grounded)}")
    valid = [g is not None for g in grounded] if valid is None else valid
    total = 0.0
    for d, g in zip(drawn, grounded):
        iou, l1 = (0.0, 1.0) if g is None else (box_iou(d, g), min(1.0, box_l1(d, g, width, height)))
        total += object_reward(iou, l1, w_iou, w_l1)
    return total / len(drawn) + w_valid * sum(map(bool, valid)) / len(drawn)


def cycle_rewards(
    drawn: Sequence[Sequence[Box]], grounded: Sequence[Sequence[Box | None]], valid: Sequence[Sequence[bool]],
    sizes: Sequence[tuple[float, float]], **weights: float,
) -> list[float]:
    """`cycle_reward` for a batch of images (open-r1 style: lists in, one float per image out)."""
    return [cycle_reward(d, g, w, h, v, **weights) for d, g, v, (w, h) in zip(drawn, grounded, valid, sizes)]


def detector_rewards(images: Sequence[Image.Image], phrases: Sequence[Sequence[str]],
                     drawn: Sequence[Sequence[Box]]) -> list[float]:
    """Per image, the detector's fidelity to its layout (phrases and drawn boxes in the image's
    pixel frame). ValueError for a phrase that is not "<color> <shape> [in front|behind]"."""
    from train.eval.fidelity import object_fidelity  # the detector (scipy) only when this reward is used

    if not len(images) == len(phrases) == len(drawn):
        raise ValueError(f"{len(images)} images, {len(phrases)} phrase lists and {len(drawn)} box lists")
    scores = []
    for image, names, boxes in zip(images, phrases, drawn):
        if len(names) != len(boxes) or not boxes:
            raise ValueError(f"need one drawn box per phrase, got {len(names)} phrases and {len(boxes)} boxes")
        attributes = [parse_phrase(name)[:2] for name in names]  # (color, shape)
        objects = [{"color": color, "shape": shape, "box": list(box)} for (color, shape), box in zip(attributes, boxes)]
        record = {"width": image.width, "height": image.height, "objects": objects}
        scores.append(object_fidelity(image.convert("RGB"), record))
    return scores


REWARDS: dict[str, Callable[..., list[float]]] = {"cycle": cycle_rewards, "detector": detector_rewards}

"""Cycle RL rewards: pure functions of drawn boxes and the boxes the model grounded again.

Boxes are pixel xyxy in one image frame. Per object, `w_iou * IoU + w_l1 * (1 - L1)` (L1 is the
mean coordinate error normalized by the image size, `model.metrics.box_l1`); an answer that
did not parse into a box scores IoU 0 and L1 1. The image's reward is the mean over its
objects, plus `w_valid` times the share of answers that parsed cleanly (a format reward).
"""

from __future__ import annotations

from typing import Callable, Sequence

from model.metrics import Box, box_iou, box_l1


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


REWARDS: dict[str, Callable[..., list[float]]] = {"cycle": cycle_rewards}

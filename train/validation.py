"""Periodic validation: generate held-out layouts, ground them again, log cycle IoU and images."""

from __future__ import annotations

import logging
from statistics import mean

import torch

from model.echogen import EchoGen
from model.layout import Layout
from model.results import SamplingConfig
from train.logging_utils import MetricLogger

logger = logging.getLogger(__name__)


@torch.no_grad()
def validate(janus, processor, layouts: list[Layout], step: int, metrics: MetricLogger,
             sampling: SamplingConfig = SamplingConfig(), seed: int = 0) -> dict[str, float]:
    """One image per layout (seed fixed across validations, so changes come from the weights)."""
    if not layouts:
        return {}
    was_training = janus.training
    janus.eval()
    try:
        eg = EchoGen(janus, processor, grounding_beams=1, half_weights=False)  # a cheap signal for curves
        results = [eg.cycle(layout, num_images=1, seed=seed, sampling=sampling) for layout in layouts]
    finally:
        janus.train(was_training)
    best = [r.candidates[0] for r in results]
    values = {
        "val/cycle_iou": mean(c.score.mean_iou for c in best),
        "val/cycle_l1": mean(c.score.mean_l1 for c in best),
        "val/pass_rate": mean(c.score.pass_rate for c in best),
    }
    metrics.scalars(step, values)
    metrics.images(step, "val", [c.image for c in best])
    logger.info("step %d validation: %s", step, ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    return values

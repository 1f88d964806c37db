"""Stage 1, PMTP (parallel multi-task pre-training): L2I and grounding on the same samples each step.

    python -m train.pmtp --config train/configs/smoke/pmtp.yaml
    accelerate launch --config_file train/configs/accelerate/single_gpu.yaml -m train.pmtp \\
        --config train/configs/janus_pro_1b/pmtp.yaml

Every micro-batch holds B records (image + layout). For each record:
- L2I: the layout serialization `<grounding><ref>p</ref><box>[x1, y1, x2, y2]</box>...</grounding>`
  after the caption is the condition; loss = CE of the image's cached VQ tokens (caption dropout
  swaps in the unconditional prompt for a share of rows);
- grounding: each of up to `data.max_phrases` objects/expressions is asked for with the image;
  loss = CE of `[x1, y1, x2, y2]</box>` after the forced `<ref>phrase</ref><box>`.

"Shared tokens": the `<ref>phrase</ref><box>[x1, y1, x2, y2]</box>` span of one object is the
same token sequence in both tasks: read inside the L2I condition, written as the grounding
answer. Training both on the same samples ties the box tokens to the same image regions in
both directions. Loss = `l2i_weight * L2I + grounding_weight * grounding`. With
`pmtp.grounding_share` < 1 only that share of a batch's records is grounded (a step then costs
less; for a model whose grounding is ahead of its drawing). With `pmtp.absent_share` > 0 a
grounded record is also asked for a phrase it lacks (Shapes World: one word off an object that
is there), answered `none</box>`: the model learns to say when a phrase names nothing
(`model.presence` reads it as `Grounding.present`). Not in the paper.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from model.loading import unwrap_peft
from train import loop
from train.config import ConfigError, DataConfig, LoraSettings, ModelConfig, TrainConfig, option, run_cli
from train.losses import BoxNumberTargets, scrambler, supervised_losses
from train.shapes.absent import absent_phrase
from train.supervised import SupervisedData

logger = logging.getLogger(__name__)


@dataclass
class PMTPConfig:
    l2i_weight: float = option("weight of the L2I image-token loss", default=1.0)
    grounding_weight: float = option("weight of the grounding answer loss", default=1.0)
    grounding_share: float = option("share of each batch's records also asked for their objects (at least one "
                                    "record); below 1 a step spends more of its compute on L2I", default=1.0)
    caption_dropout: float = option("share of L2I rows trained on the unconditional prompt (for CFG)",
                                   default=0.1)
    box_sigma: float = option("soft targets for whole-number box tokens: Gaussian std in 0-1000 units; 0 = plain "
                              "CE (the paper). Needs a tokenizer with number tokens, like the built-in model's",
                              default=0.0)
    number_noise: float = option("share of the box numbers fed back in grounding answers swapped for random ones "
                                 "(labels stay), so every coordinate is found from the phrase; 0 = clean teacher "
                                 "forcing (the paper). Needs whole-number tokens", default=0.0)
    absent_share: float = option("share of grounded records also asked for a Shapes World phrase they lack "
                                 "(answer `none`); 0 = every phrase is there (the paper)", default=0.0)

    def __post_init__(self):
        if not 0.0 <= self.absent_share <= 1.0:
            raise ConfigError(f"pmtp.absent_share must be in [0, 1], got {self.absent_share}")
        if self.l2i_weight < 0 or self.grounding_weight < 0 or self.l2i_weight + self.grounding_weight == 0:
            raise ConfigError("pmtp loss weights must be >= 0 and not both 0")
        if not 0.0 < self.grounding_share <= 1.0:
            raise ConfigError(f"pmtp.grounding_share must be in (0, 1], got {self.grounding_share}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ConfigError(f"pmtp.caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if not 0.0 <= self.number_noise <= 1.0:
            raise ConfigError(f"pmtp.number_noise must be in [0, 1], got {self.number_noise}")
        if self.box_sigma < 0:
            raise ConfigError(f"pmtp.box_sigma must be >= 0, got {self.box_sigma}")


@dataclass
class PMTPRun:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/pmtp"))
    pmtp: PMTPConfig = field(default_factory=PMTPConfig)


def build(run: loop.Run):
    """(make_batch, loss_fn, validate) of stage 1 for `run`."""
    weights = run.cfg.pmtp
    data = SupervisedData(run, weights.caption_dropout,
                          scrambler(run.processor.tokenizer, weights.number_noise, "pmtp.number_noise"),
                          weights.grounding_share, absent_phrase if weights.absent_share > 0 else None,
                          weights.absent_share)
    numbers = BoxNumberTargets.from_config(run.processor.tokenizer, weights.box_sigma, "pmtp.box_sigma")

    def loss_fn(model, batch):
        loss, stats, _ = supervised_losses(unwrap_peft(model), batch, weights.l2i_weight, weights.grounding_weight,
                                           numbers, need_logits=False)
        return loss, stats

    return data.batch, loss_fn, data.validate


def main(cfg: PMTPRun) -> dict[str, float]:
    run = loop.setup(cfg)
    make_batch, loss_fn, validate_fn = build(run)
    return loop.train(run, make_batch, loss_fn, validate_fn)


if __name__ == "__main__":
    run_cli(main, PMTPRun, sys.argv[1:])

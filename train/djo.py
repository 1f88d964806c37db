"""Stage 2, DJO (dual joint optimization): grounding loss on generated images, back into the generator.

    python -m train.djo --config train/configs/smoke/djo.yaml

Per record with its layout prompt (caption-dropped rows are skipped):

    L2I logits [B, T, V] -> Gumbel-Softmax (hard, straight-through) at temperature tau
    -> soft codebook mix [B, T, C] -> frozen VQ decoder -> pixels [B, 3, H, W]
    -> SigLIP + aligner [B, P, D] -> grounding CE of the record's original boxes

so the grounding error of the generated image reaches the L2I logits and the generator's
weights. tau = max(tau_min, tau0 * exp(-tau_decay * step)). The stage-1 losses (L2I and
grounding on the real image) are added with their weights:
loss = djo_weight * DJO + l2i_weight * L2I + grounding_weight * grounding.

Rollouts (`djo.rollout`):
- `teacher_forced` (default): the Gumbel sample is drawn from the logits of the same parallel
  pass over the ground-truth image tokens that gives the L2I loss. No sequential decoding, so
  it costs about one extra VQ decode + SigLIP pass, ~T times cheaper than an AR rollout. Each
  position is conditioned on the ground-truth prefix, not on its own samples (an approximation
  that stays close while the L2I loss is low).
- `autoregressive`: tokens are sampled with model/'s decode loop (no grad), then one parallel
  pass over the sampled tokens gives their logits; the straight-through one-hot of the sampled
  tokens carries softmax(logits / tau)'s gradient. The image is the model's own, the gradient
  does not flow through the sampled prefix.
`djo.cfg` > 1 draws from CFG-guided logits (one more pass with unconditional rows).
`djo.frozen_grounder` keeps the DJO term off the grounding pass's own weights (only the
generator learns from it; `train.losses.through_frozen`); the real-image grounding loss still
trains grounding. `djo.absent_share` (as in stage 1) also asks each grounded record for a
phrase one word off an object that is there, answered `none`: on the real image it keeps the
model's presence calibrated, and on the generated one the grounder's `none` tells the generator
to draw the object so that it does not pass for its one-word-off neighbor (a shape-aware
signal that the box answers alone do not give). Not in the paper.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import torch

from model import generation, inputs
from model.loading import unwrap_peft
from model.results import SamplingConfig
from train import loop
from train.config import ConfigError, DataConfig, LoraSettings, ModelConfig, TrainConfig, option, run_cli
from train.data import micro_seed
from train.losses import (
    BoxNumberTargets, GroundingInputs, SupervisedBatch, annealed_tau, grounding_loss, gumbel_softmax, straight_through,
    scrambler, supervised_losses, through_frozen, to_siglip,
)
from train.shapes.absent import absent_phrase
from train.supervised import SupervisedData

logger = logging.getLogger(__name__)
ROLLOUTS = ("teacher_forced", "autoregressive")


@dataclass
class DJOConfig:
    djo_weight: float = option("weight of the grounding loss on generated images", default=1.0)
    l2i_weight: float = option("weight of the stage-1 L2I loss", default=1.0)
    grounding_weight: float = option("weight of the stage-1 grounding loss on real images", default=1.0)
    caption_dropout: float = option("share of L2I rows on the unconditional prompt (no DJO term)", default=0.1)
    rollout: str = option(f"how the generated image is drawn: one of {ROLLOUTS}", default="teacher_forced")
    tau0: float = option("initial Gumbel-Softmax temperature", default=1.0)
    tau_min: float = option("lowest temperature", default=0.1)
    tau_decay: float = option("r in tau = max(tau_min, tau0 * exp(-r * step))", default=1e-3)
    hard: bool = option("one-hot samples with straight-through gradients (else soft samples)", default=True)
    cfg: float = option("guidance of the logits images are drawn from (1 = conditional only)", default=1.0)
    box_sigma: float = option("soft targets for whole-number box tokens in both grounding losses "
                              "(as pmtp.box_sigma); 0 = plain CE", default=0.0)
    number_noise: float = option("noisy teacher forcing of both grounding losses (as pmtp.number_noise); 0 = "
                                 "clean", default=0.0)
    frozen_grounder: bool = option("the DJO term trains only the generator: the grounding pass on generated "
                                   "images gives no gradient to its own weights (not in the paper)", default=False)
    absent_share: float = option("as pmtp.absent_share: share of grounded records also asked for a Shapes World "
                                 "phrase they lack (answer `none`), of the real image and of the generated one; "
                                 "0 = every phrase is there (the paper)", default=0.0)

    def __post_init__(self):
        if self.rollout not in ROLLOUTS:
            raise ConfigError(f"djo.rollout must be one of {ROLLOUTS}, got {self.rollout!r}")
        if min(self.djo_weight, self.l2i_weight, self.grounding_weight) < 0 or self.djo_weight == 0:
            raise ConfigError("djo weights must be >= 0 and djo_weight > 0")
        if not 0 < self.tau_min <= self.tau0 or self.tau_decay < 0:
            raise ConfigError("need 0 < djo.tau_min <= djo.tau0 and djo.tau_decay >= 0")
        if self.cfg < 1 or not 0.0 <= self.caption_dropout < 1.0:
            raise ConfigError("need djo.cfg >= 1 and djo.caption_dropout in [0, 1)")
        if self.box_sigma < 0:
            raise ConfigError(f"djo.box_sigma must be >= 0, got {self.box_sigma}")
        if not 0.0 <= self.number_noise <= 1.0:
            raise ConfigError(f"djo.number_noise must be in [0, 1], got {self.number_noise}")
        if not 0.0 <= self.absent_share <= 1.0:
            raise ConfigError(f"djo.absent_share must be in [0, 1], got {self.absent_share}")
        if self.rollout == "autoregressive" and not self.hard:
            raise ConfigError("the autoregressive rollout samples hard tokens: set djo.hard true")


@dataclass
class DJORun:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/djo"))
    djo: DJOConfig = field(default_factory=DJOConfig)


@dataclass
class DJOBatch:
    sup: SupervisedBatch
    rows: torch.Tensor  # [b] rows of `sup` that get the DJO term (conditional prompts)
    prompt: inputs.PromptBatch  # [b or 2b, L] their prompts ([cond; uncond] when cfg > 1)
    grounding: GroundingInputs | None  # their queries, image_index into the b generated images
    sampled: torch.Tensor | None  # [b, T] AR rollout tokens, None when teacher-forced
    tau: float
    seed: int  # Gumbel noise


def _select_queries(g: GroundingInputs, rows: torch.Tensor, batch_size: int) -> GroundingInputs | None:
    """The queries of images `rows`, re-indexed to positions in `rows` (None when there are none)."""
    remap = torch.full((batch_size,), -1, dtype=torch.long, device=rows.device)
    remap[rows] = torch.arange(len(rows), device=rows.device)
    keep = remap[g.image_index] >= 0
    if not bool(keep.any()):
        return None
    return GroundingInputs(g.input_ids[keep], g.attention_mask[keep], g.labels[keep], remap[g.image_index[keep]],
                           g.image_token_id, None if g.position_ids is None else g.position_ids[keep])


def make_djo_batch(run: loop.Run, data: SupervisedData, step: int, micro: int) -> DJOBatch:
    cfg, tc = run.cfg.djo, run.cfg.train
    sup = data.batch(step, micro)
    rows = sup.conditional.nonzero().squeeze(1)
    prompt = inputs.PromptBatch(sup.l2i.input_ids[rows], sup.l2i.attention_mask[rows])
    if cfg.cfg > 1:
        prompt = inputs.cfg_batch(prompt, run.special)
    sampled = None
    if cfg.rollout == "autoregressive" and len(rows):
        gens = [torch.Generator(device="cpu").manual_seed(micro_seed(tc.seed, step, micro, run.rank, 2 + int(r)))
                for r in rows]
        with torch.no_grad(), run.accelerator.autocast():
            request = generation.DecodeRequest(
                inputs_embeds=inputs.embed_prompts(run.janus, prompt.input_ids), attention_mask=prompt.attention_mask,
                num_tokens=sup.image_tokens.shape[1], head=generation.image_head(run.janus),
                embed=generation.image_embed(run.janus), cfg=cfg.cfg)
            sampled = generation.decode(run.janus, request, SamplingConfig(cfg=cfg.cfg, temperature=1.0), gens)
    return DJOBatch(sup, rows, prompt, _select_queries(sup.grounding, rows, len(sup.conditional)), sampled,
                    annealed_tau(step, cfg.tau0, cfg.tau_min, cfg.tau_decay), micro_seed(tc.seed, step, micro, run.rank, 1))


def djo_term(janus, batch: DJOBatch, cfg: DJOConfig, l2i_logits: torch.Tensor, image_processor,
             numbers: BoxNumberTargets | None = None) -> torch.Tensor:
    """Grounding CE of the original boxes on images generated from the L2I logits (differentiable)."""
    if batch.grounding is None:
        return l2i_logits.new_zeros(())
    if batch.sampled is not None:  # autoregressive: logits of the model's own tokens
        logits = generation.image_logits(janus, inputs.embed_prompts(janus, batch.prompt.input_ids),
                                         batch.prompt.attention_mask, batch.sampled, cfg=cfg.cfg)
        probs = straight_through(logits, batch.sampled, batch.tau)
    else:
        if cfg.cfg > 1:
            tokens = batch.sup.image_tokens[batch.rows]
            logits = generation.image_logits(janus, inputs.embed_prompts(janus, batch.prompt.input_ids),
                                             batch.prompt.attention_mask, tokens, cfg=cfg.cfg)
        else:
            logits = l2i_logits[batch.rows]  # [b, T, V], the L2I loss pass
        noise = torch.Generator(device=logits.device).manual_seed(batch.seed)
        probs = gumbel_softmax(logits, batch.tau, cfg.hard, noise)  # [b, T, V]
    pixels = generation.decode_soft_image(janus, probs)  # [b, 3, H, W] in [-1, 1]
    size = janus.config.vision_config.image_size

    def ground(pixels):
        features = inputs.image_features(janus, to_siglip(pixels, image_processor, size))  # [b, P, D]
        return grounding_loss(janus, batch.grounding, features, numbers)

    return through_frozen(ground, pixels) if cfg.frozen_grounder else ground(pixels)


def djo_losses(model, batch: DJOBatch, cfg: DJOConfig, image_processor, numbers: BoxNumberTargets | None = None):
    janus = unwrap_peft(model)
    loss, stats, logits = supervised_losses(janus, batch.sup, cfg.l2i_weight, cfg.grounding_weight, numbers)
    djo = djo_term(janus, batch, cfg, logits, image_processor, numbers)
    stats.update(djo_loss=djo.detach(), tau=torch.tensor(batch.tau))
    return loss + cfg.djo_weight * djo, stats


def build(run: loop.Run):
    """(make_batch, loss_fn, validate) of stage 2 for `run`."""
    cfg = run.cfg.djo
    if cfg.frozen_grounder and run.accelerator.mixed_precision == "fp16":
        # through_frozen takes its inner gradient outside the loss scaler: under fp16 it can underflow.
        raise ConfigError("djo.frozen_grounder needs train.mixed_precision bf16 or no, not fp16")
    scramble = scrambler(run.processor.tokenizer, cfg.number_noise, "djo.number_noise")
    data = SupervisedData(run, cfg.caption_dropout, scramble, absent=absent_phrase if cfg.absent_share > 0 else None,
                          absent_share=cfg.absent_share)
    numbers = BoxNumberTargets.from_config(run.processor.tokenizer, cfg.box_sigma, "djo.box_sigma")

    def make_batch(step, micro):
        return make_djo_batch(run, data, step, micro)

    def loss_fn(model, batch):
        return djo_losses(model, batch, cfg, run.processor.image_processor, numbers)

    return make_batch, loss_fn, data.validate


def main(cfg: DJORun) -> dict[str, float]:
    run = loop.setup(cfg)
    make_batch, loss_fn, validate_fn = build(run)
    return loop.train(run, make_batch, loss_fn, validate_fn)


if __name__ == "__main__":
    run_cli(main, DJORun, sys.argv[1:])

"""Stage 3, Cycle RL: GRPO with the model grounding its own images as the reward.

    python -m train.cycle_rl --config train/configs/smoke/cycle_rl.yaml

Per layout, G images (`rl.group_size`, default 8) are sampled with model/'s decode loop (CFG and
temperature as configured, else the starting model's own defaults, `EchoGen.sampling`; one
seeded generator per image); the same model grounds
every object in every image; reward per image = mean over objects of
`w_iou * IoU + w_l1 * (1 - L1)` plus `w_valid` * share of well-formed answers
(`train.rewards`). Advantages are normalized within each layout's group. The loss per image
token is the clipped-ratio surrogate plus `kl_beta` * KL(policy || reference) (k3 estimator),
averaged over tokens, then images.

Log-probs: tokens are sampled from CFG-guided logits `u + cfg * (c - u)` divided by the
temperature, and the loss scores them under exactly that distribution: CFG *is* in the loss
(both rows go through the model, both get gradients). Rollouts use no top-k/top-p: a truncated
set moves as the policy changes, and a sampled token outside the reference's (or the updated
policy's) set would have log-prob -inf, leaving the ratio and the KL undefined. The reference is the
same computation with the LoRA adapter disabled (or, with --full, a frozen copy of the starting
weights); it equals the policy before the first update, so KL starts at exactly 0.

Departures from the paper's GRPO:
- One policy update per rollout by default (`rl.num_iterations` = 1): the ratio is 1 in value and
  only its gradient matters (as in TRL's default); with num_iterations > 1, a rollout's old
  log-probs are taken before its first update and it is reused for that many updates.
- The understanding side (SigLIP, aligner, LM head) is frozen in this stage: it only scores
  images. With LoRA, the shared language-model layers still change for both tasks.
- Layouts may come from the data, a layout file, or the Shapes World samplers (`rl.layouts`:
  the paper's finding that random boxes work as well as real layouts).
- The reward uses the model's own grounding as-is (no separate detector or reward model).
  `rl.reward: detector` swaps in the evaluation's detector instead (Shapes World only): a
  diagnostic of how far GRPO can move the drawing with a reward aligned with the evaluation,
  not the method.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from model import generation, inputs
from model.echogen import EchoGen, to_pil
from model.loading import unwrap_peft
from model.prompts import l2i_prompt
from model.results import SamplingConfig
from train import loop
from train.config import ConfigError, DataConfig, LoraSettings, ModelConfig, TrainConfig, option, run_cli
from train.data import ensure_data, layout_source, micro_seed, read_records
from train.grpo import group_advantages, grpo_loss
from train.lora import freeze_understanding
from train.rewards import REWARDS, cycle_rewards, detector_rewards
from train.shapes.world import parse_phrase
from train.validation import validate

logger = logging.getLogger(__name__)


@dataclass
class CycleRLConfig:
    group_size: int = option("images sampled per layout (G)", default=8)
    layouts: str = option("layout source: data (training records), random or scene (Shapes World "
                          "samplers), or a .json/.jsonl layout file", default="data")
    reward: str = option("cycle: the model grounds its own images (the method); detector: Shapes World "
                         "only, the evaluation's detector scores them (a diagnostic, not the method)", default="cycle")
    w_iou: float = option("reward weight of IoU", default=1.0)
    w_l1: float = option("reward weight of 1 - normalized L1", default=1.0)
    w_valid: float = option("reward weight of the share of well-formed grounding answers", default=0.0)
    clip_eps: float = option("PPO clip range of the ratio", default=0.2)
    kl_beta: float = option("weight of KL(policy || reference)", default=0.04)
    scale_rewards: bool = option("divide advantages by the group's reward std (false: Dr. GRPO)", default=True)
    num_iterations: int = option("policy updates per rollout (mu)", default=1)
    cfg: float | None = option("classifier-free guidance of the rollouts (and of the log-probs); null = the "
                               "starting model's own default (EchoGen.sampling)", default=None)
    temperature: float | None = option("sampling temperature of the rollouts (and of the log-probs); null = the "
                                       "starting model's own default (EchoGen.sampling)", default=None)

    def __post_init__(self):
        if self.group_size < 2:
            raise ConfigError(f"rl.group_size must be >= 2 (advantages are relative), got {self.group_size}")
        if self.reward not in REWARDS:
            raise ConfigError(f"rl.reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")
        if self.num_iterations < 1 or self.clip_eps <= 0 or self.kl_beta < 0:
            raise ConfigError("need rl.num_iterations >= 1, rl.clip_eps > 0, rl.kl_beta >= 0")
        self.sampling(SamplingConfig())  # checks the values given

    def sampling(self, model_defaults: SamplingConfig) -> SamplingConfig:
        """The rollouts' CFG and temperature: those set here, else the model's defaults (never top-k/p)."""
        try:
            sampling = SamplingConfig(cfg=model_defaults.cfg, temperature=model_defaults.temperature).with_overrides(
                cfg=self.cfg, temperature=self.temperature)
        except ValueError as err:
            raise ConfigError(f"rl: {err}") from None
        if sampling.temperature <= 0:
            raise ConfigError("rl.temperature must be > 0: greedy rollouts have no log-probs to train")
        return sampling


@dataclass
class CycleRLRun:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/cycle_rl"))
    rl: CycleRLConfig = field(default_factory=CycleRLConfig)

    def __post_init__(self):
        if self.lora.dropout > 0:
            raise ConfigError("lora.dropout must be 0 in stage 3: the loss must score tokens under the policy "
                              "that sampled them (and KL must start at 0)")
        mu = self.rl.num_iterations
        if mu > 1 and (self.train.max_steps % mu or self.train.save_every % mu):
            raise ConfigError("with rl.num_iterations > 1, train.max_steps and train.save_every must be "
                              "multiples of it (a resumed run starts at a fresh rollout)")


@dataclass
class Rollout:
    prompt: inputs.PromptBatch  # [R or 2R, L]: rows [cond; uncond] when cfg > 1, R = layouts * G
    tokens: torch.Tensor  # [R, T] sampled image tokens
    advantages: torch.Tensor  # [R]
    ref_logp: torch.Tensor  # [R, T]
    old_logp: torch.Tensor | None  # [R, T] before the first update (num_iterations > 1)
    stats: dict[str, torch.Tensor]


def sampled_logprobs(janus, prompt: inputs.PromptBatch, tokens: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """Log-probs [R, T] of tokens under the distribution they were sampled from (CFG, temperature)."""
    embeds = inputs.embed_prompts(janus, prompt.input_ids)  # [R or 2R, L, D]
    logits = generation.image_logits(janus, embeds, prompt.attention_mask, tokens, cfg=sampling.cfg)  # [R, T, V]
    return generation.image_logprobs(logits, tokens, sampling.temperature)


def reference_model(run: loop.Run):
    """Context giving the reference Janus: a frozen copy (--full) or the model with the adapter off."""
    if run.reference is not None:
        return contextlib.nullcontext(run.reference)
    if not hasattr(run.model, "disable_adapter"):
        raise RuntimeError("no reference: LoRA runs disable the adapter, --full runs keep a frozen copy")

    @contextlib.contextmanager
    def disabled():
        with run.model.disable_adapter():
            yield run.janus

    return disabled()


class Rollouts:
    """Samples, grounds and scores groups; a rollout is reused for `num_iterations` steps."""

    def __init__(self, run: loop.Run):
        cfg = run.cfg
        self.run, self.rl = run, cfg.rl
        # rewards ground greedily (cheaper); rollouts come from the float32 policy whose log-probs are trained
        self.eg = EchoGen(run.janus, run.processor, grounding_beams=1, half_weights=False)
        self.sampling = cfg.rl.sampling(self.eg.sampling)  # fixed at the start: the policy's own defaults
        logger.info("rollouts at CFG %g, temperature %g", self.sampling.cfg, self.sampling.temperature)
        records = None
        if cfg.rl.layouts == "data" or cfg.data.data_dir:
            with run.accelerator.main_process_first():
                data_dir = ensure_data(cfg.data.data_dir, cfg.data.synth_if_missing, cfg.data.synth_size)
            records = read_records(data_dir, cfg.data.train_split, cfg.data.max_records, use_expressions=False)
            val = read_records(data_dir, cfg.data.val_split, cfg.data.num_val_layouts) if cfg.data.num_val_layouts else []
            self.val_layouts = [r.layout for r in val]
        self.source = layout_source(cfg.rl.layouts, records, cfg.data.synth_size)
        if records is None:
            rng = np.random.default_rng([cfg.train.seed, 7])  # fixed held-out draws of the sampler
            self.val_layouts = [self.source(rng) for _ in range(cfg.data.num_val_layouts)]
        if cfg.rl.reward == "detector":  # fail now, not at the first rollout
            try:
                [parse_phrase(p) for p in self.source(np.random.default_rng(0)).phrases]
            except ValueError as err:
                raise ConfigError(f"rl.reward detector needs Shapes World layouts: {err}") from None
        self.cache: dict[tuple[int, int], Rollout] = {}

    def batch(self, step: int, micro: int) -> Rollout:
        first = step - step % self.rl.num_iterations  # the step whose policy sampled this rollout
        if (first, micro) not in self.cache:
            self.cache = {k: v for k, v in self.cache.items() if k[0] == first}
            self.cache[(first, micro)] = self.sample(first, micro)
        return self.cache[(first, micro)]

    @torch.no_grad()
    def sample(self, step: int, micro: int) -> Rollout:
        run, rl, tc, eg = self.run, self.rl, self.run.cfg.train, self.eg
        rng = np.random.default_rng(micro_seed(tc.seed, step, micro, run.rank))
        size = eg.image_size
        layouts = [self.source(rng) for _ in range(tc.batch_size)]
        layouts = [layout.resized(size, size) for layout in layouts]  # square Janus frame
        rows = [layout for layout in layouts for _ in range(rl.group_size)]  # [R], G per layout
        prompts = [l2i_prompt(layout, run.processor.tokenizer.boi_token) for layout in rows]
        gens = [torch.Generator().manual_seed(micro_seed(tc.seed, step, micro, run.rank, 1 + k))
                for k in range(len(rows))]
        run.janus.eval()
        with run.accelerator.autocast():
            tokens = eg.generate_tokens(prompts, self.sampling, gens)  # [R, T]
            images = to_pil(generation.decode_image_tokens(run.janus, tokens))
            rewards, valid = self.score(images, rows)  # [R], [R]
            prompt = inputs.encode_prompts(run.processor.tokenizer, prompts, run.device)
            if self.sampling.cfg > 1:
                prompt = inputs.cfg_batch(prompt, run.special)
            with reference_model(run) as reference:
                ref_logp = sampled_logprobs(reference, prompt, tokens, self.sampling)
            old_logp = sampled_logprobs(run.janus, prompt, tokens, self.sampling) if rl.num_iterations > 1 else None
        run.janus.train()
        run.janus.model.vqmodel.eval()
        stats = {"reward": rewards.mean(), "reward_std": rewards.view(-1, rl.group_size).std(1).mean()}
        if valid is not None:
            stats["valid"] = valid.mean()
        advantages = group_advantages(rewards, rl.group_size, rl.scale_rewards).to(run.device)
        return Rollout(prompt, tokens, advantages, ref_logp, old_logp, stats)

    def score(self, images, rows) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(rewards [R], share of well-formed grounding answers [R] or None) of images[r] drawn from rows[r]."""
        rl = self.rl
        if rl.reward == "detector":
            return torch.tensor(detector_rewards(images, [r.phrases for r in rows], [r.boxes for r in rows])), None
        found = self.eg.ground(images, [layout.phrases for layout in rows])
        size = self.eg.image_size
        rewards = cycle_rewards([layout.boxes for layout in rows], [[g.box for g in f] for f in found],
                                [[g.valid for g in f] for f in found], [(size, size)] * len(rows),
                                w_iou=rl.w_iou, w_l1=rl.w_l1, w_valid=rl.w_valid)
        valid = [float(np.mean([g.valid for g in f])) for f in found]
        return torch.tensor(rewards), torch.tensor(valid)

    def validate(self, step: int) -> None:
        validate(self.run.janus, self.run.processor, self.val_layouts, step, self.run.metrics, self.sampling)


def rl_loss(model, batch: Rollout, rl: CycleRLConfig, sampling: SamplingConfig):
    logp = sampled_logprobs(unwrap_peft(model), batch.prompt, batch.tokens, sampling)  # [R, T]
    old = batch.old_logp if batch.old_logp is not None else logp.detach()
    loss, stats = grpo_loss(logp, old, batch.advantages, batch.ref_logp, rl.clip_eps, rl.kl_beta)
    return loss, {**stats, **batch.stats}


def build(run: loop.Run):
    """(make_batch, loss_fn, validate) of stage 3 for `run`."""
    freeze_understanding(run.model)
    rollouts = Rollouts(run)
    rl = run.cfg.rl

    def loss_fn(model, batch):
        return rl_loss(model, batch, rl, rollouts.sampling)

    return rollouts.batch, loss_fn, rollouts.validate


def main(cfg: CycleRLRun) -> dict[str, float]:
    run = loop.setup(cfg, need_reference=True)
    make_batch, loss_fn, validate_fn = build(run)
    return loop.train(run, make_batch, loss_fn, validate_fn)


if __name__ == "__main__":
    run_cli(main, CycleRLRun, sys.argv[1:])

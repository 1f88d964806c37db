"""The training loop the three stages share: accelerate, AdamW, checkpoints, resume, logs, validation.

A stage supplies two functions:
- `make_batch(step, micro) -> batch`: the micro-batch of this process, a pure function of
  (seed, step, micro, rank) and the current weights (stage 3 samples its rollouts here);
- `loss_fn(model, batch) -> (loss, {name: scalar tensor})`, run inside `Objective.forward`.

`Objective` wraps the model so that DDP sees one forward per micro-batch (gradients are only
all-reduced for work done inside the wrapped module's forward), and accelerate's autocast
covers the loss. Gradient accumulation is accelerate's `accumulate`; the scheduler steps once
per optimizer update (it is not handed to `prepare`, which would step it once per process).

Resume restores weights (adapter or full), optimizer, scheduler and every process's RNG state
through `accelerator.load_state`; the data order and all sampling are seeded by step, so a
resumed run logs the same losses as an uninterrupted one.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from tqdm import tqdm

from model.loading import unwrap_peft
from model.tokens import SpecialTokens
from train.checkpointing import read_step, register_hooks, resolve_resume, save_checkpoint, save_final
from train.config import save_config, to_dict
from train.logging_utils import MetricLogger, setup_logging
from train.lora import ensure_tiny_model, frozen_copy, load_base, make_trainable, trainable_parameters

logger = logging.getLogger(__name__)

LossFn = Callable[[Any, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]
BatchFn = Callable[[int, int], Any]


class Objective(torch.nn.Module):
    """forward(batch) = loss_fn(model, batch): the one module accelerate prepares."""

    def __init__(self, model, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


@dataclass
class Run:
    cfg: Any
    accelerator: Any
    model: Any  # what trains: a PeftModel, or the Janus model itself with --full
    processor: Any
    reference: Any = None  # frozen copy (stage 3 with --full); None = LoRA with the adapter disabled
    metrics: MetricLogger | None = None
    step_times: list[float] = field(default_factory=list)

    @property
    def janus(self):
        """The JanusForConditionalGeneration (LoRA layers in place), for model/'s functions."""
        return unwrap_peft(self.model)

    @functools.cached_property
    def special(self) -> SpecialTokens:
        return SpecialTokens.from_tokenizer(self.processor.tokenizer)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes


def resolve_mixed_precision(setting: str | None, cuda_bf16: bool | None, cpu_capabilities: dict) -> str | None:
    """`train.mixed_precision` as accelerate takes it. "auto" is bf16 where bf16 matmuls are native
    (cuda_bf16: the GPU's support, None when training on the CPU; on the CPU, AMX-BF16 tiles,
    which run the built-in model's stage 1 about twice as fast as float32), else "no"."""
    if setting != "auto":
        return setting
    if cuda_bf16 is not None:
        return "bf16" if cuda_bf16 else "no"
    return "bf16" if cpu_capabilities.get("amx_bf16") else "no"


def _mixed_precision(setting: str | None) -> str | None:
    on_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    cuda_bf16 = None if on_cpu else torch.cuda.is_bf16_supported()
    return resolve_mixed_precision(setting, cuda_bf16, torch.cpu.get_capabilities() if on_cpu else {})


def setup(cfg, need_reference: bool = False, build_model: Callable[[torch.device], tuple] | None = None) -> Run:
    """Accelerator, seeded model (LoRA or full) and processor; nothing is prepared yet.

    build_model(device) -> (model, processor) replaces loading `cfg.model.path` (the benchmark's
    random Janus-Pro-sized models)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.train.grad_accum, mixed_precision=_mixed_precision(cfg.train.mixed_precision),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )
    setup_logging(accelerator.is_main_process)
    logger.info("config:\n%s", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    logger.info("%d process(es), device %s, mixed precision %s", accelerator.num_processes,
                accelerator.device, accelerator.mixed_precision)
    set_seed(cfg.train.seed)  # the same LoRA init on every process and every (re)start
    if build_model is not None:
        model, processor = build_model(accelerator.device)
    else:
        with accelerator.main_process_first():
            ensure_tiny_model(cfg.model)
        model, processor = load_base(cfg.model, accelerator.device)
    reference = frozen_copy(model) if need_reference and cfg.model.full else None
    model = make_trainable(model, cfg.model, cfg.lora, processor.tokenizer)
    return Run(cfg, accelerator, model, processor, reference)


def set_train_mode(run: Run, objective) -> None:
    objective.train()
    run.janus.model.vqmodel.eval()  # frozen tokenizer, always in eval mode


def _reduce(accelerator, values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of each scalar over processes (one all-reduce)."""
    names = sorted(values)
    stacked = torch.stack([values[n].detach().float().to(accelerator.device) for n in names])
    stacked = accelerator.reduce(stacked, reduction="mean")
    return dict(zip(names, stacked.tolist()))


def train(run: Run, make_batch: BatchFn, loss_fn: LossFn, validate: Callable[[int], None] | None = None,
          save: bool = True) -> dict[str, float]:
    """Run optimizer steps from the resumed step (or 0) to train.max_steps; returns the last logged values."""
    from transformers import get_scheduler

    cfg, accelerator = run.cfg, run.accelerator
    tc = cfg.train
    params = trainable_parameters(run.model)
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = get_scheduler(tc.lr_scheduler, optimizer, num_warmup_steps=tc.warmup_steps,
                              num_training_steps=tc.max_steps)
    objective, optimizer = accelerator.prepare(Objective(run.model, loss_fn), optimizer)
    accelerator.register_for_checkpointing(scheduler)
    register_hooks(accelerator, run.processor)

    start = 0
    checkpoint = resolve_resume(tc.output_dir, tc.resume)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        start = read_step(checkpoint)
        logger.info("resumed from %s at step %d", checkpoint, start)
    run.metrics = MetricLogger(tc.output_dir, enabled=accelerator.is_main_process)
    if accelerator.is_main_process:
        Path(tc.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(tc.output_dir) / "config.yaml")

    last: dict[str, float] = {}
    bar = tqdm(total=tc.max_steps, initial=start, desc="train", dynamic_ncols=True,
               disable=not (tc.progress and accelerator.is_main_process))
    for step in range(start, tc.max_steps):
        began = time.perf_counter()
        set_train_mode(run, objective)
        sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=accelerator.device))
        for micro in range(tc.grad_accum):
            batch = make_batch(step, micro)
            with accelerator.accumulate(objective):
                loss, stats = objective(batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and tc.max_grad_norm > 0:
                    sums["grad_norm"] += accelerator.clip_grad_norm_(params, tc.max_grad_norm).detach().float()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for name, value in {"loss": loss, **stats}.items():
                sums[name] += value.detach().float() / tc.grad_accum
        scheduler.step()
        done = step + 1
        run.step_times.append(time.perf_counter() - began)
        bar.update(1)
        if tc.log_every and (done % tc.log_every == 0 or done == tc.max_steps):
            last = _reduce(accelerator, sums)
            last["lr"] = scheduler.get_last_lr()[0]
            run.metrics.scalars(done, {f"train/{k}": v for k, v in last.items()})
            bar.set_postfix(loss=f"{last['loss']:.4f}")
        if validate is not None and tc.val_every and done % tc.val_every == 0:
            if accelerator.is_main_process:
                validate(done)
            accelerator.wait_for_everyone()
        if save and ((tc.save_every and done % tc.save_every == 0) or done == tc.max_steps):
            save_checkpoint(accelerator, cfg, done, tc.save_total_limit)
    bar.close()
    if save:
        out = save_final(accelerator, run.model, run.processor, cfg)
        logger.info("saved the trained weights to %s", out)
    run.metrics.close()
    accelerator.end_training()
    return last

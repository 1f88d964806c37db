"""Checkpoints: `checkpoint-{step}/` dirs through accelerate's save/load state, with a total limit.

    <output_dir>/checkpoint-{step}/
        adapter/            LoRA runs: adapter_config.json + adapter_model.safetensors (peft)
        model/              --full runs: the whole model + processor (HF format, safetensors)
        optimizer.bin, custom_checkpoint_0.pkl (scheduler), random_states_{rank}.pkl (accelerate)
        trainer_state.json  {"step": N}
        config.yaml         the resolved run config
    <output_dir>/final/     adapter/ or model/ and config.yaml, written when a run ends

accelerate would save the full model state dict; its save/load hooks here write only the
adapter (or the HF model for --full) and read it back, so `adapter/` loads through
`model.loading.load_janus(base, adapter=.../adapter)` and `model/` through `load_janus(.../model)`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from train.config import save_config

logger = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
ADAPTER_DIR, MODEL_DIR, STATE_FILE = "adapter", "model", "trainer_state.json"


def _inner(module):
    """The trained model (PeftModel or Janus) inside DDP and the stage's loss wrapper."""
    module = getattr(module, "module", module)  # DDP
    return getattr(module, "model", module)  # train.loop.Objective


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def save_weights(model, processor, out_dir: str | Path) -> Path:
    """Adapter (LoRA) or full HF checkpoint with processor (--full) under out_dir; returns that dir."""
    out_dir = Path(out_dir)
    if is_peft(model):
        target = out_dir / ADAPTER_DIR
        model.save_pretrained(target, safe_serialization=True)
    else:
        target = out_dir / MODEL_DIR
        model.save_pretrained(target, safe_serialization=True)
        processor.save_pretrained(target)
    return target


def _load_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(file))
    return state


def load_weights(model, in_dir: str | Path) -> None:
    """Restore what `save_weights` wrote, in place (the model must have the same structure)."""
    in_dir = Path(in_dir)
    if is_peft(model):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(in_dir / ADAPTER_DIR / "adapter_model.safetensors"))
        if result.unexpected_keys:
            raise RuntimeError(f"adapter in {in_dir} does not fit the model: {result.unexpected_keys[:5]}")
        return
    files = sorted((in_dir / MODEL_DIR).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model weights in {in_dir / MODEL_DIR}")
    missing, unexpected = model.load_state_dict(_load_state_dict(files), strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {in_dir} does not fit the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")


def register_hooks(accelerator, processor) -> None:
    """Make `accelerator.save_state/load_state` write and read only our weights."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for module in models:
                save_weights(_inner(module), processor, output_dir)
        weights.clear()  # accelerate writes no model file of its own

    def load_hook(models, input_dir):
        while models:
            load_weights(_inner(models.pop()), input_dir)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, dir) of every complete checkpoint, oldest first."""
    root = Path(output_dir)
    found = []
    for path in root.glob("checkpoint-*") if root.is_dir() else []:
        match = CHECKPOINT.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """'latest' -> the newest checkpoint of output_dir (None when there is none); a path -> itself."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.info("no checkpoint in %s to resume from: starting from step 0", output_dir)
            return None
        return found[-1][1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint dir (no {STATE_FILE})")
    return path


def read_step(checkpoint: Path) -> int:
    return int(json.loads((checkpoint / STATE_FILE).read_text())["step"])


def save_checkpoint(accelerator, cfg, step: int, total_limit: int | None) -> Path:
    """Write checkpoint-{step} (all processes must call it) and drop the oldest beyond the limit."""
    out = Path(cfg.train.output_dir) / f"checkpoint-{step}"
    accelerator.save_state(str(out))
    if accelerator.is_main_process:
        save_config(cfg, out / "config.yaml")
        # Written last: a dir without it is an interrupted save and is never resumed from.
        (out / STATE_FILE).write_text(json.dumps({"step": step}) + "\n")
        if total_limit is not None:
            for _, old in list_checkpoints(cfg.train.output_dir)[:-total_limit]:
                shutil.rmtree(old)
                logger.info("removed old checkpoint %s", old)
    accelerator.wait_for_everyone()
    return out


def save_final(accelerator, model, processor, cfg) -> Path:
    """<output_dir>/final: the trained weights and the config, for the next stage or for inference."""
    out = Path(cfg.train.output_dir) / "final"
    if accelerator.is_main_process:
        if out.exists():
            shutil.rmtree(out)
        save_weights(model, processor, out)
        save_config(cfg, out / "config.yaml")
    accelerator.wait_for_everyone()
    return out

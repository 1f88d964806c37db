"""The model a stage trains: a Janus loaded through model/, then LoRA (default) or all weights (--full).

LoRA (peft) goes on the language model's attention and MLP projections only (a regex, because
SigLIP's encoder has q/k/v_proj too). Layout tokens added to a stock tokenizer (Janus-Pro's)
start untrained: `lora.train_layout_tokens` trains just their embedding and LM-head rows (peft's
trainable_token_indices, a few thousand weights), `lora.modules_to_save` whole modules (e.g.
[embed_tokens, lm_head]: ~420M weights plus Adam state on Janus-Pro-1B). The base
is frozen and may be bfloat16; trainable weights are always float32 (the diffusers recipe).

--full trains every weight except the VQ tokenizer, which stays frozen in all stages (it is
trained on its own); `model.train_vision: false` also freezes SigLIP and its aligner.
"""

from __future__ import annotations

import copy
import logging
import re
import warnings
from pathlib import Path

import torch

from model.layout_text import LAYOUT_SPECIAL_TOKENS
from model.loading import load_janus
from train.config import LoraSettings, ModelConfig

logger = logging.getLogger(__name__)

FROZEN_ALWAYS = ("model.vqmodel.",)
VISION = ("model.vision_model.", "model.aligner.")
UNDERSTANDING_ONLY = re.compile(r"(^|\.)(vision_model|aligner|lm_head)\.")


def ensure_tiny_model(cfg: ModelConfig) -> None:
    """Write the tiny random model of `cfg.tiny_spec` to `cfg.path` when asked and missing."""
    if not cfg.init_tiny or (Path(cfg.path) / "config.json").is_file():
        return
    from model.tiny import JanusSpec, create_janus

    spec = JanusSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.tiny_spec.items()})
    create_janus(cfg.path, spec)
    logger.info("created a tiny random Janus at %s", cfg.path)


def load_base(cfg: ModelConfig, device: torch.device):
    """(model, processor): the checkpoint, with `cfg.adapter` merged in when `cfg.merge_adapter`."""
    adapter = cfg.adapter if cfg.merge_adapter else None
    model, processor = load_janus(cfg.path, adapter=adapter, device=str(device), dtype=cfg.dtype)
    return model, processor


def frozen_copy(model):
    """A frozen deep copy in eval mode: stage 3's reference when all weights train (--full)."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def make_trainable(model, cfg: ModelConfig, lora: LoraSettings, tokenizer=None):
    """Freeze what must not train and return the model to optimize (a PeftModel unless cfg.full).

    `tokenizer` is needed for `lora.train_layout_tokens` (the ids of the layout tokens)."""
    if cfg.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad, so a frozen embedding is fine.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if cfg.full:
        frozen = FROZEN_ALWAYS + (() if cfg.train_vision else VISION)
        for name, param in model.named_parameters():
            param.requires_grad_(not name.startswith(frozen))
    else:
        from peft import LoraConfig, PeftModel, get_peft_model

        model.requires_grad_(False)
        if cfg.adapter and not cfg.merge_adapter:
            model = PeftModel.from_pretrained(model, cfg.adapter, is_trainable=True)
            logger.info("continuing to train the adapter %s", cfg.adapter)
        else:
            tokens = None
            if lora.train_layout_tokens:
                ids = tokenizer.convert_tokens_to_ids(list(LAYOUT_SPECIAL_TOKENS))
                tokens = {"embed_tokens": ids, "lm_head": ids}  # input rows and output rows (untied)
            config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                target_modules=lora.target_modules, trainable_token_indices=tokens,
                                modules_to_save=list(lora.modules_to_save) or None)
            with warnings.catch_warnings():  # peft asks transformers' deprecated is_gradient_checkpointing
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                try:
                    model = get_peft_model(model, config)
                except ValueError as err:
                    raise ValueError(f"lora.target_modules {lora.target_modules!r} matched no module: {err}") from None
        if not any(n for n, _ in model.named_modules() if n.endswith("lora_A")):
            raise ValueError(f"lora.target_modules {lora.target_modules!r} matched no module")
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    logger.info("trainable parameters: %s", describe(model))
    return model


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def describe(model) -> str:
    trainable = sum(p.numel() for p in trainable_parameters(model))
    total = sum(p.numel() for p in model.parameters())
    return f"{trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)"


def freeze_understanding(model) -> None:
    """Freeze weights stage 3's loss never reaches (SigLIP, aligner, LM head): the grounding side
    only scores images there, and DDP needs every trainable weight to get a gradient."""
    for name, param in model.named_parameters():
        if UNDERSTANDING_ONLY.search(name):
            param.requires_grad_(False)

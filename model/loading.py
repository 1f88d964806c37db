"""Load a Janus checkpoint (ours or Janus-Pro in HF format) plus an optional LoRA adapter."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

BUILTIN_MODEL = Path(__file__).resolve().parent.parent / "assets" / "echogen-shapes"


class ModelLoadError(RuntimeError):
    """A checkpoint or adapter that cannot be loaded, with a message for the user."""


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ModelLoadError(f"unknown device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is available")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]


def _check_local_dir(path: Path, what: str, needed: str) -> None:
    if not path.is_dir():
        raise ModelLoadError(f"{what} not found: {path}")
    if not (path / needed).is_file():
        raise ModelLoadError(f"{what} {path} has no {needed}; is it a Hugging Face checkpoint directory?")


def resolve_model_path(path: str | Path | None) -> str:
    """A local checkpoint dir, or a hub id already in the local cache (nothing is downloaded)."""
    if path is None:
        if not (BUILTIN_MODEL / "config.json").is_file():
            raise ModelLoadError(
                f"the built-in model is missing at {BUILTIN_MODEL}; pass --model with a checkpoint directory"
            )
        return str(BUILTIN_MODEL)
    local = Path(path).expanduser()
    if local.exists() or str(path).startswith((".", "/", "~")):
        _check_local_dir(local, "model directory", "config.json")
        return str(local)
    return str(path)  # hub id: from_pretrained looks in the local cache only


def load_janus(
    path: str | Path | None = None, adapter: str | Path | list[str | Path] | None = None,
    device: str | None = "cpu", dtype: str | torch.dtype | None = None, merge_adapter: bool = True,
):
    """Return (model, processor) ready for inference.

    `adapter` may be a list: adapters are merged in order (e.g. stage 2's, then stage 3's,
    which was trained on top of the merged stage-2 model). The last one stays unmerged when
    `merge_adapter` is False."""
    from safetensors import SafetensorError
    from transformers import AutoProcessor, JanusForConditionalGeneration

    from model.tokens import ensure_layout_tokens

    source = resolve_model_path(path)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    try:
        processor = AutoProcessor.from_pretrained(source, local_files_only=True)
        model = JanusForConditionalGeneration.from_pretrained(
            source, dtype=torch_dtype, use_safetensors=True, local_files_only=True
        )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise ModelLoadError(f"could not load the model from {source}: {_first_line(err)}") from None
    ensure_layout_tokens(processor.tokenizer, model)
    adapters = [] if adapter is None else [adapter] if isinstance(adapter, (str, Path)) else list(adapter)
    for i, one in enumerate(adapters):
        model = _attach_adapter(model, Path(one), merge=merge_adapter or i + 1 < len(adapters))
    model.to(dev).eval()
    return model, processor


def save_sampling_defaults(model_dir: str | Path, sampling) -> None:
    """Make `sampling` (a SamplingConfig) the checkpoint's own defaults, in its generation_config.json:
    `EchoGen.sampling`, so the CLI, the app and evaluation draw with it unless told otherwise."""
    from transformers import GenerationConfig

    path = Path(model_dir)
    _check_local_dir(path, "model directory", "config.json")
    config = GenerationConfig.from_pretrained(path) if (path / "generation_config.json").is_file() else GenerationConfig()
    config.update(**sampling.generation_config_fields())
    config.save_pretrained(path)


def _attach_adapter(model, adapter: Path, merge: bool):
    from peft import PeftModel
    from safetensors import SafetensorError

    _check_local_dir(adapter, "adapter directory", "adapter_config.json")
    if not (adapter / "adapter_model.safetensors").is_file():
        raise ModelLoadError(f"adapter {adapter} has no adapter_model.safetensors")
    try:
        with warnings.catch_warnings():  # peft asks a deprecated transformers attribute
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = PeftModel.from_pretrained(model, str(adapter))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise ModelLoadError(f"could not load the adapter from {adapter}: {_first_line(err)}") from None
    return peft_model.merge_and_unload() if merge else peft_model


def unwrap_peft(model):
    """The JanusForConditionalGeneration inside a PeftModel (LoRA layers stay active in place)."""
    base = getattr(model, "base_model", None)
    if base is not None and hasattr(base, "model") and hasattr(model, "peft_config"):
        return base.model
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]

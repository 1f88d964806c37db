"""Run configs: dataclasses with help text, read from a YAML recipe plus command-line overrides.

    python -m train.pmtp --config train/configs/smoke/pmtp.yaml --train.max_steps 20 --full

A run config is a dataclass of sections (`model`, `lora`, `data`, `train` and the stage's own).
An override names a field as `--section.field VALUE` (or `--section.field=VALUE`), or by its
bare name when only one section has it (`--max_steps 20`, `--resume latest`); a bare boolean
flag means true (`--full`). Values are read as YAML (`null`, `true`, `[a, b]`, `1e-4`).
Every section validates itself in `__post_init__`; the resolved config is logged at start and
saved as `config.yaml` beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

# LoRA goes on the language model's attention and MLP projections only; SigLIP's encoder layers
# also have q/k/v_proj, so a name list would catch them: a full-match regex does not.
LM_LORA_TARGETS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
MIXED_PRECISION = (None, "no", "fp16", "bf16", "auto")
DTYPES = ("float32", "bfloat16", "float16")


def option(text: str, **kwargs) -> Any:
    return field(metadata={"help": text}, **kwargs)


class ConfigError(ValueError):
    """A config that cannot run, with a message naming the field."""


@dataclass
class ModelConfig:
    path: str | None = option("Janus checkpoint dir or a hub id in the local cache; null = the built-in model",
                             default=None)
    init_tiny: bool = option("create a tiny random Janus at `path` when it is missing (smoke runs, tests)",
                            default=False)
    tiny_spec: dict = option("model.tiny.JanusSpec overrides for init_tiny", default_factory=dict)
    adapter: str | None = option("LoRA adapter dir to start from (a previous stage's `final/adapter`)",
                                default=None)
    merge_adapter: bool = option("merge `adapter` into the base and train a fresh LoRA on top; stage 3's "
                                "reference (adapter disabled) is then the previous stage's model", default=False)
    full: bool = option("train all weights except the frozen VQ instead of LoRA (models trained from scratch)",
                       default=False)
    train_vision: bool = option("with full: train the SigLIP tower and aligner too", default=True)
    dtype: str = option(f"dtype of the frozen base weights, one of {DTYPES}; trainable weights are float32",
                       default="float32")
    gradient_checkpointing: bool = option("recompute activations in backward (LM and SigLIP layers)",
                                         default=False)

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.init_tiny and not self.path:
            raise ConfigError("model.init_tiny needs model.path (where the tiny model is written)")
        if self.merge_adapter and not self.adapter:
            raise ConfigError("model.merge_adapter needs model.adapter")
        if self.full and self.adapter:
            raise ConfigError("model.full trains all weights: merge the adapter into a checkpoint instead of "
                              "passing model.adapter")


@dataclass
class LoraSettings:
    r: int = option("LoRA rank", default=16)
    alpha: int = option("LoRA alpha (scale = alpha / r)", default=32)
    dropout: float = option("LoRA dropout", default=0.0)
    target_modules: str = option("full-match regex of the module names that get LoRA", default=LM_LORA_TARGETS)
    modules_to_save: list = option("modules trained in full and saved with the adapter, e.g. [embed_tokens, "
                                  "lm_head] when layout tokens were added to a stock tokenizer",
                                  default_factory=list)
    train_layout_tokens: bool = option("train the embedding and LM-head rows of the layout tokens (<ref>, <box>, "
                                       "...) with peft's trainable_token_indices: the cheap way to learn tokens "
                                       "added to a stock tokenizer", default=False)

    def __post_init__(self):
        if self.r < 1 or self.alpha <= 0:
            raise ConfigError(f"lora.r must be >= 1 and lora.alpha > 0, got {self.r}, {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    data_dir: str | None = option("dir with <split>.jsonl records (model/'s layout schema + 'image')",
                                 default=None)
    train_split: str = option("training split name; several joined by '+' are read in a row "
                                  "(train+color_pairs)", default="train")
    val_split: str = option("split whose first layouts are used for validation", default="val")
    max_records: int | None = option("use only the first N training records", default=None)
    synth_if_missing: int = option("when data_dir is missing, write a Shapes World set with this many "
                                  "training images (python -m train.synth); 0 = fail", default=0)
    synth_size: int = option("image side of synthesized data", default=128)
    vq_cache_dir: str | None = option("where pre-tokenized images are cached; null = <data_dir>/vq_cache",
                                     default=None)
    max_phrases: int = option("grounding queries per image per step, drawn from objects and expressions",
                             default=4)
    use_expressions: bool = option("also ground the records' referring expressions", default=True)
    num_val_layouts: int = option("held-out layouts generated and grounded at each validation", default=4)

    def __post_init__(self):
        if self.max_phrases < 1:
            raise ConfigError(f"data.max_phrases must be >= 1, got {self.max_phrases}")
        if not all(name.strip() for name in self.train_split.split("+")):
            raise ConfigError(f"data.train_split must be split names joined by '+', got {self.train_split!r}")
        if self.synth_if_missing < 0 or self.num_val_layouts < 0:
            raise ConfigError("data.synth_if_missing and data.num_val_layouts must be >= 0")


@dataclass
class TrainConfig:
    output_dir: str = option("run dir: checkpoint-{step}/, final/, logs", default="runs/run")
    seed: int = option("seed of the initial weights, the data order and all sampling", default=0)
    max_steps: int = option("optimizer updates", default=1000)
    batch_size: int = option("samples per process per micro-batch (stage 3: layouts)", default=1)
    grad_accum: int = option("micro-batches per optimizer update", default=1)
    lr: float = option("peak learning rate", default=1e-4)
    weight_decay: float = option("AdamW weight decay", default=0.0)
    lr_scheduler: str = option("transformers scheduler name: constant_with_warmup, cosine, linear, ...",
                              default="constant_with_warmup")
    warmup_steps: int = option("learning-rate warmup updates", default=0)
    max_grad_norm: float = option("gradient clipping norm; 0 = off", default=1.0)
    mixed_precision: str | None = option("no, fp16, bf16, or auto (bf16 where the device multiplies bf16 natively: "
                                         "a bf16 GPU, or a CPU with AMX-BF16; else no); null = what "
                                         "accelerate launch says", default=None)
    log_every: int = option("log the mean loss every N updates", default=10)
    save_every: int = option("write checkpoint-{step} every N updates (and at the end); 0 = end only",
                            default=500)
    save_total_limit: int | None = option("keep at most this many checkpoint dirs (oldest removed)", default=3)
    val_every: int = option("validate (cycle IoU, images) every N updates; 0 = never", default=0)
    resume: str | None = option("'latest' or a checkpoint dir: restore model, optimizer, scheduler, RNG, step",
                               default=None)
    progress: bool = option("show a tqdm progress bar", default=True)
    num_threads: int | None = option("torch CPU threads per process; null = torch's default (tiny models "
                                     "run fastest on 1)", default=None)

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("log_every", "save_every", "val_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"train.mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError("train.save_total_limit must be >= 1 or null")


C = TypeVar("C")


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a YAML value against a field's type (ints are accepted where floats are expected)."""
    if dataclasses.is_dataclass(hint):
        return build(hint, value or {}, where)
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where} may not be null")
    for option in options:
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str):  # YAML 1.1 reads "3e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if base is bool and isinstance(value, bool):
            return value
        if base in (int, str, list, dict) and isinstance(value, base) and not isinstance(value, bool):
            return value
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    hint = " (quote it in YAML: 'no')" if str in options and isinstance(value, bool) else ""
    raise ConfigError(f"{where} must be {names}, got {value!r}{hint}")


def build(cls: type[C], data: dict, where: str = "config") -> C:
    """Instantiate dataclass `cls` from a nested dict, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(hints[f.name]) and f.default_factory is not dataclasses.MISSING:
            # A section given in part keeps the run's own defaults for the rest (e.g. output_dir).
            value = _merge(dataclasses.asdict(f.default_factory()), value or {})
        kwargs[f.name] = _coerce(value, hints[f.name], f"{where}.{f.name}" if where != "config" else f.name)
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a section")
    tree[leaf] = value


def _resolve_name(cls, name: str) -> str:
    """A bare field name -> `section.field` when exactly one section has it."""
    sections = {f.name: t for f, t in ((f, _field_types(cls)[f.name]) for f in dataclasses.fields(cls))
                if dataclasses.is_dataclass(t)}
    if "." in name or name in sections:
        return name
    owners = [s for s, t in sections.items() if name in {f.name for f in dataclasses.fields(t)}]
    if len(owners) == 1:
        return f"{owners[0]}.{name}"
    if not owners:
        raise ConfigError(f"unknown option --{name}")
    raise ConfigError(f"--{name} is ambiguous; use one of {[f'--{o}.{name}' for o in owners]}")


def parse_overrides(cls, args: list[str]) -> dict:
    """`--a.b VALUE`, `--a.b=VALUE` or a bare flag `--flag` (true) -> nested dict of YAML values."""
    tree: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"expected --name VALUE, got {arg!r}")
        name, eq, text = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                text, i = args[i + 1], i + 1
            else:
                text = "true"
        dotted = _resolve_name(cls, name.replace("-", "_"))
        _set(tree, dotted, text if _wants_text(cls, dotted) and text != "null" else yaml.safe_load(text))
        i += 1
    return tree


def _wants_text(cls, dotted: str) -> bool:
    """A str field takes the command-line text as is (YAML would read `no` as false, `1e-4` as text)."""
    hint: Any = cls
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(hint) or part not in _field_types(hint):
            return False
        hint = _field_types(hint)[part]
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return str in options


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def usage(cls) -> str:
    lines = [f"options (each also settable in the --config YAML under its section):"]
    for section in dataclasses.fields(cls):
        sub = _field_types(cls)[section.name]
        for f in dataclasses.fields(sub):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            lines.append(f"  --{section.name}.{f.name} (default {default!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)


def load_config(cls: type[C], argv: list[str] | None = None) -> C:
    """`--config FILE.yaml` plus overrides -> a validated `cls`; `--help` prints every option."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(usage(cls))
        raise SystemExit(0)
    data: dict = {}
    if "--config" in args:
        at = args.index("--config")
        if at + 1 >= len(args):
            raise ConfigError("--config needs a YAML file")
        path = Path(args[at + 1])
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        del args[at:at + 2]
    return build(cls, _merge(data, parse_overrides(cls, args)))


def save_config(cfg, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def run_cli(main, cls: type[C], argv: list[str] | None = None) -> None:
    """A stage's `__main__`: load the config and run `main(cfg)`; bad options, configs, data or
    checkpoints end with one `error:` line on stderr and exit code 2 instead of a traceback."""
    from model.layout import LayoutError
    from model.loading import ModelLoadError

    try:
        main(load_config(cls, argv))
    except (ConfigError, ModelLoadError, LayoutError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None

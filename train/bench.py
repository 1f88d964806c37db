"""`python -m train.bench --stage {pmtp,djo,cycle_rl} --config FILE [--size tiny|1b|7b] [overrides]`

Times real training steps of a stage (the stage's own batches and loss, through `train.loop`,
no checkpoints) and prints steps/s, samples/s (stage 3: images, i.e. layouts x group size) and
peak memory: CUDA max allocated on GPU, peak RSS of the process on CPU.

--size picks the model: `config` (default: what the config loads), `tiny` (a random 32 px
model), or random models with Janus-Pro-1B's or -7B's architecture built in memory from a
JanusConfig (no weights needed; 384 px, 576 image tokens). 1b and 7b also get a small 384 px
Shapes World set in a temp dir, bfloat16 base weights and bf16 autocast; they are meant for a
GPU and run on CPU only with --allow-cpu-large.

    python -m train.bench --stage pmtp --config train/configs/smoke/pmtp.yaml
    python -m train.bench --stage djo --config train/configs/janus_pro_1b/djo.yaml --size 1b \\
        --model.gradient_checkpointing true --train.batch_size 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import resource
import sys
import tempfile
from pathlib import Path

import torch

from train.config import load_config

logger = logging.getLogger(__name__)

STAGES = {"pmtp": "PMTPRun", "djo": "DJORun", "cycle_rl": "CycleRLRun"}
# Janus-Pro language models (llama); SigLIP-L/16 at 384 px and the 16384-code VQ are shared.
SIZES = {
    "1b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=5632),
    "7b": dict(hidden_size=4096, num_hidden_layers=30, num_attention_heads=32, intermediate_size=11008),
}
JANUS_PRO_VOCAB = 102400


def janus_pro_config(size: str, pad_token_id: int, image_token_id: int):
    """A JanusConfig with Janus-Pro-1B's or -7B's shapes."""
    from transformers import JanusConfig

    lm = SIZES[size]
    hidden = lm["hidden_size"]
    text = {"model_type": "llama", "vocab_size": JANUS_PRO_VOCAB, "num_key_value_heads": lm["num_attention_heads"],
            "max_position_embeddings": 16384, "pad_token_id": pad_token_id, "tie_word_embeddings": False, **lm}
    vision = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 384,
              "patch_size": 16, "mlp_ratio": 4.0, "projection_dim": hidden, "num_image_tokens": 576}
    vq = {"num_embeddings": 16384, "embed_dim": 8, "latent_channels": 256, "base_channels": 128,
          "channel_multiplier": [1, 1, 2, 2, 4], "num_res_blocks": 2, "num_patches": 24,
          "projection_dim": hidden, "image_token_embed_dim": hidden}
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=image_token_id,
                       tie_word_embeddings=False)


def model_builder(size: str, dtype: torch.dtype):
    """build_model(device) for `train.loop.setup`: a random model of `size` and a matching processor."""

    def build(device):
        from transformers import JanusForConditionalGeneration

        from model.tiny import JanusSpec, build_processor, create_janus

        if size == "tiny":
            from model.loading import load_janus

            path = create_janus(Path(tempfile.mkdtemp(prefix="bench-tiny-")), JanusSpec())
            return load_janus(path, device=str(device), dtype=dtype)
        processor = build_processor(JanusSpec(image_size=384, patch_size=16, vq_channel_multiplier=(1, 1, 2, 2, 4)))
        tok = processor.tokenizer
        config = janus_pro_config(size, tok.pad_token_id, tok.convert_tokens_to_ids(tok.image_token))
        with torch.device(device):  # random init on the target device: no 7B copy in host memory
            model = JanusForConditionalGeneration._from_config(config, dtype=dtype)
        return model.eval(), processor

    return build


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=sorted(STAGES), required=True)
    parser.add_argument("--size", choices=("config", "tiny", "1b", "7b"), default="config")
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--allow-cpu-large", action="store_true", help="allow --size 1b/7b without a GPU")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(f"train.{args.stage}")
    cfg = load_config(getattr(module, STAGES[args.stage]), overrides)
    large = args.size in SIZES
    if large and not torch.cuda.is_available() and not args.allow_cpu_large:
        raise SystemExit(f"--size {args.size} is meant for a GPU; pass --allow-cpu-large to run it on CPU")
    tmp = Path(tempfile.mkdtemp(prefix="echogen-bench-"))
    tc = cfg.train
    tc.output_dir, tc.resume, tc.progress = str(tmp / "run"), None, False
    tc.max_steps, tc.save_every, tc.val_every, tc.log_every = args.warmup + args.steps, 0, 0, args.warmup + args.steps
    if large:
        cfg.data.data_dir, cfg.data.synth_if_missing, cfg.data.synth_size = str(tmp / "data"), 8, 384
        cfg.data.vq_cache_dir = None
        if torch.cuda.is_available():
            tc.mixed_precision = tc.mixed_precision or "bf16"
            cfg.model.dtype = "bfloat16" if cfg.model.dtype == "float32" and not cfg.model.full else cfg.model.dtype
    from train import loop

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.model.dtype]
    builder = None if args.size == "config" else model_builder(args.size, dtype)
    run = loop.setup(cfg, need_reference=args.stage == "cycle_rl", build_model=builder)
    make_batch, loss_fn, _ = module.build(run)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    loop.train(run, make_batch, loss_fn, validate=None, save=False)
    timed = run.step_times[args.warmup:]
    per_step = tc.batch_size * tc.grad_accum * run.world * (cfg.rl.group_size if args.stage == "cycle_rl" else 1)
    steps_per_s = len(timed) / sum(timed)
    result = {
        "stage": args.stage, "size": args.size, "device": str(run.device), "threads": torch.get_num_threads(),
        "mode": "full" if cfg.model.full else f"lora r{cfg.lora.r}", "dtype": cfg.model.dtype,
        "mixed_precision": run.accelerator.mixed_precision, "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "batch_size": tc.batch_size, "grad_accum": tc.grad_accum, "samples_per_step": per_step,
        "steps": len(timed), "steps_per_s": round(steps_per_s, 4), "samples_per_s": round(steps_per_s * per_step, 3),
        "peak_memory_gib": round(peak_memory_bytes(run.device) / 2**30, 3),
        "peak_memory_kind": "cuda max allocated" if run.device.type == "cuda" else "peak RSS",
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()

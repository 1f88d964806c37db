"""`python -m model.bench [--json]`: our generation loop against transformers' reference.

Measured side by side in one process, runs interleaved (ours, reference, ours, ...) and
medians taken, so machine noise hits both alike. Both decode greedily with CFG from the same
prompt. Ours runs as the CLI and the app run it: on a CPU, its decode steps multiply by weights
packed in float16 (`model.matmul`); the same loop on exact float32 weights must give the
reference's tokens. Also times the round trip a user waits for: generate one image and ground
all its objects (and the app's default, two candidates ranked by that cycle check), and the
same with float32 weights.

Runs on the built-in model when present, else on a random small model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import torch

from model.layout import parse_layout
from model.loading import BUILTIN_MODEL
from model.prompts import l2i_prompt
from model.results import SamplingConfig

BENCH_LAYOUT = {
    "width": 128, "height": 128, "caption": "a red circle, a blue square and a green triangle",
    "objects": [
        {"phrase": "red circle", "box": [8, 10, 60, 62]},
        {"phrase": "blue square", "box": [70, 12, 120, 64]},
        {"phrase": "green triangle", "box": [30, 70, 100, 122]},
    ],
}
# A random model with the built-in model's LM on an 8x8 grid (128 px, 64 image tokens: quick).
RANDOM_SPEC = dict(image_size=128, patch_size=16, hidden_size=256, num_layers=4, num_heads=4,
                   intermediate_size=688, vision_hidden_size=128, vision_layers=2, vision_heads=4,
                   vq_channel_multiplier=(1, 1, 2, 2, 4), codebook_size=1024, codebook_dim=8)


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _load(path: str | None, device: str):
    from model.echogen import EchoGen
    from model.tiny import JanusSpec, create_janus, spread_weights

    if path is None and (BUILTIN_MODEL / "config.json").is_file():
        return EchoGen.load(None, device=device), "built-in echogen-shapes"
    if path is not None:
        return EchoGen.load(path, device=device), path
    tmp = Path(tempfile.mkdtemp(prefix="echogen-bench-"))
    create_janus(tmp, JanusSpec(**RANDOM_SPEC))
    eg = EchoGen.load(tmp, device=device)
    spread_weights(eg.model)  # so greedy tokens vary and the equality check means something
    return eg, "random small model (8x8 grid)"


def reference_tokens(eg, prompts: list[str], cfg: float) -> torch.Tensor:
    """transformers' own Janus image generation, greedy."""
    enc = eg.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(eg.device)
    eg.model.generation_config.generation_kwargs = {"boi_token_id": eg.special.boi}
    return eg.model.generate(**enc, generation_mode="image", do_sample=False, guidance_scale=cfg)


@contextmanager
def exact_weights(eg):
    """`eg` decoding on its float32 weights for a while (no float16 packing)."""
    half, eg.half_weights = eg.half_weights, False
    try:
        yield eg
    finally:
        eg.half_weights = half


@contextmanager
def greedy_grounding(eg):
    """`eg` grounding with greedy answers (1 beam) for a while."""
    beams, eg.grounding_beams = eg.grounding_beams, 1
    try:
        yield eg
    finally:
        eg.grounding_beams = beams


def bench_generation(eg, batch: int, repeats: int, cfg: float) -> dict:
    prompt = l2i_prompt(parse_layout(BENCH_LAYOUT).resized(eg.image_size, eg.image_size), eg.tokenizer.boi_token)
    prompts = [prompt] * batch
    greedy = SamplingConfig(cfg=cfg, temperature=0.0)
    ours_t, ref_t, same = [], [], True
    for _ in range(repeats + 1):  # the first round warms up both
        t_ours, ours = _timed(lambda: eg.generate_tokens(prompts, greedy, None))
        t_ref, ref = _timed(lambda: reference_tokens(eg, prompts, cfg))
        ours_t.append(t_ours)
        ref_t.append(t_ref)
        same &= bool(torch.equal(ours.cpu(), ref.cpu()))
    with exact_weights(eg):
        exact = bool(torch.equal(eg.generate_tokens(prompts, greedy, None).cpu(), ref.cpu()))
    ours_s, ref_s = statistics.median(ours_t[1:]), statistics.median(ref_t[1:])
    steps = eg.num_image_tokens
    return {
        "batch": batch, "ours_ms_per_token": 1000 * ours_s / steps, "reference_ms_per_token": 1000 * ref_s / steps,
        "ours_images_per_s": batch / ours_s, "reference_images_per_s": batch / ref_s,
        "speedup": ref_s / ours_s, "identical_greedy_tokens": exact, "default_weights_same_tokens": same,
    }


def bench_roundtrip(eg, repeats: int, num_images: int = 1) -> float:
    return bench_roundtrips(eg, repeats, {"default": nullcontext}, num_images)["default"]


def bench_roundtrips(eg, repeats: int, variants: dict[str, Callable[[], ContextManager]],
                     num_images: int = 1) -> dict[str, float]:
    """Median round trip under each variant (a context that changes `eg` for the time of one
    round trip), the variants' runs interleaved so that machine noise hits them alike."""
    layout = parse_layout(BENCH_LAYOUT)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(repeats + 1):  # the first round warms up
        for name, variant in variants.items():
            with variant():
                times[name].append(_timed(lambda: eg.cycle(layout, num_images=num_images, seed=i))[0])
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint dir (default: built-in, else a random model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per measurement (default: 5)")
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    eg, which = _load(args.model, args.device)
    b1 = bench_generation(eg, 1, args.repeats, args.cfg)
    b4 = bench_generation(eg, 4, args.repeats, args.cfg)
    result = {
        "model": which, "device": str(eg.device), "threads": torch.get_num_threads(),
        "image_tokens": eg.num_image_tokens, "cfg": args.cfg,
        "ours_ms_per_token": b1["ours_ms_per_token"], "reference_ms_per_token": b1["reference_ms_per_token"],
        "speedup_batch1": b1["speedup"], "speedup_batch4": b4["speedup"],
        "identical_greedy_tokens": b1["identical_greedy_tokens"] and b4["identical_greedy_tokens"],
        "batch1": b1, "batch4": b4, "grounding_beams": eg.grounding_beams, "half_weights": eg.half_weights,
    }
    # side by side: what the grounding beams cost and what the float16 weights save
    variants = {"roundtrip_s": nullcontext, "roundtrip_greedy_s": lambda: greedy_grounding(eg),
                "roundtrip_float32_weights_s": lambda: exact_weights(eg)}
    result.update(bench_roundtrips(eg, args.repeats, variants))
    result["roundtrip_2_candidates_s"] = bench_roundtrip(eg, args.repeats, num_images=2)  # the app's default
    if args.json:
        print(json.dumps(result))
    else:
        weights = "float16-packed weights" if eg.half_weights else "float32 weights"
        print(f"model: {which} ({result['image_tokens']} image tokens, cfg {args.cfg}, {result['threads']} threads, "
              f"ours on {weights}; same tokens: ours on float32 weights against the reference)")
        print("| batch | ours ms/token | reference ms/token | ours images/s | reference images/s | speedup | same tokens |")
        print("|---|---|---|---|---|---|---|")
        for b in (b1, b4):
            print(f"| {b['batch']} | {b['ours_ms_per_token']:.2f} | {b['reference_ms_per_token']:.2f} | "
                  f"{b['ours_images_per_s']:.2f} | {b['reference_images_per_s']:.2f} | {b['speedup']:.2f}x | "
                  f"{b['identical_greedy_tokens']} |")
        print(f"round trip (generate 1 image + ground {len(BENCH_LAYOUT['objects'])} objects): "
              f"{result['roundtrip_s']:.3f} s median with {result['grounding_beams']} grounding beams, "
              f"{result['roundtrip_greedy_s']:.3f} s greedy, "
              f"{result['roundtrip_float32_weights_s']:.3f} s on float32 weights")
        if eg.half_weights:
            same = b1["default_weights_same_tokens"] and b4["default_weights_same_tokens"]
            print(f"greedy tokens on float16-packed weights the same as the reference's: {same}")
        print(f"round trip with 2 candidates (the app's default; both drawn in one batch, the better re-grounded "
              f"one shown first): {result['roundtrip_2_candidates_s']:.3f} s median")
    return 0 if result["identical_greedy_tokens"] else 1


if __name__ == "__main__":
    sys.exit(main())

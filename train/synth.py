"""Write a Shapes World data set: PNG renders plus `<split>.jsonl` records.

    python -m train.synth --out data/shapes --n 20000 --seed 0 --split train
    python -m train.synth --out data/shapes --n 500 --seed 0 --split test
    python -m train.synth --bench --n 2000            # images/s on one core, nothing written

Splits: image k of split s is drawn from numpy SeedSequence([seed, SPLIT_INDEX[s], k]), so the
splits of one seed never share a scene, a split is identical whatever else is written, and the
first n images of a split do not depend on --n. The test split is for final numbers only:
never train or tune on it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from train.shapes.expressions import sample_expressions
from train.shapes.records import SPLITS, scene_record
from train.shapes.render import render, visibility
from train.shapes.world import SceneConfig, sample_scene

logger = logging.getLogger(__name__)
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for image `index` of `split`: independent across splits and images."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_INDEX[split], index]))


def make_example(seed: int, split: str, index: int, cfg: SceneConfig):
    """(scene, record, image) for one image; a pure function of its arguments."""
    rng = image_rng(seed, split, index)
    scene = sample_scene(rng, cfg)
    record_id = f"{split}-{index:06d}"
    record = scene_record(scene, record_id, f"images/{split}/{record_id}.png",
                          sample_expressions(rng, scene), visibility(scene))
    return scene, record, render(scene)


def write_split(out: Path, split: str, n: int, seed: int, cfg: SceneConfig, progress: bool = True) -> float:
    """Write n images and `<split>.jsonl` under out; returns images per second."""
    image_dir = out / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (out / f"{split}.jsonl").open("w", encoding="utf-8") as jsonl:
        for index in tqdm(range(n), desc=f"synth {split}", disable=not progress):
            _, record, image = make_example(seed, split, index, cfg)
            image.save(out / record["image"], format="PNG", compress_level=1)
            jsonl.write(json.dumps(record) + "\n")
    rate = n / max(time.perf_counter() - start, 1e-9)
    meta = {"split": split, "n": n, "seed": seed, "scene_config": asdict(cfg)}
    (out / f"{split}.meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return rate


def benchmark(n: int, seed: int, cfg: SceneConfig) -> dict[str, float]:
    """Images/s of sampling + rendering + PNG encoding in memory (one core, nothing written).

    `images_per_cpu_s` counts this process's CPU time only, so it holds on a busy machine."""
    start, cpu_start = time.perf_counter(), time.process_time()
    for index in range(n):
        _, _, image = make_example(seed, "train", index, cfg)
        image.save(io.BytesIO(), format="PNG", compress_level=1)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"images": n, "size": cfg.size, "seconds": round(wall, 3), "images_per_s": round(n / wall, 1),
            "images_per_cpu_s": round(n / cpu, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="output directory (created if missing)")
    parser.add_argument("--n", type=int, default=1000, help="images per split")
    parser.add_argument("--seed", type=int, default=0, help="data set seed")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="all",
                        help="split to write; 'all' writes train, val and test, n images each")
    parser.add_argument("--bench", action="store_true", help="time generation in memory and print JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.n < 1:
            raise ValueError(f"--n must be at least 1, got {args.n}")
        cfg = SceneConfig(size=args.size)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.bench:
        print(json.dumps(benchmark(args.n, args.seed, cfg)))
        return 0
    if args.out is None:
        print("error: --out DIR is required (or pass --bench)", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} exists and is not a directory", file=sys.stderr)
        return 2
    splits = SPLITS if args.split == "all" else (args.split,)
    for split in splits:
        rate = write_split(args.out, split, args.n, args.seed, cfg, progress=not args.no_progress)
        logger.info("wrote %d %s images to %s (%.0f images/s)", args.n, split, args.out, rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())

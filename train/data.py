"""Training data: layout records with images (stages 1-2), layouts alone (stage 3), and the order.

Records are model/'s layout JSONL plus an image path (relative to the JSONL's dir) and optional
referring expressions, as `python -m train.synth` writes them:

    {"id", "image", "width", "height", "caption", "objects": [{"phrase", "box"}],
     "expressions": [{"text", "box"}]}

Janus sees every image letterboxed to a square, so each layout is moved into that square here
once: the L2I condition, the grounding targets and the VQ tokens then share one frame.

The order is a pure function of (seed, position): micro-batch c of a run holds global samples
[c * B * P, (c + 1) * B * P) of an endless sequence of seeded epoch permutations, and process r
takes its B of them. Resuming at step s needs nothing but s.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from model.images import open_image
from model.inputs import pixel_values
from model.layout import Box, Layout, LayoutError, LayoutObject, load_layouts, parse_layout

logger = logging.getLogger(__name__)

LayoutSource = Callable[[np.random.Generator], Layout]


@dataclass(frozen=True)
class Query:
    """One grounding sample: a phrase and its box in the record's square layout."""

    phrase: str
    box: Box


@dataclass(frozen=True)
class Record:
    id: str
    image: Path
    layout: Layout  # letterboxed to a square, boxes in that square's pixels
    queries: tuple[Query, ...]  # objects with a phrase of their own first, then expressions


def letterbox_layout(layout: Layout) -> Layout:
    """The layout in the centered square Janus pads its image to (the identity for square images)."""
    side = max(layout.width, layout.height)
    if layout.width == layout.height:
        return layout
    dx, dy = (side - layout.width) / 2, (side - layout.height) / 2
    objects = tuple(LayoutObject(o.phrase, (o.box[0] + dx, o.box[1] + dy, o.box[2] + dx, o.box[3] + dy))
                    for o in layout.objects)
    return Layout(side, side, objects, layout.caption)


def parse_record(raw: dict, root: Path, use_expressions: bool = True) -> Record:
    """One JSONL record -> `Record`; raises `LayoutError` with the reason when it is unusable."""
    if not isinstance(raw.get("image"), str):
        raise LayoutError("a training record needs an 'image' path")
    original = parse_layout(raw)
    layout = letterbox_layout(original)
    dx, dy = (layout.width - original.width) / 2, (layout.height - original.height) / 2
    # An object's phrase asks for it only when no other object shares it: "blue circle" with two
    # blue circles has two right answers and teaches a box between them (the referring
    # expressions below single each of them out).
    # A record with "ground_objects": false is grounded on its expressions only (its objects are
    # still all drawn): see train.shapes.color_pairs.
    phrases = Counter(o.phrase for o in layout.objects)
    queries = [Query(o.phrase, o.box) for o in layout.objects
               if phrases[o.phrase] == 1 and raw.get("ground_objects", True)]
    for expr in raw.get("expressions", []) if use_expressions else []:
        # An expression's box is validated like an object's (clipped to the image).
        obj = parse_layout({"width": original.width, "height": original.height,
                            "objects": [{"phrase": expr.get("text"), "box": expr.get("box")}]}).objects[0]
        queries.append(Query(obj.phrase, (obj.box[0] + dx, obj.box[1] + dy, obj.box[2] + dx, obj.box[3] + dy)))
    return Record(str(raw.get("id", raw["image"])), root / raw["image"], layout, tuple(queries))


def split_names(spec: str) -> list[str]:
    """'train+color_pairs' -> ['train', 'color_pairs']: a training set may be several splits in a row."""
    names = [name.strip() for name in spec.split("+")]
    if not all(names):
        raise LayoutError(f"bad split list {spec!r}: use split names joined by '+', e.g. train+color_pairs")
    return names


def read_splits(data_dir: str | Path, spec: str, limit: int | None = None,
                use_expressions: bool = True) -> list[list[Record]]:
    """The first `limit` records of the splits in `spec` ('a+b': split a, then split b), one list per split read."""
    parts: list[list[Record]] = []
    total = 0
    for name in split_names(spec):
        if limit is not None and total >= limit:
            break
        parts.append(_read_split(data_dir, name, None if limit is None else limit - total, use_expressions))
        total += len(parts[-1])
    return parts


def read_records(data_dir: str | Path, split: str, limit: int | None = None,
                 use_expressions: bool = True) -> list[Record]:
    """The first `limit` records of `split`; 'a+b' reads split a, then split b."""
    return [r for part in read_splits(data_dir, split, limit, use_expressions) for r in part]


def _read_split(data_dir: str | Path, split: str, limit: int | None, use_expressions: bool) -> list[Record]:
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no {split} split: {path} is missing (make one with "
                                f"python -m train.synth --out {data_dir} --split {split})")
    records = []
    with path.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, start=1):
            if limit is not None and len(records) >= limit:
                break
            if line.strip():
                try:
                    records.append(parse_record(json.loads(line), path.parent, use_expressions))
                except (LayoutError, json.JSONDecodeError) as err:
                    raise LayoutError(f"{path} line {n}: {err}") from None
    if not records:
        raise LayoutError(f"{path} holds no records")
    return records


def synthesize(data_dir: str | Path, n_train: int, size: int, seed: int = 0) -> None:
    """A Shapes World data set (train.synth) with n_train training and n_train // 10 (>= 4) val images."""
    from train.shapes.world import SceneConfig
    from train.synth import write_split

    out = Path(data_dir)
    cfg = SceneConfig(size=size)
    for split, n in (("train", n_train), ("val", max(4, n_train // 10))):
        write_split(out, split, n, seed, cfg, progress=False)
    logger.info("wrote a Shapes World data set (%d train images, %d px) to %s", n_train, size, out)


def ensure_data(data_dir: str | None, synth_if_missing: int, size: int) -> Path:
    if data_dir is None:
        raise ValueError("data.data_dir is not set")
    path = Path(data_dir)
    if not (path / "train.jsonl").is_file():
        if synth_if_missing <= 0:
            raise FileNotFoundError(f"data dir {path} has no train.jsonl (set data.synth_if_missing to create one)")
        synthesize(path, synth_if_missing, size)
    return path


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def sample_indices(n: int, seed: int, start: int, count: int) -> list[int]:
    """Positions start..start+count of the endless seeded sequence of epoch permutations of range(n)."""
    return [int(_epoch_order(n, seed, p // n)[p % n]) for p in range(start, start + count)]


def micro_batch_indices(n: int, seed: int, step: int, micro: int, grad_accum: int, batch_size: int,
                        rank: int, world: int) -> list[int]:
    """Record indices of process `rank` in micro-batch `micro` of optimizer step `step` (0-based)."""
    counter = step * grad_accum + micro
    return sample_indices(n, seed, (counter * world + rank) * batch_size, batch_size)


def micro_seed(seed: int, step: int, micro: int, rank: int, stream: int = 0) -> int:
    """A seed for everything random in one micro-batch (caption dropout, Gumbel noise, rollouts)."""
    return int(np.random.SeedSequence([seed, step, micro, rank, stream]).generate_state(1)[0])


def pick_queries(record: Record, max_phrases: int, rng: np.random.Generator) -> list[Query]:
    if len(record.queries) <= max_phrases:
        return list(record.queries)
    return [record.queries[i] for i in sorted(rng.choice(len(record.queries), max_phrases, replace=False))]


def load_pixels(image_processor, paths: list[Path], device, dtype) -> torch.Tensor:
    """[N, 3, S, S] letterboxed, normalized images (the SigLIP and VQ input)."""
    return pixel_values(image_processor, [open_image(p) for p in paths], device, dtype)


def layout_source(kind: str, records: list[Record] | None = None, size: int = 128) -> LayoutSource:
    """Stage 3 layouts: 'data' (the training records), 'random' or 'scene' (Shapes World
    samplers, no images) or a .json/.jsonl layout file."""
    if kind == "data":
        if not records:
            raise ValueError("layout source 'data' needs training records")
        return lambda rng: records[int(rng.integers(len(records)))].layout
    if kind in ("random", "scene"):
        from train.shapes.samplers import make_sampler
        from train.shapes.world import SceneConfig

        return make_sampler(kind, SceneConfig(size=size))
    layouts = [letterbox_layout(layout) for layout in load_layouts(kind)]
    return lambda rng: layouts[int(rng.integers(len(layouts)))]

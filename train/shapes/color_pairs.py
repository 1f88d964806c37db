"""`python -m train.shapes.color_pairs`: a split whose grounding queries only color can answer.

A diagnosis of PREVIEW 9 (assets/echogen-shapes/LAB_NOTES.md, "Color binding"): its grounding ignored the color
word, answering "red circle" and "blue circle" with the same box when both are in the image,
because most queries are answered by the shape alone. This writes, from an existing split, the
records that hold two objects of one shape in different colors, every object kept (L2I draws
the whole layout) but grounded only through the expressions of those objects
("ground_objects": false, read by `train.data.parse_record`). Stage 1 can then train on it
(`--data.train_split color_pairs`) so that every grounding loss term rewards reading the color.

    python -m train.shapes.color_pairs --data data/shapes            # train -> color_pairs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def color_pair_objects(record: dict[str, Any]) -> list[int]:
    """Indices of the objects whose shape another object has in another color."""
    colors: dict[str, set[str]] = defaultdict(set)
    for obj in record["objects"]:
        colors[obj["shape"]].add(obj["color"])
    return [k for k, obj in enumerate(record["objects"]) if len(colors[obj["shape"]]) > 1]


def color_pair_record(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record grounded on its color-pair objects' expressions only; None when it has none."""
    keep = set(color_pair_objects(record))
    expressions = [e for e in record.get("expressions", []) if e["object"] in keep]
    if not expressions:
        return None
    return {**record, "expressions": expressions, "ground_objects": False}


def write_color_pairs(data: Path, split: str, out_split: str) -> tuple[int, int]:
    """Write `<out_split>.jsonl` beside `<split>.jsonl` (same images); (records, queries) written."""
    source = data / f"{split}.jsonl"
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing (make it with python -m train.synth --out {data} --split {split})")
    records = queries = 0
    with source.open(encoding="utf-8") as lines, (data / f"{out_split}.jsonl").open("w", encoding="utf-8") as out:
        for line in lines:
            record = color_pair_record(json.loads(line))
            if record is not None:
                out.write(json.dumps(record) + "\n")
                records, queries = records + 1, queries + len(record["expressions"])
    meta = data / f"{split}.meta.json"
    if meta.is_file():
        shutil.copyfile(meta, data / f"{out_split}.meta.json")
    return records, queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.shapes.color_pairs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/shapes", help="Shapes World data dir")
    parser.add_argument("--split", default="train", help="split to read")
    parser.add_argument("--out-split", default="color_pairs", help="split name to write")
    args = parser.parse_args(argv)
    try:
        records, queries = write_color_pairs(Path(args.data), args.split, args.out_split)
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {records} records ({queries} grounding queries) to {Path(args.data) / args.out_split}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shapes World records: one JSON object per line of `DIR/<split>.jsonl`, in model/'s layout schema.

    {"id": "test-000000", "image": "images/test/test-000000.png", "width": 128, "height": 128,
     "caption": "a yellow square and a blue circle on a beige background", "background": "beige",
     "objects": [{"phrase": "yellow square in front", "box": [x1, y1, x2, y2], "color": "yellow",
                  "shape": "square", "z": 1, "visible": 1.0}],
     "expressions": [{"text": "yellow square", "box": [x1, y1, x2, y2], "object": 0}]}

Boxes are pixel xyxy (x2, y2 exclusive). `z` is the drawing rank (0 drawn first) and `visible`
the share of the object's pixels left visible by the objects drawn over it.
`model.layout.parse_layout(record)` reads a record as a layout (extra keys are ignored).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.layout import LayoutError, parse_layout
from train.shapes.expressions import Expression
from train.shapes.world import Scene, caption

SPLITS = ("train", "val", "test")


class RecordError(ValueError):
    """A data directory or record that cannot be used, with a message for the person who made it."""


def scene_record(scene: Scene, record_id: str, image_path: str, expressions: list[Expression],
                 visible: list[float]) -> dict[str, Any]:
    z = scene.z
    return {
        "id": record_id,
        "image": image_path,
        "width": scene.size,
        "height": scene.size,
        "caption": caption(scene),
        "background": scene.background.name,
        "objects": [
            {"phrase": o.phrase, "box": list(o.box), "color": o.color, "shape": o.shape, "z": z[i],
             "visible": round(visible[i], 3)}
            for i, o in enumerate(scene.objects)
        ],
        "expressions": [{"text": e.text, "box": list(e.box), "object": e.object} for e in expressions],
    }


def _check_record(record: Any, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RecordError(f"{where}: a record must be a JSON object")
    for key in ("id", "image"):
        if not isinstance(record.get(key), str):
            raise RecordError(f"{where}: '{key}' must be a string")
    try:
        parse_layout(record)
    except LayoutError as err:
        raise RecordError(f"{where}: {err}") from None
    for i, obj in enumerate(record["objects"], start=1):
        if not isinstance(obj.get("color"), str) or not isinstance(obj.get("shape"), str):
            raise RecordError(f"{where}: object {i} needs 'color' and 'shape' strings")
    expressions = record.get("expressions", [])
    if not isinstance(expressions, list):
        raise RecordError(f"{where}: 'expressions' must be a list")
    for i, expr in enumerate(expressions, start=1):
        box = expr.get("box") if isinstance(expr, dict) else None
        if not isinstance(expr, dict) or not isinstance(expr.get("text"), str) or not (
            isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
        ):
            raise RecordError(f"{where}: expression {i} needs 'text' and a 'box' [x1, y1, x2, y2]")
    return record


def load_records(data_dir: str | Path, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The validated records of `DIR/<split>.jsonl` (the first `limit` if given)."""
    if split not in SPLITS:
        raise RecordError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise RecordError(f"data directory not found: {data_dir}")
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise RecordError(f"no {split} split in {data_dir} (expected {path}); make it with "
                          f"python -m train.synth --out {data_dir} --split {split}")
    records = []
    with path.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, start=1):
            if limit is not None and len(records) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{path} line {n} is not valid JSON: {err.msg} (column {err.colno})") from None
            records.append(_check_record(record, f"{path} line {n}"))
    if not records:
        raise RecordError(f"{path} holds no records")
    return records

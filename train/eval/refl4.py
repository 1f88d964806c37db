"""Score a Ref-L4-style prediction file against annotations, as Ref-L4's evaluator does.

Predictions: a JSON list (or JSONL) of {"id", "pred_bbox", "format"}, format "xyxy" or "xywh".
Annotations: a JSON list (or JSONL) of {"id", "bbox": [x, y, w, h]} with an optional
"ori_category_id". Export Ref-L4's split with the `datasets` library, e.g.
`load_dataset("JierunChen/Ref-L4")["test"].to_json("refl4_test.jsonl")`.

Every annotation needs exactly one prediction (extra predictions are ignored). Reported:
Acc@0.5/0.75/0.9 and mAcc (IoU strictly above each threshold); by size, sqrt(w * h) in
pixels: small < 128 <= medium <= 256 < large; and, when annotations carry categories, the
mean over categories of Acc@0.5 and mAcc. Ref-L4 first merges 80 RefCOCO category ids into
Objects365 ids; pass that mapping as `category_map` to reproduce its class-level numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from model.metrics import box_iou
from train.eval.metrics import accuracy_by_size, accuracy_summary, acc_at, macc, size_bucket

REFL4_SMALL, REFL4_LARGE = 128, 256


class ScoringError(ValueError):
    """Predictions or annotations that cannot be scored, with the reason."""


def read_json_list(path: str | Path) -> list[Any]:
    """A JSON list from a .json file, or the objects of a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise ScoringError(f"file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ScoringError(f"{path} line {n} is not valid JSON: {err.msg}") from None
    if not isinstance(data, list):
        raise ScoringError(f"{path} must hold a JSON list or JSONL objects")
    return data


def _xyxy(box: Any, fmt: str, what: str) -> tuple[float, float, float, float]:
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
        raise ScoringError(f"{what} must be four numbers, got {box!r}")
    if fmt == "xywh":
        return box[0], box[1], box[0] + box[2], box[1] + box[3]
    if fmt == "xyxy":
        return tuple(box)  # type: ignore[return-value]
    raise ScoringError(f"{what}: format must be 'xyxy' or 'xywh', got {fmt!r}")


def score_refl4(predictions: Sequence[dict], annotations: Sequence[dict],
                category_map: dict[str, str] | None = None,
                small_th: float = REFL4_SMALL, large_th: float = REFL4_LARGE) -> dict[str, Any]:
    """Ref-L4 metrics of `predictions` on `annotations` (see the module docstring)."""
    if not annotations:
        raise ScoringError("no annotations to score")
    by_id: dict[str, dict] = {}
    for pred in predictions:
        if not isinstance(pred, dict) or "id" not in pred or "pred_bbox" not in pred:
            raise ScoringError(f"a prediction needs 'id' and 'pred_bbox', got {pred!r}")
        key = str(pred["id"])
        if key in by_id:
            raise ScoringError(f"duplicate prediction id {key}")
        by_id[key] = pred
    ious, sizes, categories = [], [], []
    for ann in annotations:
        key = str(ann.get("id")) if isinstance(ann, dict) else None
        if key is None or "bbox" not in ann:
            raise ScoringError(f"an annotation needs 'id' and 'bbox' [x, y, w, h], got {ann!r}")
        if key not in by_id:
            raise ScoringError(f"no prediction for annotation id {key}")
        pred = by_id[key]
        truth = _xyxy(ann["bbox"], "xywh", f"annotation {key} bbox")
        guess = _xyxy(pred["pred_bbox"], pred.get("format", "xyxy"), f"prediction {key} pred_bbox")
        ious.append(box_iou(truth, guess))
        sizes.append(size_bucket(truth, small_th, large_th))
        category = ann.get("ori_category_id")
        categories.append(None if category is None else (category_map or {}).get(category, category))
    metrics: dict[str, Any] = accuracy_summary(ious)
    metrics["by_size"] = accuracy_by_size(ious, sizes)
    if all(c is not None for c in categories):
        groups: dict[Any, list[float]] = {}
        for iou, c in zip(ious, categories):
            groups.setdefault(c, []).append(iou)
        metrics["class_avg"] = {
            "classes": len(groups),
            "Acc@0.5": sum(acc_at(g, 0.5) for g in groups.values()) / len(groups),
            "mAcc": sum(macc(g) for g in groups.values()) / len(groups),
        }
    return metrics

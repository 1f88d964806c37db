"""Grounding accuracy on Shapes World: the model boxes each expression in the clean render.

Ref-L4 definitions (train.eval.metrics): Acc@0.5, Acc@0.75, Acc@0.9 (IoU strictly above the
threshold) and mAcc (mean over 0.50:0.05:0.95). As in Ref-L4, whatever box an answer gives
is scored, even from a malformed answer (`valid` reports the well-formed share); no box
scores IoU 0.
Results are split by object size, sqrt(w * h) / image side: small < 0.25 <= medium <= 0.4 <
large (Ref-L4's 128/256 pixel cuts suit its large photos, not 128 px renders), and by
expression kind: "name" ("red circle", unique in its image) or "referring" (position, size
or depth words pick one of several namesakes), and by whether only the color word tells the
target from another object of its shape ("color pair", `train.shapes.color_pairs`): a model that
ignores color scores near 0.5 there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from model.metrics import box_iou
from train.eval.fidelity import load_image
from train.eval.metrics import LARGE_SIDE, SMALL_SIDE, accuracy_by_size, accuracy_summary, size_bucket
from train.shapes.color_pairs import color_pair_objects



def expression_kind(text: str, record: dict[str, Any]) -> str:
    """'name' when the expression is just an object's "<color> <shape>", else 'referring'."""
    names = {f"{o['color']} {o['shape']}" for o in record["objects"]}
    return "name" if text in names else "referring"


def grounding_scores(ious: Sequence[float], sizes: Sequence[str], kinds: Sequence[str],
                     valid: Sequence[bool], pairs: Sequence[bool] | None = None) -> dict[str, Any]:
    """Accuracy summary overall, by size, by expression kind and (given `pairs`, one flag per
    expression) by color pair, plus the share of valid answers."""
    metrics: dict[str, Any] = accuracy_summary(ious)
    metrics["valid"] = sum(valid) / len(valid) if valid else 0.0
    metrics["by_size"] = accuracy_by_size(ious, sizes)
    metrics["by_kind"] = {
        kind: accuracy_summary([iou for iou, k in zip(ious, kinds) if k == kind])
        for kind in ("name", "referring") if kind in kinds
    }
    if pairs is not None:
        metrics["by_color_pair"] = {
            name: accuracy_summary([iou for iou, p in zip(ious, pairs) if p == flag])
            for name, flag in (("color pair", True), ("other", False)) if flag in pairs
        }
    return metrics


def evaluate_grounding(model: Any, records: Sequence[dict[str, Any]], data_dir: str | Path, *,
                       batch_size: int = 16, progress: bool = False) -> dict[str, Any]:
    """Ground every expression of `records` in its clean render with `model` (EchoGen API)."""
    jobs = [r for r in records if r.get("expressions")]
    if not jobs:
        raise ValueError("no record has grounding expressions")
    ious, sizes, kinds, valid, pairs = [], [], [], [], []
    for start in tqdm(range(0, len(jobs), batch_size), desc="ground", disable=not progress):
        batch = jobs[start:start + batch_size]
        images = [load_image(data_dir, r) for r in batch]
        phrases = [[e["text"] for e in r["expressions"]] for r in batch]
        answers = model.ground(images, phrases)
        for record, image, expressions, groundings in zip(batch, images, phrases, answers):
            if len(groundings) != len(expressions):
                raise ValueError(f"model gave {len(groundings)} answers for {len(expressions)} phrases")
            side = math.sqrt(record["width"] * record["height"])
            sx, sy = image.width / record["width"], image.height / record["height"]
            paired = set(color_pair_objects(record))
            for expr, answer in zip(record["expressions"], groundings):
                target = expr["box"]
                box = None if answer.box is None else (
                    answer.box[0] / sx, answer.box[1] / sy, answer.box[2] / sx, answer.box[3] / sy)
                ious.append(0.0 if box is None else box_iou(target, box))
                valid.append(bool(answer.valid and box is not None))
                sizes.append(size_bucket([v / side for v in target], SMALL_SIDE, LARGE_SIDE))
                kinds.append(expression_kind(expr["text"], record))
                pairs.append(expr.get("object") in paired)
    return grounding_scores(ious, sizes, kinds, valid, pairs)

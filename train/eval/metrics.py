"""Pure metric functions: grounding accuracy (Ref-L4 definitions), COCO AP, per-object scores.

Ref-L4 (Chen et al. 2024): a prediction is correct at threshold t when IoU > t (strictly);
Acc@t is the share of correct predictions and mAcc the mean of Acc@t over
t = 0.50, 0.55, ..., 0.95. Objects split by size sqrt(w * h): small < small_th <= medium
<= large_th < large (Ref-L4 uses 128 and 256 pixels).

AP, AP50 and AP75 are pycocotools' COCOeval numbers (area range 'all', 100 detections),
computed from in-memory COCO objects: class = "<color> <shape>".
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from model.metrics import box_iou

MACC_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50:0.05:0.95
ACC_THRESHOLDS = (0.5, 0.75, 0.9)
PRESENCE_IOU = 0.5
Box = Sequence[float]


def acc_at(ious: Sequence[float], threshold: float) -> float:
    """Share of IoUs strictly above the threshold (Ref-L4); 0 for no IoUs."""
    return sum(iou > threshold for iou in ious) / len(ious) if len(ious) else 0.0


def macc(ious: Sequence[float], thresholds: Sequence[float] = MACC_THRESHOLDS) -> float:
    """Mean of acc_at over the thresholds (Ref-L4 mAcc)."""
    return sum(acc_at(ious, t) for t in thresholds) / len(thresholds)


def accuracy_summary(ious: Sequence[float]) -> dict[str, float]:
    """{"n", "Acc@0.5", "Acc@0.75", "Acc@0.9", "mAcc"} for a list of IoUs."""
    summary: dict[str, float] = {"n": len(ious)}
    summary.update({f"Acc@{t}": acc_at(ious, t) for t in ACC_THRESHOLDS})
    summary["mAcc"] = macc(ious)
    return summary


# Size cuts of Shapes World objects, sqrt(w * h) as a share of the image side (Ref-L4's 128/256-pixel
# cuts suit its large photos, not 128 px renders): small < 0.25 <= medium <= 0.4 < large.
SMALL_SIDE, LARGE_SIDE = 0.25, 0.4


def size_bucket(box: Box, small_th: float, large_th: float) -> str:
    """'small', 'medium' or 'large' by sqrt(w * h), in the units of the thresholds (Ref-L4 rule)."""
    size = math.sqrt(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))
    if size < small_th:
        return "small"
    return "medium" if size <= large_th else "large"


def accuracy_by_size(ious: Sequence[float], sizes: Sequence[str]) -> dict[str, dict[str, float]]:
    """accuracy_summary per size bucket (buckets with no object are left out)."""
    out = {}
    for bucket in ("small", "medium", "large"):
        chosen = [iou for iou, s in zip(ious, sizes) if s == bucket]
        if chosen:
            out[bucket] = accuracy_summary(chosen)
    return out


@dataclass(frozen=True)
class GroundTruth:
    image_id: int
    box: Box  # xyxy
    label: str


@dataclass(frozen=True)
class Prediction:
    image_id: int
    box: Box  # xyxy
    label: str
    score: float


def coco_ap(truths: Iterable[GroundTruth], predictions: Iterable[Prediction]) -> dict[str, float]:
    """{"AP", "AP50", "AP75"} from pycocotools COCOeval (bbox); 0 where nothing was predicted."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truths, predictions = list(truths), list(predictions)
    labels = sorted({t.label for t in truths} | {p.label for p in predictions})
    category = {label: i + 1 for i, label in enumerate(labels)}
    image_ids = sorted({t.image_id for t in truths} | {p.image_id for p in predictions})
    if not truths:
        raise ValueError("coco_ap needs at least one ground-truth box")
    if not predictions:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}

    def xywh(box: Box) -> list[float]:
        return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]

    gt = COCO()
    gt.dataset = {
        "images": [{"id": i} for i in image_ids],
        "categories": [{"id": c, "name": name} for name, c in category.items()],
        "annotations": [
            {"id": k + 1, "image_id": t.image_id, "category_id": category[t.label], "bbox": xywh(t.box),
             "area": xywh(t.box)[2] * xywh(t.box)[3], "iscrowd": 0}
            for k, t in enumerate(truths)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt.createIndex()
        dt = gt.loadRes([
            {"image_id": p.image_id, "category_id": category[p.label], "bbox": xywh(p.box), "score": float(p.score)}
            for p in predictions
        ])
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50, ap75 = (max(0.0, float(v)) for v in evaluator.stats[:3])
    return {"AP": ap, "AP50": ap50, "AP75": ap75}


@dataclass(frozen=True)
class ObjectMatch:
    """LayoutSAM-style check of one layout object against the detections in its image."""

    iou: float  # IoU of the best-overlapping detection (0 if none)
    present: bool  # some detection overlaps with IoU >= 0.5
    color_ok: bool  # ... and that detection has the right color
    shape_ok: bool  # ... and the right shape


def match_object(box: Box, color: str, shape: str, detections: Sequence[tuple[Box, str, str]]) -> ObjectMatch:
    """Match a layout object to the detection (box, color, shape) of highest IoU."""
    best_iou, best = 0.0, None
    for det in detections:
        iou = box_iou(box, det[0])
        if iou > best_iou:
            best_iou, best = iou, det
    present = best is not None and best_iou >= PRESENCE_IOU
    return ObjectMatch(best_iou, present, present and best[1] == color, present and best[2] == shape)


def object_scores(matches: Sequence[ObjectMatch]) -> dict[str, float]:
    """Shares of objects present, present with the right color, and with the right shape."""
    n = len(matches)
    if not n:
        return {"objects": 0, "presence": 0.0, "color": 0.0, "shape": 0.0, "mean_iou": 0.0}
    return {
        "objects": n,
        "presence": sum(m.present for m in matches) / n,
        "color": sum(m.color_ok for m in matches) / n,
        "shape": sum(m.shape_ok for m in matches) / n,
        "mean_iou": float(np.mean([m.iou for m in matches])),
    }


def object_scores_by(matches: Sequence[ObjectMatch], groups: Sequence[str]) -> dict[str, dict[str, float]]:
    """object_scores per group (matches[i] belongs to groups[i]), groups sorted by name."""
    if len(matches) != len(groups):
        raise ValueError(f"{len(matches)} matches but {len(groups)} groups")
    return {g: object_scores([m for m, h in zip(matches, groups) if h == g]) for g in sorted(set(groups))}


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half (Mann-Whitney U)."""
    if not positive or not negative:
        raise ValueError("roc_auc needs at least one positive and one negative score")
    pos, neg = np.asarray(positive, dtype=float), np.sort(np.asarray(negative, dtype=float))
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))

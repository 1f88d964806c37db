"""Box metrics for the cycle check: pure functions on plain numbers.

Boxes are pixel xyxy. L1 is the mean absolute coordinate error normalized by the image
size (x by width, y by height), so 0 is perfect and 1 the worst possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

Box = Sequence[float]
PASS_IOU = 0.5


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two xyxy boxes; 0 when either has no area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def box_l1(a: Box, b: Box, width: float, height: float) -> float:
    """Mean |a - b| over the 4 coordinates, x normalized by width and y by height."""
    scale = (width, height, width, height)
    return sum(abs(p - q) / s for p, q, s in zip(a, b, scale)) / 4


@dataclass(frozen=True)
class ObjectScore:
    iou: float
    l1: float
    valid: bool  # the model's answer parsed cleanly into a box

    @property
    def passed(self) -> bool:
        return self.valid and self.iou >= PASS_IOU


@dataclass(frozen=True)
class CycleScore:
    objects: tuple[ObjectScore, ...]

    @property
    def mean_iou(self) -> float:
        return sum(o.iou for o in self.objects) / len(self.objects) if self.objects else 0.0

    @property
    def mean_l1(self) -> float:
        return sum(o.l1 for o in self.objects) / len(self.objects) if self.objects else 1.0

    @property
    def pass_rate(self) -> float:
        """Share of objects re-grounded with IoU >= 0.5."""
        return sum(o.passed for o in self.objects) / len(self.objects) if self.objects else 0.0

    def to_dict(self) -> dict:
        return {
            "mean_iou": self.mean_iou, "mean_l1": self.mean_l1, "pass_rate": self.pass_rate,
            "objects": [{"iou": o.iou, "l1": o.l1, "valid": o.valid, "passed": o.passed} for o in self.objects],
        }


def cycle_score(
    drawn: Sequence[Box], grounded: Sequence[Box | None], width: float, height: float,
    valid: Sequence[bool] | None = None,
) -> CycleScore:
    """Compare drawn boxes with re-grounded ones; a missing (None) answer scores IoU 0, L1 1.

    `valid` flags answers that parsed cleanly; a box recovered from a malformed answer is
    still scored but never passes."""
    if len(drawn) != len(grounded):
        raise ValueError(f"{len(drawn)} drawn boxes but {len(grounded)} grounded ones")
    valid = [True] * len(drawn) if valid is None else valid
    scores = []
    for d, g, ok in zip(drawn, grounded, valid):
        if g is None:
            scores.append(ObjectScore(0.0, 1.0, False))
        else:
            scores.append(ObjectScore(box_iou(d, g), box_l1(d, g, width, height), bool(ok)))
    return CycleScore(tuple(scores))

"""Cycle consistency: the model draws a layout, then re-grounds each phrase in its own image.

`EchoGen.cycle` returns the re-grounded boxes in the layout's coordinates; they are compared
with the layout boxes by model.metrics.cycle_score: IoU, and L1 normalized by the layout size
(0 best, 1 worst). A malformed answer is scored on whatever box could be read from it but
never passes (pass = well-formed and IoU >= 0.5); no box counts IoU 0 and L1 1. `valid` is
the share of well-formed answers. Means are over all objects of all layouts.
"""

from __future__ import annotations

from typing import Any, Sequence

from tqdm import tqdm

from model.layout import parse_layout
from model.metrics import ObjectScore, cycle_score


def summarize(objects: Sequence[ObjectScore], layouts: int) -> dict[str, Any]:
    """Mean IoU, mean L1, pass rate and well-formed-answer rate over objects."""
    n = len(objects)
    if not n:
        return {"layouts": layouts, "objects": 0, "mean_iou": 0.0, "mean_l1": 1.0, "pass_rate": 0.0, "valid": 0.0}
    return {
        "layouts": layouts,
        "objects": n,
        "mean_iou": sum(o.iou for o in objects) / n,
        "mean_l1": sum(o.l1 for o in objects) / n,
        "pass_rate": sum(o.passed for o in objects) / n,
        "valid": sum(o.valid for o in objects) / n,
    }


def evaluate_cycle(model: Any, records: Sequence[dict[str, Any]], *, seed: int = 0, sampling: Any = None,
                   progress: bool = False) -> dict[str, Any]:
    """Run `model.cycle` (EchoGen API) once per record's layout; layout i uses seed + i."""
    objects: list[ObjectScore] = []
    for i, record in enumerate(tqdm(records, desc="cycle", disable=not progress)):
        layout = parse_layout(record)
        kwargs = {} if sampling is None else {"sampling": sampling}
        result = model.cycle(layout, num_images=1, seed=seed + i, **kwargs)
        found = result.candidates[0].groundings
        score = cycle_score(layout.boxes, [g.box for g in found], layout.width, layout.height,
                            [g.valid for g in found])
        objects += score.objects
    return summarize(objects, len(records))

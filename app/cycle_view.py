"""A `CycleResult` as what the cycle view shows: overlays, a per-object table, a summary, JSON.

Candidates stay in the order `EchoGen.cycle` returns them (best mean IoU first); "#k" is a
candidate's rank. An object passes when re-grounded with IoU >= 0.5; "no box" means the
model's answer had no usable box. Quality colors: pass green, IoU >= 0.25 amber, else red.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from PIL import Image

from model.metrics import PASS_IOU, ObjectScore
from model.results import CycleResult

from app.overlay import draw_cycle
from app.palette import color_of, text_color, to_hex

FAIR_IOU = 0.25
QUALITY_COLORS = {"pass": "#c6f0c2", "fair": "#ffe6a0", "fail": "#f8c4c4"}
TABLE_HEADERS = ["candidate", "#", "phrase", "IoU", "L1", "result"]


def quality(score: ObjectScore) -> str:
    if score.passed:
        return "pass"
    if score.valid and score.iou >= FAIR_IOU:
        return "fair"
    return "fail"


def _result_text(score: ObjectScore) -> str:
    if not score.valid:
        return "no box"
    return "pass" if score.passed else "fail"


def candidate_label(rank: int, seed: int, mean_iou: float) -> str:
    return f"#{rank} · seed {seed} · mean IoU {mean_iou:.2f}"


def cycle_json(result: CycleResult, base_seed: int) -> dict[str, Any]:
    """Plain data for gr.JSON and API clients: the layout and every candidate's scores and boxes."""
    return {
        "layout": result.layout.to_dict(),
        "seed": base_seed,
        "candidates": [{"rank": k + 1, **c.to_dict()} for k, c in enumerate(result.candidates)],
    }


def overlays(result: CycleResult) -> list[tuple[Image.Image, str]]:
    """(image with drawn + re-grounded boxes, caption) per candidate, in rank order."""
    layout = result.layout
    size = (layout.width, layout.height)
    return [
        (draw_cycle(c.image, size, layout.boxes, [g.box for g in c.groundings]),
         candidate_label(k + 1, c.seed, c.score.mean_iou))
        for k, c in enumerate(result.candidates)
    ]


def table(result: CycleResult):
    """A styled per-object table of every candidate (pandas Styler for gr.Dataframe)."""
    rows, kinds = [], []
    for k, cand in enumerate(result.candidates):
        for i, (obj, score) in enumerate(zip(result.layout.objects, cand.score.objects)):
            rows.append([f"#{k + 1} (seed {cand.seed})", i + 1, obj.phrase, score.iou, score.l1, _result_text(score)])
            kinds.append(quality(score))
    frame = pd.DataFrame(rows, columns=TABLE_HEADERS)

    def styles(df: pd.DataFrame) -> pd.DataFrame:
        css = pd.DataFrame("", index=df.index, columns=df.columns)
        for row, (index, kind) in enumerate(zip(df["#"], kinds)):
            color = color_of(int(index) - 1)
            css.iloc[row, 1] = f"background-color: {to_hex(color)}; color: {to_hex(text_color(color))}"
            for col in (3, 4, 5):
                css.iloc[row, col] = f"background-color: {QUALITY_COLORS[kind]}"
        return css

    return frame.style.apply(styles, axis=None).format({"IoU": "{:.2f}", "L1": "{:.3f}"})


def summary(result: CycleResult, seconds: float) -> str:
    best = result.candidates[0]
    per = " · ".join(f"#{k + 1}: {c.score.mean_iou:.2f}" for k, c in enumerate(result.candidates))
    return (
        f"**Mean IoU {best.score.mean_iou:.2f}** (best, seed {best.seed}) · mean L1 {best.score.mean_l1:.3f} · "
        f"{best.score.pass_rate:.0%} of objects re-grounded with IoU ≥ {PASS_IOU:g}  \n"
        f"All candidates: {per} · {len(result.candidates)} candidate(s) in {seconds:.1f} s  \n"
        "Solid boxes: your layout. Dashed: where the model finds each phrase in its own image."
    )


def candidate_choices(result: CycleResult) -> list[tuple[str, int]]:
    return [(candidate_label(k + 1, c.seed, c.score.mean_iou), k) for k, c in enumerate(result.candidates)]

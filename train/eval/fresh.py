"""Grounding on fresh scenes: images rendered from a seed no data split uses, never on disk.

`python -m train.eval fresh [--model DIR]` prints these numbers, and tests/test_builtin_model.py
asserts floors under them for the shipped model. Three measurements:
- `grounding`: each unoccluded object's phrase is grounded; Acc@0.5 and mean IoU, beside the
  mean IoU of the best constant box (the mean true box: an oracle that knows the answers'
  mean but not the image).
- `own_object`: in scenes of two or more objects, the share of answers that overlap the asked
  object more than any other, beside a phrase-blind guess (1 / objects).
- `color_pairs`: two objects of one shape in two colors, grounded by their two names
  ("red circle", "blue circle"): how often the two boxes differ (IoU < 0.5 between them) and
  how often both are right (IoU >= 0.5 with their own objects). A model that ignores the color
  word gives both names one box.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image

from model.metrics import box_iou
from train.shapes.color_pairs import color_pair_objects

FRESH_SEED = 20261123  # no split of the training data is drawn from it
SCENES = 12  # scenes for `grounding` and `own_object`
PAIR_SCENES = 60  # later scenes searched for color pairs
VISIBLE = 0.95  # objects hidden more than this are not asked for


def fresh_scenes(start: int, count: int, seed: int = FRESH_SEED, size: int = 128) -> list[tuple[dict, Image.Image]]:
    """(record, image) of scenes start .. start + count - 1: a pure function of the arguments."""
    from train.shapes.world import SceneConfig
    from train.synth import make_example

    return [make_example(seed, "test", index, SceneConfig(size=size))[1:] for index in range(start, start + count)]


def _unoccluded(record: dict) -> list[dict]:
    return [o for o in record["objects"] if o.get("visible", 1.0) >= VISIBLE]


def grounding_ious(model, scenes: Sequence[tuple[dict, Image.Image]]) -> tuple[np.ndarray, np.ndarray]:
    """(model IoUs, constant-box IoUs), one per unoccluded object; no box scores 0."""
    truths, found = [], []
    for record, image in scenes:
        objects = _unoccluded(record)
        truths += [o["box"] for o in objects]
        found += model.ground([image], [[o["phrase"] for o in objects]])[0]
    if not truths:
        return np.zeros(0), np.zeros(0)
    ious = [box_iou(t, g.box) if g.valid else 0.0 for t, g in zip(truths, found)]
    mean_box = np.mean(np.array(truths, dtype=float), axis=0)  # [4]
    return np.array(ious), np.array([box_iou(t, mean_box) for t in truths])


def own_object_hits(model, scenes: Sequence[tuple[dict, Image.Image]]) -> tuple[np.ndarray, np.ndarray]:
    """(hit flags, chance per answer) over answers in scenes of two or more objects."""
    hits, chance = [], []
    for record, image in scenes:
        objects, asked = record["objects"], _unoccluded(record)
        if len(objects) < 2 or not asked:
            continue
        for target, answer in zip(asked, model.ground([image], [[o["phrase"] for o in asked]])[0]):
            ious = [box_iou(o["box"], answer.box) if answer.valid else 0.0 for o in objects]
            hits.append(bool(answer.valid and int(np.argmax(ious)) == objects.index(target)))
            chance.append(1 / len(objects))
    return np.array(hits, dtype=bool), np.array(chance)


def color_pair_answers(model, scenes: Sequence[tuple[dict, Image.Image]]) -> tuple[np.ndarray, np.ndarray]:
    """(boxes differ, both right), one flag each per scene holding a same-shape color pair."""
    differ, both_right = [], []
    for record, image in scenes:
        pair = color_pair_objects(record)
        if not pair:
            continue
        first = record["objects"][pair[0]]
        second = next(record["objects"][k] for k in pair if record["objects"][k]["shape"] == first["shape"]
                      and record["objects"][k]["color"] != first["color"])
        names = [f"{o['color']} {o['shape']}" for o in (first, second)]
        boxes = [g.box for g in model.ground([image], [names])[0]]  # scored even if malformed, as in Ref-L4
        found = None not in boxes
        differ.append(found and box_iou(*boxes) < 0.5)
        both_right.append(found and all(box_iou(o["box"], b) >= 0.5 for o, b in zip((first, second), boxes)))
    return np.array(differ, dtype=bool), np.array(both_right, dtype=bool)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def evaluate_fresh(model, scenes: int = SCENES, pair_scenes: int = PAIR_SCENES, seed: int = FRESH_SEED) -> dict[str, Any]:
    """All three measurements on the fresh scenes of `seed`: a metrics dict for the eval CLI."""
    size = getattr(model, "image_size", 128)
    first = fresh_scenes(0, scenes, seed, size)
    ious, constant = grounding_ious(model, first)
    hits, chance = own_object_hits(model, first)
    differ, both_right = color_pair_answers(model, fresh_scenes(scenes, pair_scenes, seed, size))
    return {
        "grounding": {"objects": len(ious), "acc_at_0.5": _mean(ious >= 0.5), "mean_iou": _mean(ious),
                      "constant_box_mean_iou": _mean(constant)},
        "own_object": {"answers": len(hits), "share": _mean(hits), "chance": _mean(chance)},
        "color_pairs": {"pairs": len(differ), "differ": _mean(differ), "both_right": _mean(both_right)},
    }

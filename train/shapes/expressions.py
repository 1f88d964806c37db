"""Grounding expressions for Shapes World: one uniquely-referring expression per object.

"<color> <shape>" when no other object shares the name; otherwise a referring expression
picked at random among those that single the object out of its namesakes:
position ("leftmost/rightmost/top/bottom red circle"), size ("larger/smaller" between two,
"largest/smallest" among more) or depth ("red circle in front/behind"). Objects that no
rule singles out get no expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.shapes.world import IntBox, Scene, ShapeObject, box_intersection

POSITION_MARGIN = 0.05  # centers must differ by this share of the image side
SIZE_RATIO = 1.5  # areas must differ by this factor


@dataclass(frozen=True)
class Expression:
    text: str
    box: IntBox
    object: int  # index into the scene's objects


def _center(obj: ShapeObject) -> tuple[float, float]:
    x1, y1, x2, y2 = obj.box
    return (x1 + x2) / 2, (y1 + y2) / 2


def _overlaps_any(i: int, objects: tuple[ShapeObject, ...]) -> bool:
    return any(j != i and box_intersection(objects[i].box, o.box) > 0 for j, o in enumerate(objects))


def distinguishing_texts(i: int, objects: tuple[ShapeObject, ...], size: int) -> list[str]:
    """Every expression that singles out object i among the objects sharing its name."""
    target = objects[i]
    rivals = [j for j, o in enumerate(objects) if j != i and o.name == target.name]
    if not rivals:
        return [target.name]
    margin = POSITION_MARGIN * size
    cx, cy = _center(target)
    others = [_center(objects[j]) for j in rivals]
    texts = []
    if all(cx + margin <= ox for ox, _ in others):
        texts.append(f"leftmost {target.name}")
    if all(cx - margin >= ox for ox, _ in others):
        texts.append(f"rightmost {target.name}")
    if all(cy + margin <= oy for _, oy in others):
        texts.append(f"top {target.name}")
    if all(cy - margin >= oy for _, oy in others):
        texts.append(f"bottom {target.name}")
    two = len(rivals) == 1
    if all(target.area >= SIZE_RATIO * objects[j].area for j in rivals):
        texts.append(f"{'larger' if two else 'largest'} {target.name}")
    if all(target.area * SIZE_RATIO <= objects[j].area for j in rivals):
        texts.append(f"{'smaller' if two else 'smallest'} {target.name}")
    if _overlaps_any(i, objects):
        same_depth = [j for j in rivals if _overlaps_any(j, objects) and objects[j].layer == target.layer]
        if not same_depth:
            texts.append(f"{target.name} {'in front' if target.layer == 1 else 'behind'}")
    return texts


def sample_expressions(rng: np.random.Generator, scene: Scene) -> list[Expression]:
    """One expression per object that some rule singles out, in object order."""
    expressions = []
    for i, obj in enumerate(scene.objects):
        texts = distinguishing_texts(i, scene.objects, scene.size)
        if texts:
            expressions.append(Expression(texts[int(rng.integers(len(texts)))], obj.box, i))
    return expressions

"""Layout samplers for RL data (no images): scene-like layouts and uniformly random boxes.

Both return `model.layout.Layout`s in Shapes World's vocabulary. The paper found that
uniformly random boxes train Cycle RL as well as real layouts; `random_box_layout` is that
sampler: boxes ignore the scene rules (any overlap, any color), and an overlapping object
gets a depth word from a random drawing order: "in front" when drawn over every box it
overlaps, "behind" when under every one, none when in between (the same phrase grammar as scenes).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from model.layout import Layout, LayoutObject
from train.shapes.geometry import SHAPES
from train.shapes.world import (
    COLORS, DEFAULT_BACKGROUND, Background, Scene, SceneConfig, ShapeObject, box_intersection, caption, middle_rgb,
    parse_phrase, sample_background, sample_box, sample_scene,
)

LayoutSampler = Callable[[np.random.Generator], Layout]


def scene_layout(rng: np.random.Generator, cfg: SceneConfig = SceneConfig()) -> Layout:
    """The layout of a random Shapes World scene (the scene rules hold)."""
    scene = sample_scene(rng, cfg)
    objects = tuple(LayoutObject(o.phrase, tuple(map(float, o.box))) for o in scene.objects)
    return Layout(cfg.size, cfg.size, objects, caption(scene))


def random_box_layout(rng: np.random.Generator, cfg: SceneConfig = SceneConfig()) -> Layout:
    """min_objects..max_objects boxes placed uniformly at random, with random colors and shapes."""
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    drawn = [
        ShapeObject(str(rng.choice(list(COLORS))), str(rng.choice(SHAPES)), sample_box(rng, cfg), 0, (0, 0, 0))
        for _ in range(n)
    ]
    z = rng.permutation(n)
    phrases = [order_phrase(i, drawn, z) for i in range(n)]
    objects = tuple(LayoutObject(p, tuple(map(float, o.box))) for p, o in zip(phrases, drawn))
    scene = Scene(cfg.size, sample_background(rng, cfg.two_tone_prob), tuple(drawn))
    return Layout(cfg.size, cfg.size, objects, caption(scene))


def order_phrase(i: int, objects: list[ShapeObject], z: np.ndarray) -> str:
    """Object i's name plus the depth word its drawing rank z[i] earns among the boxes it overlaps."""
    over = [z[i] > z[j] for j, o in enumerate(objects) if j != i and box_intersection(objects[i].box, o.box) > 0]
    if over and all(over):
        return f"{objects[i].name} in front"
    if over and not any(over):
        return f"{objects[i].name} behind"
    return objects[i].name


def scene_from_layout(layout: Layout, size: int, background: Background = DEFAULT_BACKGROUND) -> Scene:
    """A clean scene drawing `layout` at size x size with each color's middle shade: an oracle
    generator for tests and baselines. Objects "behind" are drawn first, "in front" last.
    Raises ValueError for phrases outside the Shapes World vocabulary."""
    sx, sy = size / layout.width, size / layout.height
    objects = []
    for obj in layout.objects:
        color, shape, layer = parse_phrase(obj.phrase)
        x1, y1, x2, y2 = obj.box
        box = (round(x1 * sx), round(y1 * sy), max(round(x2 * sx), round(x1 * sx) + 1),
               max(round(y2 * sy), round(y1 * sy) + 1))
        layer = 1 if layer is None else 2 * layer  # behind < plain < in front
        objects.append(ShapeObject(color, shape, box, layer, middle_rgb(color), phrase=obj.phrase))
    return Scene(size, background, tuple(objects))


SAMPLERS: dict[str, Callable[[np.random.Generator, SceneConfig], Layout]] = {
    "scene": scene_layout,
    "random": random_box_layout,
}


def make_sampler(kind: str, cfg: SceneConfig = SceneConfig()) -> LayoutSampler:
    """A function rng -> Layout for `kind` in SAMPLERS ('scene' or 'random')."""
    if kind not in SAMPLERS:
        raise ValueError(f"unknown layout sampler {kind!r}; choose one of {', '.join(SAMPLERS)}")
    sample = SAMPLERS[kind]
    return lambda rng: sample(rng, cfg)

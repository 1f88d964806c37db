"""Phrases that name nothing in a Shapes World scene: the negatives that teach grounding to answer `none`.

A hard negative shares all but one word with an object that is there ("red circle" beside a red
square), so the model must read the shape (or the color) to tell them apart, which is what the
built-in model is weakest at. Depth words are left off: they only order objects that are there.
"""

from __future__ import annotations

import numpy as np

from model.layout import Layout
from train.shapes.geometry import SHAPES
from train.shapes.world import COLORS, parse_phrase

SHAPE_SWAP_SHARE = 0.75  # the rest swap the color


def absent_phrase(layout: Layout, rng: np.random.Generator) -> str | None:
    """'<color> <shape>' of no object in `layout`, one word from a random object that is there;
    None when no phrase of the layout parses as Shapes World."""
    present = set()
    for phrase in layout.phrases:
        try:
            present.add(parse_phrase(phrase)[:2])
        except ValueError:
            continue
    if not present:
        return None
    color, shape = sorted(present)[int(rng.integers(len(present)))]
    if rng.random() < SHAPE_SWAP_SHARE:
        options = [(color, s) for s in SHAPES if (color, s) not in present]
    else:
        options = [(c, shape) for c in COLORS if (c, shape) not in present]
    if not options:
        return None
    color, shape = options[int(rng.integers(len(options)))]
    return f"{color} {shape}"

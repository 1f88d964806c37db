"""Does the model know when a phrase names nothing in the image? (`python -m train.eval presence`)

Every record's render is asked for each object whose "<color> <shape>" is unique in it (present)
and for one phrase one word off an object that is there (absent, `train.shapes.absent`, seeded
by the record's position). The model's presence (`Grounding.present`, model.presence: its odds
of starting a box rather than `none`) should be high for the first and low for the second:
AUC over all pairs, and accuracy on each side of the 0.5 threshold. `round_trip` asks the same
of the images after the model's own image tokenizer, closer to what it sees in its drawings.
A model never taught `none` scores near AUC 0.5.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from model.layout import parse_layout
from model.presence import PRESENT_THRESHOLD
from train.eval.fidelity import load_image
from train.eval.metrics import roc_auc
from train.shapes.absent import absent_phrase


def presence_queries(record: dict[str, Any], seed: int, position: int) -> tuple[list[str], str | None]:
    """(present phrases: the record's unique "<color> <shape>" names, one absent phrase or None)."""
    names = Counter(f"{o['color']} {o['shape']}" for o in record["objects"])
    present = [name for name, count in names.items() if count == 1]
    rng = np.random.default_rng([seed, position])
    return present, absent_phrase(parse_layout(record), rng)


def presence_scores(present: Sequence[float], absent: Sequence[float]) -> dict[str, Any]:
    return {
        "AUC": roc_auc(present, absent),
        "present_recall": float(np.mean(np.asarray(present) >= PRESENT_THRESHOLD)),
        "absent_recall": float(np.mean(np.asarray(absent) < PRESENT_THRESHOLD)),
        "present_phrases": len(present), "absent_phrases": len(absent),
    }


def evaluate_presence(model: Any, records: Sequence[dict[str, Any]], data_dir: str | Path, *, seed: int = 0,
                      batch_size: int = 16, round_trip: Callable[[list[Image.Image]], list[Image.Image]] | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """Presence of present and absent phrases in each record's render (or its round trip)."""
    present, absent = [], []
    for start in tqdm(range(0, len(records), batch_size), desc="presence", disable=not progress):
        batch = records[start:start + batch_size]
        images = [load_image(data_dir, r) for r in batch]
        if round_trip is not None:
            images = round_trip(images)
        queries = [presence_queries(r, seed, start + i) for i, r in enumerate(batch)]
        phrases = [names + ([] if other is None else [other]) for names, other in queries]
        for (names, other), found in zip(queries, model.ground(images, phrases)):
            if any(g.present is None for g in found):
                raise ValueError("this model does not report presence (its tokenizer cannot tell a box from none)")
            present += [g.present for g in found[:len(names)]]
            absent += [g.present for g in found[len(names):]]
    return presence_scores(present, absent)

"""Fake EchoGen models for the evaluation tests: same methods, no weights.

`OracleModel` draws any Shapes World layout exactly (train.shapes renderer) and grounds
every expression of a known data set at its true box; `skew` degrades both so tests can
show the metrics drop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.layout import Layout
from model.metrics import cycle_score
from model.results import CycleCandidate, CycleResult, Grounding, SamplingConfig
from train.eval.fidelity import load_image
from train.shapes.render import render
from train.shapes.samplers import scene_from_layout


@dataclass
class FakeGeneration:
    images: list[list[Image.Image]]


def image_key(image: Image.Image) -> str:
    return hashlib.sha1(np.asarray(image.convert("RGB")).tobytes()).hexdigest()


def _shift(box, dx: float, dy: float):
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


class OracleModel:
    """Perfect generator and grounder for Shapes World; `skew` (0-1) shifts boxes by that share of
    their size and, when > 0, recolors every generated object blue."""

    sampling = SamplingConfig(cfg=4.0, temperature=0.9)  # its own defaults, not Janus-Pro's
    half_weights = False

    def __init__(self, image_size: int = 96, data_dir: str | Path | None = None, records=(), skew: float = 0.0):
        self.image_size = image_size
        self.skew = skew
        self.calls: list[tuple[str, int]] = []
        self.answers: dict[str, dict[str, tuple]] = {}
        for record in records:
            key = image_key(load_image(data_dir, record))
            self.answers[key] = {e["text"]: tuple(e["box"]) for e in record.get("expressions", [])}

    def _skewed(self, layout: Layout) -> Layout:
        if not self.skew:
            return layout
        phrases = [" ".join(["blue"] + p.split()[1:]) for p in layout.phrases]
        boxes = [_shift(b, self.skew * (b[2] - b[0]), self.skew * (b[3] - b[1])) for b in layout.boxes]
        clipped = [(max(0, x1), max(0, y1), min(layout.width, x2), min(layout.height, y2)) for x1, y1, x2, y2 in boxes]
        from model.layout import LayoutObject

        return Layout(layout.width, layout.height, tuple(LayoutObject(p, b) for p, b in zip(phrases, clipped)))

    def _draw(self, layout: Layout) -> Image.Image:
        return render(scene_from_layout(self._skewed(layout), self.image_size))

    def generate(self, layouts, num_images=1, seed=0, sampling=None):
        self.calls.append(("generate", seed))
        return FakeGeneration([[self._draw(layout) for _ in range(num_images)] for layout in layouts])

    def ground(self, images, phrases):
        self.calls.append(("ground", len(images)))
        out = []
        for image, group in zip(images, phrases):
            known = self.answers.get(image_key(image), {})
            answers = []
            for phrase in group:
                box = known.get(phrase)
                if box is not None and self.skew:
                    box = _shift(box, self.skew * (box[2] - box[0]), 0.0)
                answers.append(Grounding(phrase, box, box is not None, "fake"))
            out.append(answers)
        return out

    def cycle(self, layout, num_images=1, seed=0, sampling=None):
        self.calls.append(("cycle", seed))
        image = self._draw(layout)
        found = tuple(
            Grounding(o.phrase, _shift(o.box, self.skew * (o.box[2] - o.box[0]), 0.0), True, "fake")
            for o in layout.objects
        )
        score = cycle_score(layout.boxes, [g.box for g in found], layout.width, layout.height)
        return CycleResult(layout, (CycleCandidate(image, seed, found, score),))


class PickyOracle(OracleModel):
    """Draws candidate k of a layout skewed when k is even and exactly when k is odd; `cycles`
    scores each by its own skewed or exact grounding, best first, as `EchoGen.cycles` does."""

    def __init__(self, image_size: int = 96, skew: float = 0.4):
        super().__init__(image_size)
        self.bad, self.good = OracleModel(image_size, skew=skew), OracleModel(image_size)

    def _makers(self, num_images: int) -> list[OracleModel]:
        return [self.bad if k % 2 == 0 else self.good for k in range(num_images)]

    def generate(self, layouts, num_images=1, seed=0, sampling=None):
        self.calls.append(("generate", seed))
        makers = self._makers(num_images)
        return FakeGeneration([[maker._draw(layout) for maker in makers] for layout in layouts])

    def cycles(self, layouts, num_images=1, seed=0, sampling=None):
        self.calls.append(("cycles", seed))
        makers = self._makers(num_images)
        results = []
        for layout in layouts:
            candidates = [maker.cycle(layout, seed=seed + k).candidates[0] for k, maker in enumerate(makers)]
            candidates.sort(key=lambda c: c.score.mean_iou, reverse=True)
            results.append(CycleResult(layout, tuple(candidates)))
        return results

    def compose(self, layouts, num_images=2, seed=0, sampling=None):
        """Composition that finds each object's exact drawing wherever one of the candidates has it."""
        self.calls.append(("compose", seed))
        return [(self.good if num_images > 1 else self.bad)._draw(layout) for layout in layouts]


class SceneOracle:
    """Grounds in-memory scenes ((record, image) pairs) at their objects' true boxes, by phrase or by
    "<color> <shape>" name; `color_blind` answers by the shape word alone (its first object)."""

    sampling = SamplingConfig()
    half_weights = False

    def __init__(self, scenes, color_blind: bool = False, image_size: int = 128):
        self.image_size = image_size
        self.color_blind = color_blind
        self.answers: dict[str, dict[str, tuple]] = {}
        for record, image in scenes:
            known = self.answers.setdefault(image_key(image), {})
            for obj in record["objects"]:
                for key in (obj["phrase"], f"{obj['color']} {obj['shape']}", obj["shape"]):
                    known.setdefault(key, tuple(obj["box"]))  # the first object of a name wins

    def ground(self, images, phrases):
        out = []
        for image, group in zip(images, phrases):
            known = self.answers.get(image_key(image), {})
            keys = [p.split()[1] if self.color_blind else p for p in group]  # "<color> <shape> ..."
            out.append([Grounding(p, known.get(k), k in known, "fake") for p, k in zip(group, keys)])
        return out


class DriftingModel(OracleModel):
    """Draws candidate k of every layout with its boxes moved right by `k * drift` of their width
    (so fidelity falls with k). Its grounder either `sees` what it drew (answers the drawn boxes)
    or trusts the prompt (answers the layout's boxes whatever the image shows)."""

    def __init__(self, drift: float = 0.08, sees: bool = True, image_size: int = 96):
        super().__init__(image_size=image_size)
        self.drift, self.sees = drift, sees
        self.answers_for: dict[str, list[tuple]] = {}  # image key -> the boxes its grounder answers

    def _moved(self, layout: Layout, k: int) -> Layout:
        objects = []
        for o in layout.objects:
            x1, y1, x2, y2 = _shift(o.box, k * self.drift * (o.box[2] - o.box[0]), 0.0)
            objects.append(type(o)(o.phrase, (x1, y1, min(x2, layout.width), y2)))
        return Layout(layout.width, layout.height, tuple(objects))

    def generate(self, layouts, num_images=1, seed=0, sampling=None):
        self.calls.append(("generate", seed))
        images = []
        for layout in layouts:
            row = []
            for k in range(num_images):
                moved = self._moved(layout, k)
                image = render(scene_from_layout(moved, self.image_size))
                answered = moved if self.sees else layout
                s = self.image_size / layout.width
                self.answers_for[image_key(image)] = [tuple(v * s for v in b) for b in answered.boxes]
                row.append(image)
            images.append(row)
        return FakeGeneration(images)

    def ground(self, images, phrases):
        return [[Grounding(p, box, True, "fake") for p, box in zip(group, self.answers_for[image_key(image)])]
                for image, group in zip(images, phrases)]

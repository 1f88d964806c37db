"""A scripted stand-in for `EchoGen` for app tests that must see boxes.

A random tiny Janus never writes a well-formed box, so nothing would be re-grounded or drawn;
this fake answers like a trained model would, with the real result types and metrics of
`model/`: it paints each layout box as a filled rectangle and "finds" object i of candidate
k shifted by `SHIFT * (i + k)` pixels (k = 0 is perfect), and phrases containing "missing"
are never found.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from model.layout import Layout, clean_phrase
from model.metrics import cycle_score
from model.results import CycleCandidate, CycleResult, Grounding, SamplingConfig

SHIFT = 16.0
FILL = [(220, 40, 40), (40, 90, 220), (40, 170, 70), (230, 200, 30)]


class ScriptedEchoGen:
    image_size = 128
    device = "cpu"
    sampling = SamplingConfig(cfg=3.5, temperature=0.8)  # not Janus-Pro's, so the UI must read it

    def __init__(self):
        self.calls: list[tuple] = []  # (method, args) for tests that check what reached the model

    def _paint(self, layout: Layout) -> Image.Image:
        side = self.image_size
        image = Image.new("RGB", (side, side), (245, 245, 245))
        draw = ImageDraw.Draw(image)
        sx, sy = side / layout.width, side / layout.height
        for i, (x1, y1, x2, y2) in enumerate(layout.boxes):
            draw.rectangle((x1 * sx, y1 * sy, x2 * sx, y2 * sy), fill=FILL[i % len(FILL)])
        return image

    def cycle(self, layout: Layout, num_images: int = 1, seed: int = 0,
              sampling: SamplingConfig | None = None, progress=None) -> CycleResult:
        self.calls.append(("cycle", layout, num_images, seed, sampling))
        candidates = []
        for k in range(num_images):
            found = []
            for i, obj in enumerate(layout.objects):
                d = SHIFT * (i + k)
                x1, y1, x2, y2 = obj.box
                box = None if "missing" in obj.phrase else (x1 + d, y1 + d, x2 + d, y2 + d)
                found.append(Grounding(obj.phrase, box, box is not None, ""))
            score = cycle_score(layout.boxes, [g.box for g in found], layout.width, layout.height,
                                [g.valid for g in found])
            candidates.append(CycleCandidate(self._paint(layout), seed + k, tuple(found), score))
            if progress:
                progress(k + 1, num_images)
        candidates.sort(key=lambda c: c.score.mean_iou, reverse=True)
        return CycleResult(layout, tuple(candidates))

    def ground(self, images, phrases, progress=None) -> list[list[Grounding]]:
        self.calls.append(("ground", [im.size for im in images], phrases))
        out = []
        for image, group in zip(images, phrases):
            w, h = image.size
            row = []
            for i, phrase in enumerate(group):
                phrase = clean_phrase(phrase)
                j = i % 4
                box = None if "missing" in phrase else (w * (0.1 + 0.2 * j), h * 0.2, w * (0.3 + 0.2 * j), h * 0.6)
                present = 0.1 if "absent" in phrase else None  # as a model taught `none` says it
                row.append(Grounding(phrase, box, box is not None, "", present))
            out.append(row)
        return out

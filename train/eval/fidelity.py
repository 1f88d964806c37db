"""Layout fidelity: does an image hold the layout's objects where the layout put them?

The independent detector (train.detector) reads each image; its boxes are scored against
the layout with pycocotools (AP, AP50, AP75; class = "<color> <shape>") and, per layout
object, LayoutSAM-style: presence (a detection with IoU >= 0.5), right color, right shape.
`evaluate_detector` scores clean renders (the detector's own accuracy, the ceiling for
generated images), optionally degraded (blur, noise, JPEG) to see how it holds up;
`evaluate_fidelity` scores one generated image per layout. Object scores are also broken
down by occlusion, by shape and by size (grounding's buckets: sqrt(w * h) of the layout box
as a share of the image side, small < 0.25 <= medium <= 0.4 < large), since a model's misses
gather there (small stars, mostly).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image
from tqdm import tqdm

from model.layout import parse_layout
from train.detector import DetectorConfig, detect
from train.eval.degrade import Degradation, degrade
from train.eval.metrics import (
    LARGE_SIDE, SMALL_SIDE, GroundTruth, Prediction, coco_ap, match_object, object_scores, object_scores_by,
    size_bucket,
)

UNOCCLUDED = 0.95  # objects with at least this visible share count as unoccluded


def _scaled(box: Sequence[float], sx: float, sy: float) -> tuple[float, float, float, float]:
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def detect_and_match(image: Image.Image, record: dict[str, Any], detector: DetectorConfig = DetectorConfig()):
    """The detector's findings in `image` and, per record object (box scaled to the image), its match."""
    sx, sy = image.width / record["width"], image.height / record["height"]
    detections = detect(image, detector)
    found = [(d.box, d.color, d.shape) for d in detections]
    matches = [match_object(_scaled(obj["box"], sx, sy), obj["color"], obj["shape"], found) for obj in record["objects"]]
    return detections, matches


def object_fidelity(image: Image.Image, record: dict[str, Any], detector: DetectorConfig = DetectorConfig()) -> float:
    """One image's score: mean over the record's objects of the matched detection's IoU if its
    color and shape are right, else 0."""
    _, matches = detect_and_match(image, record, detector)
    return sum(m.iou if m.color_ok and m.shape_ok else 0.0 for m in matches) / len(matches)


def score_images(images: Sequence[Image.Image], records: Sequence[dict[str, Any]],
                 detector: DetectorConfig = DetectorConfig(), progress: bool = False) -> dict[str, Any]:
    """Detector-based fidelity of images[i] to records[i] (record boxes are scaled to each image)."""
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images for {len(records)} records")
    truths, predictions, matches, visible, shapes, sizes = [], [], [], [], [], []
    for image_id, (image, record) in enumerate(tqdm(list(zip(images, records)), desc="detect", disable=not progress)):
        sx, sy = image.width / record["width"], image.height / record["height"]
        detections, image_matches = detect_and_match(image, record, detector)
        side = math.sqrt(record["width"] * record["height"])  # size buckets are shares of it
        predictions += [Prediction(image_id, d.box, d.name, d.score) for d in detections]
        matches += image_matches
        for obj in record["objects"]:
            truths.append(GroundTruth(image_id, _scaled(obj["box"], sx, sy), f"{obj['color']} {obj['shape']}"))
            visible.append(obj.get("visible", 1.0))
            shapes.append(obj["shape"])
            sizes.append(size_bucket(obj["box"], SMALL_SIDE * side, LARGE_SIDE * side))
    metrics: dict[str, Any] = {"images": len(images), **coco_ap(truths, predictions), **object_scores(matches)}
    clear = [m for m, v in zip(matches, visible) if v >= UNOCCLUDED]
    hidden = [m for m, v in zip(matches, visible) if v < UNOCCLUDED]
    metrics["by_occlusion"] = {
        f"visible>={UNOCCLUDED}": object_scores(clear),
        f"visible<{UNOCCLUDED}": object_scores(hidden),
    }
    metrics["by_shape"] = object_scores_by(matches, shapes)
    metrics["by_size"] = object_scores_by(matches, sizes)
    return metrics


def load_image(data_dir: str | Path, record: dict[str, Any]) -> Image.Image:
    """A record's clean render as RGB."""
    path = Path(data_dir) / record["image"]
    with Image.open(path) as image:
        return image.convert("RGB")


def evaluate_detector(data_dir: str | Path, records: Sequence[dict[str, Any]],
                      detector: DetectorConfig = DetectorConfig(), progress: bool = False,
                      degradation: Degradation = Degradation(),
                      round_trip: Callable[[list[Image.Image]], list[Image.Image]] | None = None) -> dict[str, Any]:
    """The detector's accuracy on the renders of `records`, clean or degraded (image i seeded i).

    `round_trip` (e.g. `EchoGen.round_trip`) maps the renders first: through a model's image
    tokenizer, the scores are the ceiling of what that model can draw."""
    images = [load_image(data_dir, r) for r in records]
    if degradation.active:
        images = [degrade(image, degradation, seed=i) for i, image in enumerate(images)]
    if round_trip is not None:
        images = round_trip(images)
    return score_images(images, records, detector, progress)


def evaluate_fidelity(model: Any, records: Sequence[dict[str, Any]], *, seed: int = 0, sampling: Any = None,
                      batch_size: int = 8, candidates: int = 1, compose: bool = False,
                      detector: DetectorConfig = DetectorConfig(), progress: bool = False) -> dict[str, Any]:
    """Generate one image per record's layout with `model` (EchoGen API) and score it.

    Batch b is generated with seed `seed + b * batch_size`, so results do not depend on how
    many batches ran before. `candidates` N > 1 draws N images per layout (seeds `s .. s+N-1`,
    the first being the one image drawn with N = 1) and keeps the one whose objects the model
    itself re-grounds best (`EchoGen.cycles`, the app's ranking), or with `compose` one image
    composed from the N object by object, each from the candidate the model re-grounds it best
    in (`EchoGen.compose`): the detector never picks."""
    if candidates < 1:
        raise ValueError(f"candidates must be at least 1, got {candidates}")
    layouts = [parse_layout(r) for r in records]
    images: list[Image.Image] = []
    kwargs = {} if sampling is None else {"sampling": sampling}
    starts = range(0, len(layouts), batch_size)
    for start in tqdm(starts, desc="generate", disable=not progress):
        batch = layouts[start:start + batch_size]
        if compose:
            drawn = model.compose(batch, num_images=candidates, seed=seed + start, **kwargs)
        elif candidates == 1:
            drawn = [pictures[0] for pictures in model.generate(batch, num_images=1, seed=seed + start, **kwargs).images]
        else:
            results = model.cycles(batch, num_images=candidates, seed=seed + start, **kwargs)
            drawn = [result.candidates[0].image for result in results]
        images += [picture.convert("RGB") for picture in drawn]
    metrics = score_images(images, records, detector, progress)
    metrics["image_size"] = getattr(model, "image_size", None)
    return metrics

"""The shipped EchoGen-Shapes model: it loads offline by default and grounds fresh scenes."""

import numpy as np
import pytest

from model.loading import BUILTIN_MODEL
from model.metrics import box_iou

# Scenes from a seed no split of the training data uses: images the model has never seen.
FRESH_SEED, SCENES = 20261123, 12
TARGET_ACC_AT_05 = 0.95  # issue 5's target for the shipped model
COLOR_PAIRS_DIFFER = 0.5  # a floor under the shipped model's share, set from its measurement


@pytest.fixture(scope="module")
def builtin():
    from model.echogen import EchoGen

    assert (BUILTIN_MODEL / "model.safetensors").is_file(), "assets/echogen-shapes is missing"
    return EchoGen.load(None)


@pytest.fixture(scope="module")
def fresh_scenes():
    from train.shapes.world import SceneConfig
    from train.synth import make_example

    return [make_example(FRESH_SEED, "test", index, SceneConfig(size=128))[1:] for index in range(SCENES)]


@pytest.fixture(scope="module")
def fresh_ious(builtin, fresh_scenes):
    """(model IoUs, IoUs of the best constant box) over the unoccluded objects of fresh scenes."""
    truths, found = [], []
    for record, image in fresh_scenes:
        objects = [o for o in record["objects"] if o.get("visible", 1.0) >= 0.95]
        truths += [o["box"] for o in objects]
        found += builtin.ground([image], [[o["phrase"] for o in objects]])[0]
    model = [box_iou(t, g.box) if g.valid else 0.0 for t, g in zip(truths, found)]
    mean_box = np.mean(np.array(truths, dtype=float), axis=0)  # an oracle constant: knows the answers' mean
    constant = [box_iou(t, mean_box) for t in truths]
    assert len(truths) >= 20
    return np.array(model), np.array(constant)


def test_builtin_is_the_default_and_128px(builtin):
    assert builtin.image_size == 128
    assert (BUILTIN_MODEL / "model.safetensors").stat().st_size <= 40 * 1024 * 1024


def test_builtin_grounding_uses_the_image(fresh_ious):
    """Beats the best constant box: the boxes depend on the image and phrase, not on priors alone."""
    model, constant = fresh_ious
    assert model.mean() > constant.mean(), f"mean IoU {model.mean():.3f} vs constant {constant.mean():.3f}"


def test_builtin_grounds_half_of_fresh_objects(fresh_ious):
    """A floor under the shipped model (PREVIEW 12 measures 0.800 here with 8 beams, PREVIEW 11 0.675, PREVIEW 10 0.625,
    PREVIEW 9 0.575, PREVIEW 8 0.55, PREVIEW 7 0.575, PREVIEW 6 0.50, PREVIEW 5 0.45, PREVIEW 4 greedy 0.375), below the target."""
    model, _ = fresh_ious
    assert float(np.mean(model >= 0.5)) >= 0.50


def test_builtin_boxes_go_to_the_phrases_object(builtin, fresh_scenes):
    """In scenes of several objects the box overlaps the asked-for object more than any other
    one far more often than a phrase-blind guess would (PREVIEW 12: 0.821 vs 0.24, PREVIEW 11: 0.692, PREVIEW 10: 0.667,
    PREVIEW 9: 0.615)."""
    own_best, chance = [], []
    for record, image in fresh_scenes:
        objects = record["objects"]
        asked = [o for o in objects if o.get("visible", 1.0) >= 0.95]
        if len(objects) < 2 or not asked:
            continue
        for target, answer in zip(asked, builtin.ground([image], [[o["phrase"] for o in asked]])[0]):
            ious = [box_iou(o["box"], answer.box) if answer.valid else 0.0 for o in objects]
            own_best.append(answer.valid and int(np.argmax(ious)) == objects.index(target))
            chance.append(1 / len(objects))
    assert len(own_best) >= 20
    assert np.mean(own_best) >= np.mean(chance) + 0.15, f"{np.mean(own_best):.2f} vs chance {np.mean(chance):.2f}"


def test_builtin_reads_the_color_word(builtin):
    """Two objects of one shape in two colors get two different boxes for their two names.
    PREVIEW 9 gave both names one box in 19 of 24 such fresh pairs (differ 0.21): it found the
    shape and ignored the color. PREVIEW 10's stage 1 trained on color pairs (see the model card):
    differ 0.67, both boxes right 0.33 (PREVIEW 9: 0.0); PREVIEW 11 (mixed with the plain split):
    differ 0.79, both right 0.71; PREVIEW 12 (3,000 more such steps): differ 0.83, both right 0.71."""
    from train.shapes.color_pairs import color_pair_objects
    from train.shapes.world import SceneConfig
    from train.synth import make_example

    differ = []
    for index in range(SCENES, SCENES + 60):
        record, image = make_example(FRESH_SEED, "test", index, SceneConfig(size=128))[1:]
        pair = color_pair_objects(record)
        if not pair:
            continue
        first = record["objects"][pair[0]]
        second = next(record["objects"][k] for k in pair
                      if record["objects"][k]["shape"] == first["shape"] and record["objects"][k]["color"] != first["color"])
        boxes = [g.box for g in builtin.ground([image], [[f"{o['color']} {o['shape']}" for o in (first, second)]])[0]]
        differ.append(None not in boxes and box_iou(*boxes) < 0.5)
    assert len(differ) >= 20
    assert np.mean(differ) >= COLOR_PAIRS_DIFFER, f"the names of {np.mean(differ):.2f} of the pairs got different boxes"


@pytest.mark.xfail(strict=True, reason="issue 5: the shipped model is not yet trained to the grounding target")
def test_builtin_grounds_fresh_scenes_to_the_target(fresh_ious):
    model, _ = fresh_ious
    assert float(np.mean(model >= 0.5)) >= TARGET_ACC_AT_05

"""The shipped EchoGen-Shapes model: it loads offline by default, grounds fresh scenes and draws their layouts.

The numbers these tests bound are printed by `python -m train.eval fresh` (train.eval.fresh)."""

import numpy as np
import pytest

from model.loading import BUILTIN_MODEL
from train.eval import fresh

FRESH_ACC_AT_05 = 0.95  # issue 5's target (the shipped PREVIEW 25, as PREVIEWs 24-22: 0.950; PREVIEW 21: 0.975)
COLOR_PAIRS_DIFFER = 0.5  # a floor under the shipped model's share, set from its measurement
DRAWN_PRESENCE, DRAWN_COLOR = 0.85, 0.85  # floors under the drawing of fresh layouts (measured: below)
ROUND_TRIP_PRESENCE, ROUND_TRIP_SHAPE = 0.9, 0.75  # floors under the image tokenizer's round trips (measured: below)


@pytest.fixture(scope="module")
def builtin():
    from model.echogen import EchoGen

    assert (BUILTIN_MODEL / "model.safetensors").is_file(), "assets/echogen-shapes is missing"
    return EchoGen.load(None)


@pytest.fixture(scope="module")
def fresh_scenes():
    """Scenes from a seed no split of the training data uses: images the model has never seen."""
    return fresh.fresh_scenes(0, fresh.SCENES)


@pytest.fixture(scope="module")
def fresh_ious(builtin, fresh_scenes):
    """(model IoUs, IoUs of the best constant box) over the unoccluded objects of fresh scenes."""
    model, constant = fresh.grounding_ious(builtin, fresh_scenes)
    assert len(model) >= 20
    return model, constant


def test_builtin_is_the_default_and_128px(builtin):
    assert builtin.image_size == 128
    assert (BUILTIN_MODEL / "model.safetensors").stat().st_size <= 40 * 1024 * 1024


def test_builtin_grounding_uses_the_image(fresh_ious):
    """Beats the best constant box: the boxes depend on the image and phrase, not on priors alone."""
    model, constant = fresh_ious
    assert model.mean() > constant.mean(), f"mean IoU {model.mean():.3f} vs constant {constant.mean():.3f}"


def test_builtin_grounds_half_of_fresh_objects(fresh_ious):
    """A floor under the shipped model, below the floor of the last test (PREVIEWs 24, 23 and 22
    measure 0.950 here with 8 beams, PREVIEW 21 0.975, PREVIEW 20 0.950, PREVIEW 19 0.975, PREVIEW 18 0.925, PREVIEW 17 0.950, PREVIEW 16 0.950, PREVIEW 15 0.975, PREVIEWs 13 and 14 0.950, PREVIEW 12 0.800, PREVIEW 11 0.675, PREVIEW 10 0.625, PREVIEW 9 0.575,
    PREVIEW 8 0.55, PREVIEW 7 0.575, PREVIEW 6 0.50, PREVIEW 5 0.45, PREVIEW 4 greedy 0.375)."""
    model, _ = fresh_ious
    assert float(np.mean(model >= 0.5)) >= 0.50


def test_builtin_boxes_go_to_the_phrases_object(builtin, fresh_scenes):
    """In scenes of several objects the box overlaps the asked-for object more than any other
    one far more often than a phrase-blind guess would (PREVIEWs 22, 23 and 24: 0.974 vs 0.24, PREVIEW 21: 0.974, PREVIEW 20: 0.974, PREVIEW 19: 0.974, PREVIEW 18: 0.974, PREVIEW 17: 0.974, PREVIEW 16: 0.949, PREVIEW 15: 0.974, PREVIEWs 13 and 14: 0.949, PREVIEW 12:
    0.821, PREVIEW 11: 0.692, PREVIEW 10: 0.667, PREVIEW 9: 0.615)."""
    own_best, chance = fresh.own_object_hits(builtin, fresh_scenes)
    assert len(own_best) >= 20
    assert own_best.mean() >= chance.mean() + 0.15, f"{own_best.mean():.2f} vs chance {chance.mean():.2f}"


def test_builtin_reads_the_color_word(builtin):
    """Two objects of one shape in two colors get two different boxes for their two names.
    PREVIEW 9 gave both names one box in 19 of 24 such fresh pairs (differ 0.21): it found the
    shape and ignored the color. PREVIEW 10's stage 1 trained on color pairs (see assets/echogen-shapes/LAB_NOTES.md):
    differ 0.67, both boxes right 0.33 (PREVIEW 9: 0.0); PREVIEW 11 (mixed with the plain split):
    differ 0.79, both right 0.71; PREVIEW 12 (3,000 more such steps): differ 0.83, both right
    0.71; PREVIEWs 13 and 14 (16x16): differ 1.00, both right 0.79; PREVIEW 15 1.00, 0.75; PREVIEW 16
    1.00, 0.79; PREVIEW 17 1.00, 0.79; PREVIEW 18 1.00, 0.75; PREVIEW 19 0.96, 0.83; PREVIEW 20
    1.00, 0.88; PREVIEW 21 0.96, 0.79 (its stage 1 alone: 1.00, 0.83); PREVIEWs 22, 23 and 24 0.96, 0.79 (its stage 1 alone
    the same)."""
    differ, _ = fresh.color_pair_answers(builtin, fresh.fresh_scenes(fresh.SCENES, fresh.PAIR_SCENES))
    assert len(differ) >= 20
    assert differ.mean() >= COLOR_PAIRS_DIFFER, f"the names of {differ.mean():.2f} of the pairs got different boxes"


def test_builtin_grounds_fresh_objects_at_the_target(fresh_ious):
    """Issue 5's target, Acc@0.5 >= 0.95, on these 40 fresh objects: PREVIEWs 24, 23 and 22 ground 38
    (0.950, exactly the target; PREVIEW 21: 0.975, PREVIEW 20: 0.950, PREVIEW 19: 0.975, PREVIEW 18: 0.925, PREVIEWs 13, 14, 16 and 17:
    0.950, PREVIEW 15: 0.975, PREVIEW 12: 0.800); on the test split 0.976."""
    model, _ = fresh_ious
    assert float(np.mean(model >= 0.5)) >= FRESH_ACC_AT_05


def test_builtin_draws_fresh_layouts(builtin, fresh_scenes):
    """The other task: the layouts of the fresh scenes drawn at the model's own sampling defaults
    and read by the independent detector (train.eval.fidelity). On these 47 objects PREVIEW 25
    draws presence 0.936, color 0.915 (AP 0.655, AP50 0.844), PREVIEW 24 0.915, 0.915 (AP 0.550,
    AP50 0.770), PREVIEW 23 0.979, 0.957 (AP 0.603, AP50 0.785) and PREVIEW 22 0.957, 0.936; a model
    that ignores its layout puts few objects of the right color in the boxes."""
    from train.eval.fidelity import evaluate_fidelity

    scores = evaluate_fidelity(builtin, [record for record, _ in fresh_scenes], seed=0)
    assert scores["presence"] >= DRAWN_PRESENCE, scores
    assert scores["color"] >= DRAWN_COLOR, scores


def test_builtin_image_tokenizer_keeps_fresh_scenes(builtin, fresh_scenes):
    """The ceiling of any drawing: the fresh scenes through the model's own VQ (encode, decode),
    read by the detector. PREVIEW 25 (the VQ of PREVIEWs 23 and 24) keeps presence 0.957, color
    0.957, shape 0.830 of these 47 objects (clean renders: 0.979 each); the shapes it loses are
    mostly small stars."""
    from train.eval.fidelity import score_images

    records, images = zip(*fresh_scenes)
    trips = builtin.round_trip(list(images))
    assert [t.size for t in trips] == [(builtin.image_size,) * 2] * len(images)
    scores = score_images(trips, list(records))
    assert scores["presence"] >= ROUND_TRIP_PRESENCE, scores
    assert scores["shape"] >= ROUND_TRIP_SHAPE, scores

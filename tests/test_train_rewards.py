"""Cycle RL rewards on literal boxes."""

import pytest

from train.rewards import REWARDS, cycle_reward, cycle_rewards, detector_rewards, object_reward


def test_perfect_grounding_gets_the_full_reward():
    assert cycle_reward([(0, 0, 10, 10)], [(0, 0, 10, 10)], 20, 20) == pytest.approx(2.0)
    assert cycle_reward([(0, 0, 10, 10)], [(0, 0, 10, 10)], 20, 20, w_iou=1.0, w_l1=0.0) == pytest.approx(1.0)


def test_half_overlap():
    # IoU = 50 / 150; L1 = (5/20 + 0 + 5/20 + 0) / 4 = 0.125
    reward = cycle_reward([(0, 0, 10, 10)], [(5, 0, 15, 10)], 20, 20)
    assert reward == pytest.approx(1 / 3 + 0.875)
    assert object_reward(1 / 3, 0.125, w_iou=2.0, w_l1=0.5) == pytest.approx(2 / 3 + 0.4375)


def test_a_missing_answer_scores_zero_and_objects_are_averaged():
    assert cycle_reward([(0, 0, 10, 10)], [None], 20, 20) == 0.0
    both = cycle_reward([(0, 0, 10, 10), (10, 10, 20, 20)], [(0, 0, 10, 10), None], 20, 20)
    assert both == pytest.approx(1.0)  # (2 + 0) / 2


def test_validity_term():
    drawn, grounded = [(0, 0, 10, 10), (10, 10, 20, 20)], [(0, 0, 10, 10), (10, 10, 20, 20)]
    plain = cycle_reward(drawn, grounded, 20, 20, valid=[True, False])
    assert plain == pytest.approx(2.0)
    assert cycle_reward(drawn, grounded, 20, 20, valid=[True, False], w_valid=1.0) == pytest.approx(2.5)


def test_far_off_boxes_do_not_go_negative():
    assert cycle_reward([(0, 0, 1, 1)], [(0, 0, 100, 100)], 10, 10) >= 0.0


def test_batch_form_and_registry():
    out = REWARDS["cycle"]([[(0, 0, 10, 10)], [(0, 0, 10, 10)]], [[(0, 0, 10, 10)], [None]],
                           [[True], [False]], [(20, 20), (20, 20)], w_iou=1.0, w_l1=1.0)
    assert out == pytest.approx([2.0, 0.0])
    assert cycle_rewards is REWARDS["cycle"]


def test_mismatched_boxes_raise():
    with pytest.raises(ValueError):
        cycle_reward([(0, 0, 1, 1)], [], 10, 10)


def _rendered_scene(seed: int = 3):
    import numpy as np

    from train.shapes.render import render
    from train.shapes.world import sample_scene

    scene = sample_scene(np.random.default_rng(seed))
    return render(scene), [o.phrase for o in scene.objects], [o.box for o in scene.objects]


def test_detector_reward_scores_a_clean_render_high_and_a_wrong_attribute_zero():
    image, phrases, boxes = _rendered_scene()
    [clean] = REWARDS["detector"]([image], [phrases], [boxes])
    assert clean > 0.8  # the detector reads its own renders almost perfectly
    recolored = [("red " if p.startswith("pink") else "pink ") + p.split(" ", 1)[1] for p in phrases]
    [wrong_color] = detector_rewards([image], [recolored], [boxes])
    assert wrong_color == 0.0
    [one_wrong] = detector_rewards([image], [recolored[:1] + phrases[1:]], [boxes])
    assert one_wrong < clean and (len(phrases) == 1 or one_wrong > 0)


def test_detector_reward_refuses_phrases_outside_shapes_world():
    image, phrases, boxes = _rendered_scene()
    with pytest.raises(ValueError, match="Shapes World"):
        detector_rewards([image], [["a teal cat"] + phrases[1:]], [boxes])
    with pytest.raises(ValueError):
        detector_rewards([image], [phrases], [boxes[:-1] if len(boxes) > 1 else []])

import pytest

from model.metrics import box_iou, box_l1, cycle_score


def test_iou_literal_cases():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(4 / 100)
    assert box_iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0  # no area


def test_l1_normalized_by_image_size():
    assert box_l1((0, 0, 10, 10), (0, 0, 10, 10), 100, 50) == 0.0
    # x errors of 10 on a 100-wide image, y errors of 5 on a 50-high image: all 0.1
    assert box_l1((0, 0, 10, 10), (10, 5, 20, 15), 100, 50) == pytest.approx(0.1)
    assert box_l1((0, 0, 0, 0), (100, 50, 100, 50), 100, 50) == pytest.approx(1.0)


def test_cycle_score_aggregates_and_penalizes_missing_answers():
    score = cycle_score([(0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10)],
                        [(0, 0, 10, 10), (5, 0, 15, 10), None], 100, 100, valid=[True, True, False])
    ious = [o.iou for o in score.objects]
    assert ious == pytest.approx([1.0, 1 / 3, 0.0])
    assert score.mean_iou == pytest.approx((1 + 1 / 3) / 3)
    assert score.pass_rate == pytest.approx(1 / 3)
    assert score.objects[2].l1 == 1.0 and not score.objects[2].passed
    assert score.mean_l1 == pytest.approx((0 + 0.025 + 1) / 3)


def test_recovered_but_malformed_answer_never_passes():
    score = cycle_score([(0, 0, 10, 10)], [(0, 0, 10, 10)], 10, 10, valid=[False])
    assert score.objects[0].iou == 1.0 and not score.objects[0].passed


def test_cycle_score_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        cycle_score([(0, 0, 1, 1)], [], 10, 10)

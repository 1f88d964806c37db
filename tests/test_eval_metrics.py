"""Metric functions on hand-computed literal cases: IoU, Acc@t, mAcc, size buckets, AP, Ref-L4."""

from __future__ import annotations

import pytest

from model.metrics import ObjectScore, box_iou, box_l1
from train.eval.cycle import summarize
from train.eval.grounding import expression_kind, grounding_scores
from train.eval.metrics import (
    GroundTruth, ObjectMatch, Prediction, acc_at, accuracy_by_size, accuracy_summary, coco_ap, macc, match_object,
    object_scores, object_scores_by, size_bucket,
)
from train.eval.refl4 import ScoringError, score_refl4
from train.eval.report import flatten, markdown_table


def test_iou_and_l1_literals():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 5)) == 0.5
    assert box_iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_l1((0, 0, 10, 10), (10, 0, 20, 10), 100, 50) == pytest.approx((0.1 + 0 + 0.1 + 0) / 4)


def test_acc_at_counts_strictly_greater_ious():
    ious = [0.5, 0.75, 0.9, 1.0]
    assert acc_at(ious, 0.5) == 0.75  # 0.5 is not > 0.5 (Ref-L4)
    assert acc_at(ious, 0.75) == 0.5
    assert acc_at(ious, 0.9) == 0.25
    assert acc_at([], 0.5) == 0.0


def test_macc_is_the_mean_over_ten_thresholds():
    # IoU 1.0 passes all 10 thresholds, 0.6 passes 0.50 and 0.55, 0.0 none: (10 + 2 + 0) / 30
    assert macc([1.0, 0.6, 0.0]) == pytest.approx(0.4)
    assert macc([0.97]) == 1.0
    assert macc([0.95]) == pytest.approx(0.9)  # not > 0.95


def test_accuracy_summary_keys_and_values():
    summary = accuracy_summary([1.0, 0.8, 0.3])  # 0.8 passes 0.50 .. 0.75: 6 thresholds
    assert summary == {"n": 3, "Acc@0.5": pytest.approx(2 / 3), "Acc@0.75": pytest.approx(2 / 3),
                       "Acc@0.9": pytest.approx(1 / 3), "mAcc": pytest.approx((10 + 6) / 30)}


def test_size_buckets_follow_ref_l4():
    assert size_bucket((0, 0, 127, 127), 128, 256) == "small"
    assert size_bucket((0, 0, 128, 128), 128, 256) == "medium"
    assert size_bucket((0, 0, 256, 256), 128, 256) == "medium"
    assert size_bucket((0, 0, 257, 257), 128, 256) == "large"
    by_size = accuracy_by_size([1.0, 0.0, 0.6], ["small", "small", "large"])
    assert set(by_size) == {"small", "large"}
    assert by_size["small"]["Acc@0.5"] == 0.5 and by_size["large"]["Acc@0.75"] == 0.0


def test_object_scores_by_groups_literal_matches():
    hit, wrong_shape = ObjectMatch(0.9, True, True, True), ObjectMatch(0.7, True, True, False)
    miss = ObjectMatch(0.1, False, False, False)
    by = object_scores_by([hit, wrong_shape, miss, hit], ["star", "star", "circle", "circle"])
    assert list(by) == ["circle", "star"]
    assert by["star"] == {"objects": 2, "presence": 1.0, "color": 1.0, "shape": 0.5, "mean_iou": pytest.approx(0.8)}
    assert by["circle"]["presence"] == 0.5 and by["circle"]["shape"] == 0.5
    with pytest.raises(ValueError):
        object_scores_by([hit], ["star", "circle"])


def test_coco_ap_perfect_and_partial_overlap():
    truth = [GroundTruth(0, (0, 0, 10, 10), "red circle")]
    assert coco_ap(truth, [Prediction(0, (0, 0, 10, 10), "red circle", 0.9)]) == pytest.approx(
        {"AP": 1.0, "AP50": 1.0, "AP75": 1.0})
    # IoU 0.72 matches at thresholds 0.50 .. 0.70: 5 of 10
    partial = coco_ap(truth, [Prediction(0, (0, 0, 10, 7.2), "red circle", 0.9)])
    assert partial == pytest.approx({"AP": 0.5, "AP50": 1.0, "AP75": 0.0})


def test_coco_ap_wrong_class_missing_and_ranked_false_positive():
    truth = [GroundTruth(0, (0, 0, 10, 10), "red circle")]
    assert coco_ap(truth, [Prediction(0, (0, 0, 10, 10), "blue circle", 0.9)])["AP"] == 0.0
    assert coco_ap(truth, []) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    # a confident false positive ahead of the true positive: precision 1/2 at full recall
    ranked = [Prediction(0, (50, 50, 60, 60), "red circle", 0.9), Prediction(0, (0, 0, 10, 10), "red circle", 0.8)]
    assert coco_ap(truth, ranked) == pytest.approx({"AP": 0.5, "AP50": 0.5, "AP75": 0.5})
    # two images, one found: recall 1/2
    two = truth + [GroundTruth(1, (0, 0, 10, 10), "red circle")]
    assert coco_ap(two, [Prediction(0, (0, 0, 10, 10), "red circle", 0.9)])["AP50"] == pytest.approx(0.5, abs=0.01)


def test_match_object_presence_color_and_shape():
    detections = [((0, 0, 10, 10), "red", "square"), ((0, 0, 10, 6), "blue", "circle")]
    match = match_object((0, 0, 10, 10), "red", "circle", detections)
    assert (match.iou, match.present, match.color_ok, match.shape_ok) == (1.0, True, True, False)
    missed = match_object((50, 50, 60, 60), "red", "circle", detections)
    assert (missed.present, missed.color_ok) == (False, False)
    scores = object_scores([match, missed])
    assert scores == {"objects": 2, "presence": 0.5, "color": 0.5, "shape": 0.0, "mean_iou": 0.5}


def test_refl4_scoring_literals_and_formats():
    annotations = [
        {"id": "a", "bbox": [0, 0, 10, 10], "ori_category_id": "cat"},
        {"id": "b", "bbox": [0, 0, 10, 10], "ori_category_id": "cat"},
        {"id": "c", "bbox": [0, 0, 300, 300], "ori_category_id": "dog"},
    ]
    predictions = [
        {"id": "a", "pred_bbox": [0, 0, 10, 10], "format": "xyxy"},  # IoU 1
        {"id": "b", "pred_bbox": [0, 0, 10, 6], "format": "xywh"},  # IoU 0.6
        {"id": "c", "pred_bbox": [400, 400, 10, 10], "format": "xywh"},  # IoU 0
        {"id": "extra", "pred_bbox": [0, 0, 1, 1], "format": "xyxy"},  # ignored
    ]
    metrics = score_refl4(predictions, annotations)
    assert metrics["n"] == 3
    assert metrics["Acc@0.5"] == pytest.approx(2 / 3) and metrics["Acc@0.75"] == pytest.approx(1 / 3)
    assert metrics["mAcc"] == pytest.approx(0.4)
    assert metrics["by_size"]["small"]["n"] == 2 and metrics["by_size"]["large"]["Acc@0.5"] == 0.0
    # per class: cat Acc@0.5 = 1, dog 0; cat mAcc = 12/20, dog 0
    assert metrics["class_avg"] == pytest.approx({"classes": 2, "Acc@0.5": 0.5, "mAcc": 0.3})
    merged = score_refl4(predictions, annotations, category_map={"dog": "cat"})
    assert merged["class_avg"]["classes"] == 1


@pytest.mark.parametrize("predictions, message", [
    ([{"id": "a", "pred_bbox": [0, 0, 1, 1]}, {"id": "a", "pred_bbox": [0, 0, 1, 1]}], "duplicate"),
    ([], "no prediction for annotation id a"),
    ([{"id": "a", "pred_bbox": [0, 0, 1, 1], "format": "cxcywh"}], "format"),
    ([{"id": "a", "pred_bbox": [0, 0, 1]}], "four numbers"),
])
def test_refl4_scoring_rejects_bad_predictions(predictions, message):
    with pytest.raises(ScoringError, match=message):
        score_refl4(predictions, [{"id": "a", "bbox": [0, 0, 5, 5]}])


def test_grounding_scores_split_by_size_and_kind():
    metrics = grounding_scores([1.0, 0.0, 0.8], ["small", "large", "small"], ["name", "referring", "name"],
                               [True, False, True])
    assert metrics["Acc@0.5"] == pytest.approx(2 / 3) and metrics["valid"] == pytest.approx(2 / 3)
    assert metrics["by_size"]["small"]["Acc@0.5"] == 1.0
    assert metrics["by_kind"]["referring"]["mAcc"] == 0.0
    assert "by_color_pair" not in metrics
    paired = grounding_scores([1.0, 0.0, 0.8], ["small"] * 3, ["name"] * 3, [True] * 3, [True, True, False])
    assert paired["by_color_pair"]["color pair"]["Acc@0.5"] == 0.5
    assert paired["by_color_pair"]["other"]["Acc@0.5"] == 1.0
    record = {"objects": [{"color": "red", "shape": "circle"}]}
    assert expression_kind("red circle", record) == "name"
    assert expression_kind("leftmost red circle", record) == "referring"


def test_cycle_summary_literals():
    objects = [ObjectScore(1.0, 0.0, True), ObjectScore(0.6, 0.1, False), ObjectScore(0.0, 1.0, False)]
    summary = summarize(objects, layouts=2)
    assert summary == pytest.approx({"layouts": 2, "objects": 3, "mean_iou": 1.6 / 3, "mean_l1": 1.1 / 3,
                                     "pass_rate": 1 / 3, "valid": 1 / 3})
    assert summarize([], 0)["mean_l1"] == 1.0


def test_markdown_table_flattens_nested_metrics():
    metrics = {"AP": 0.5, "by_size": {"small": {"n": 2}}}
    assert flatten(metrics) == [("AP", 0.5), ("by_size/small/n", 2)]
    assert markdown_table("metric", metrics).splitlines() == [
        "| metric | value |", "|---|---|", "| AP | 0.5000 |", "| by_size/small/n | 2 |"]

"""The accuracy metrics: COCO mAP through pycocotools (agreement and labels) and the deployed match."""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

from edge.calibrate.evaluate import OutputError, coco_map, deployed_match, truth_from_detections
from edge.postprocess.types import Detections

LABELS = ["person", "car", "dog"]


def _dets(boxes: List[List[float]], classes: List[int], scores: List[float]) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.array(classes, np.int32))


def _frames() -> List[Detections]:
    return [
        _dets([[10, 10, 50, 90], [100, 20, 140, 100], [200, 50, 260, 120]], [0, 0, 1], [0.9, 0.8, 0.7]),
        _dets([[30, 30, 80, 110], [150, 60, 210, 130]], [0, 1], [0.95, 0.6]),
    ]


def test_identical_detections_agree_exactly() -> None:
    ref = _frames()
    acc = coco_map(truth_from_detections(ref), ref, LABELS)
    assert acc.map == pytest.approx(1.0) and acc.map50 == pytest.approx(1.0)
    assert acc.per_class == {"person": pytest.approx(1.0), "car": pytest.approx(1.0)}
    assert acc.counts == {"person": 3, "car": 2}
    m = deployed_match(ref, ref)
    assert (m.recall, m.precision, m.reference, m.published) == (1.0, 1.0, 5, 5)


def test_boxes_at_iou_072_pass_half_of_the_coco_thresholds() -> None:
    ref = [_dets([[0, 0, 100, 100]], [0], [0.9])]
    # Same height, width 72: IoU = 0.72, so thresholds 0.50..0.70 pass (5 of 10) and 0.75..0.95 fail.
    moved = [_dets([[0, 0, 72, 100]], [0], [0.9])]
    acc = coco_map(truth_from_detections(ref), moved, LABELS)
    assert acc.map50 == pytest.approx(1.0)
    assert acc.map == pytest.approx(0.5)


def test_missing_half_the_objects_gives_the_101_point_value() -> None:
    ref = [_dets([[i * 50, 0, i * 50 + 40, 40] for i in range(4)], [0] * 4, [0.9] * 4)]
    half = [ref[0].select(np.array([0, 1]))]
    acc = coco_map(truth_from_detections(ref), half, LABELS)
    assert acc.map == pytest.approx(51 / 101)  # precision 1 up to recall 0.5: 51 of the 101 recall points
    m = deployed_match(ref, half)
    assert m.recall == pytest.approx(0.5) and m.precision == pytest.approx(1.0)


def test_a_confident_false_positive_costs_n_over_n_plus_1() -> None:
    ref = [_dets([[i * 50, 0, i * 50 + 40, 40] for i in range(4)], [0] * 4, [0.8] * 4)]
    extra = [_dets([[i * 50, 0, i * 50 + 40, 40] for i in range(4)] + [[300, 300, 340, 340]],
                   [0] * 5, [0.8] * 4 + [0.99])]
    acc = coco_map(truth_from_detections(ref), extra, LABELS)
    assert acc.map == pytest.approx(4 / 5, abs=1e-6)
    low = [_dets([[i * 50, 0, i * 50 + 40, 40] for i in range(4)] + [[300, 300, 340, 340]],
                 [0] * 5, [0.8] * 4 + [0.1])]
    assert coco_map(truth_from_detections(ref), low, LABELS).map == pytest.approx(1.0)  # ranked last: free
    m = deployed_match(ref, extra)
    assert m.recall == 1.0 and m.precision == pytest.approx(0.8)


def test_wrong_class_is_a_miss_and_rare_classes_stay_out_of_the_mean() -> None:
    ref = [_dets([[0, 0, 40, 40], [100, 0, 140, 40], [0, 100, 40, 140]], [0, 0, 2], [0.9, 0.9, 0.9])]
    swapped = [_dets([[0, 0, 40, 40], [100, 0, 140, 40], [0, 100, 40, 140]], [0, 0, 1], [0.9, 0.9, 0.9])]
    acc = coco_map(truth_from_detections(ref), swapped, LABELS)
    assert acc.per_class["dog"] == 0.0 and acc.per_class["person"] == pytest.approx(1.0)
    assert acc.map == pytest.approx(0.5)
    rare = coco_map(truth_from_detections(ref), swapped, LABELS, min_objects=2)
    assert rare.map == pytest.approx(1.0) and rare.left_out == ["dog"]
    assert deployed_match(ref, swapped).recall == pytest.approx(2 / 3)


def test_class_filter_and_empty_reference() -> None:
    ref = _frames()
    only_cars = coco_map(truth_from_detections(ref), ref, LABELS, classes=[1])
    assert list(only_cars.per_class) == ["car"] and only_cars.objects == 2
    none = coco_map(truth_from_detections([Detections.empty()]), [Detections.empty()], LABELS)
    assert none.map is None and none.objects == 0


def test_output_error_keeps_the_largest_difference_per_output() -> None:
    err = OutputError()
    err.update({"a": np.zeros(3), "b": np.ones(2)}, {"a": np.array([0.0, 0.5, -0.2]), "b": np.ones(2)})
    err.update({"a": np.zeros(3), "b": np.ones(2)}, {"a": np.array([0.1, 0.0, 0.0]), "b": np.full(2, 1.25)})
    assert err.max == {"a": pytest.approx(0.5), "b": pytest.approx(0.25)}
    assert err.worst == pytest.approx(0.5)

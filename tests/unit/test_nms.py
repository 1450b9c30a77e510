"""NMS against a brute-force reference, class-aware vs class-agnostic, the cap."""

from __future__ import annotations

from typing import List

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge.postprocess.nms import batched_nms, iou_matrix, nms


def iou_ref(a: List[float], b: List[float]) -> float:
    """IoU of two xyxy boxes, written out longhand in float64."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def nms_ref(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: float, agnostic: bool) -> List[int]:
    """Textbook greedy NMS: visit by descending score (ties: lower index first), keep a box
    unless a kept box of the same class (any class if agnostic) overlaps it by more than thr."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept: List[int] = []
    for i in order:
        if all(
            iou_ref(boxes[i].tolist(), boxes[k].tolist()) <= thr
            for k in kept
            if agnostic or classes[k] == classes[i]
        ):
            kept.append(i)
    return kept


@st.composite
def box_sets(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(0, 25))
    coords = st.integers(-20, 120)
    boxes = []
    for _ in range(n):
        x1, y1 = draw(coords), draw(coords)
        w, h = draw(st.integers(0, 60)), draw(st.integers(0, 60))  # zero-area boxes included
        boxes.append([x1, y1, x1 + w, y1 + h])
    scores = draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n))  # ties included
    classes = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return (
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32) / 1000,
        np.array(classes, np.int32),
    )


def _far_from_threshold(boxes: np.ndarray, thr: float) -> bool:
    """No pair's IoU sits within rounding distance of the threshold (float32 vs float64 could disagree)."""
    iou = iou_matrix(boxes.astype(np.float64), boxes.astype(np.float64))
    return bool(np.all(np.abs(iou - thr) > 1e-5))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=box_sets(), thr=st.sampled_from([0.3, 0.45, 0.5, 0.7]), agnostic=st.booleans())
def test_batched_nms_matches_brute_force(data: tuple, thr: float, agnostic: bool) -> None:
    boxes, scores, classes = data
    assume(_far_from_threshold(boxes, thr))
    keep = batched_nms(boxes, scores, classes, thr, class_agnostic=agnostic)
    assert keep.dtype == np.int64
    assert keep.tolist() == nms_ref(boxes, scores, classes, thr, agnostic)


@settings(max_examples=60, deadline=None)
@given(data=box_sets(), cap=st.integers(1, 5))
def test_cap_keeps_the_first_of_the_uncapped_result(data: tuple, cap: int) -> None:
    boxes, scores, classes = data
    assume(_far_from_threshold(boxes, 0.5))
    full = batched_nms(boxes, scores, classes, 0.5)
    capped = batched_nms(boxes, scores, classes, 0.5, max_keep=cap)
    assert capped.tolist() == full.tolist()[:cap]


@settings(max_examples=60, deadline=None)
@given(data=box_sets())
def test_iou_matrix_matches_longhand(data: tuple) -> None:
    boxes = data[0]
    m = iou_matrix(boxes, boxes)
    for i in range(len(boxes)):
        for j in range(len(boxes)):
            assert m[i, j] == pytest.approx(iou_ref(boxes[i].tolist(), boxes[j].tolist()), abs=1e-6)


def test_class_aware_keeps_overlapping_boxes_of_other_classes() -> None:
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52], [11, 11, 51, 51]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 1, 0], np.int32)
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, classes, 0.5, class_agnostic=True).tolist() == [0]


def test_class_aware_with_large_coordinates_and_many_classes() -> None:
    """The per-class offset trick must not merge or lose boxes at 4K coordinates and class 79."""
    boxes = np.array([[3000, 2000, 3800, 2100], [3001, 2001, 3801, 2101], [3000, 2000, 3800, 2100]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([79, 79, 78], np.int32)
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 2]


def test_negative_coordinates_do_not_mix_classes() -> None:
    boxes = np.array([[-50, -50, 10, 10], [-49, -49, 11, 11]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert batched_nms(boxes, scores, np.array([0, 1]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, np.array([1, 1]), 0.5).tolist() == [0]


def test_iou_exactly_at_threshold_is_kept() -> None:
    # Two 10x10 boxes overlapping by 10x5: IoU = 50 / 150 = 1/3; suppressed only above the threshold.
    boxes = np.array([[0, 0, 10, 10], [0, 5, 10, 15]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.34).tolist() == [0, 1]
    assert nms(boxes, scores, 0.33).tolist() == [0]


def test_empty_input() -> None:
    out = batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), 0.5)
    assert out.shape == (0,) and out.dtype == np.int64

"""The NanoDet/GFL decoder on the real model's outputs for real video frames.

Checked three ways: against a straightforward reference decode written here from the
model's README (loops, no vectorisation tricks), against the first (pre-optimisation)
vectorised implementation kept below, and on what the video shows (pedestrians).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import pytest

from edge.config.labels import COCO_LABELS
from edge.postprocess.decoder import Candidates
from edge.postprocess.detect import make_decoder
from edge.postprocess.nanodet import NanoDetDecoder
from edge.postprocess.pipeline import Filters, PostProcessor
from edge.preprocess.base import InputGeometry
from edge.preprocess.cpu import CpuPreprocessor
from edge.preprocess.geometry import Placement

SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
PERSON = COCO_LABELS.index("person")
FRAMES = range(0, 40, 5)  # 8 of the fixture's 40 frames
Run = Tuple[Dict[str, np.ndarray], Placement, np.ndarray]  # outputs, placement, frame


@pytest.fixture(scope="module")
def runs(assets: Any, video_frames: List[np.ndarray]) -> List[Run]:
    """(outputs, placement, frame) of the real model, preprocessed as its README says."""
    from edge.infer.onnxruntime import OnnxRuntimeBackend

    geometry = InputGeometry(
        SIZE, SIZE, 1, "bgr", "letterbox", True, 114, (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)
    )
    pre = CpuPreprocessor(geometry)
    out = []
    with OnnxRuntimeBackend(assets.model, threads=2) as backend:
        for i in FRAMES:
            frame = video_frames[i]
            batch, placements = pre([frame])
            out.append((backend.infer(batch), placements[0], frame))
    return out


@pytest.fixture(scope="module")
def decoder(runs: List[Run]) -> NanoDetDecoder:
    from edge.infer.base import TensorSpec

    outputs = runs[0][0]
    specs = [TensorSpec(name, tuple(a.shape)) for name, a in outputs.items()]
    dec = make_decoder(specs, SIZE, SIZE, len(COCO_LABELS))
    assert isinstance(dec, NanoDetDecoder)
    return dec


# --------------------------------------------------------------------------- references
def reference_decode(outputs: Dict[str, np.ndarray], thr: np.ndarray) -> List[Tuple[int, int, float, List[float]]]:
    """README decoding, cell by cell: (cell index, class, score, box) of every passing score."""
    found = []
    base = 0
    for level, stride in enumerate(STRIDES):
        grid = SIZE // stride
        cls_name = ["Identity:0", "Identity_1:0", "Identity_2:0"][level]
        dist_name = ["Identity_3:0", "Identity_4:0", "Identity_5:0"][level]
        scores, dists = outputs[cls_name][0], outputs[dist_name][0]
        for cell in range(grid * grid):
            row, col = divmod(cell, grid)
            cx, cy = (col + 0.5) * stride, (row + 0.5) * stride
            passing = [c for c in range(scores.shape[1]) if scores[cell, c] >= thr[c]]
            if not passing:
                continue
            side = []
            for k in range(4):
                logits = [float(v) for v in dists[cell, k * (REG_MAX + 1) : (k + 1) * (REG_MAX + 1)]]
                top = max(logits)
                w = [math.exp(v - top) for v in logits]
                side.append(sum(i * wi for i, wi in enumerate(w)) / sum(w) * stride)
            box = [cx - side[0], cy - side[1], cx + side[2], cy + side[3]]
            found += [(base + cell, c, float(scores[cell, c]), box) for c in passing]
        base += grid * grid
    return found


def original_decode(dec: NanoDetDecoder, outputs: Dict[str, np.ndarray], thresholds: np.ndarray) -> Candidates:
    """The decoder as first written (concatenating every level's scores per frame), kept to prove
    the faster per-level version returns exactly the same arrays."""
    scores = np.concatenate([outputs[s][0] for s, _ in dec.levels], 0)
    dists = np.concatenate([outputs[d][0] for _, d in dec.levels], 0)
    rows, cls = np.nonzero(scores >= thresholds[None, :])
    conf = scores[rows, cls].astype(np.float32)
    cls = cls.astype(np.int32)
    centers = np.concatenate(dec._centers, 0)
    cells, inverse = np.unique(rows, return_inverse=True)
    d = dists[cells].astype(np.float32).reshape(-1, 4, dec.reg_max + 1)
    d = np.exp(d - d.max(axis=2, keepdims=True))
    d /= d.sum(axis=2, keepdims=True)
    dist = d @ np.arange(dec.reg_max + 1, dtype=np.float32)
    cx, cy, stride = centers[cells].T
    boxes = np.stack(
        [cx - dist[:, 0] * stride, cy - dist[:, 1] * stride, cx + dist[:, 2] * stride, cy + dist[:, 3] * stride], 1
    )
    return boxes[inverse.reshape(-1)].astype(np.float32), conf, cls


def threshold_vectors() -> Sequence[np.ndarray]:
    uniform = np.full(80, 0.35, np.float32)
    per_class = uniform.copy()
    per_class[PERSON] = 0.25
    per_class[2] = 0.6
    allow = np.full(80, np.inf, np.float32)
    allow[[PERSON, 2]] = 0.3
    return [uniform, per_class, allow, np.full(80, 0.05, np.float32)]


# --------------------------------------------------------------------------- tests
def test_recognised_from_the_real_model(decoder: NanoDetDecoder) -> None:
    assert decoder.levels == [
        ("Identity:0", "Identity_3:0"),
        ("Identity_1:0", "Identity_4:0"),
        ("Identity_2:0", "Identity_5:0"),
    ]
    assert (decoder.reg_max, decoder.num_classes) == (REG_MAX, 80)


def test_matches_the_reference_decode(runs: List[Run], decoder: NanoDetDecoder) -> None:
    thr = threshold_vectors()[1]
    for outputs, _, _ in runs:
        boxes, scores, cls = decoder.decode(outputs, 0, thr)
        ref = reference_decode(outputs, thr)
        assert len(ref) > 0
        got = sorted(zip(cls.tolist(), scores.tolist(), boxes.tolist()), key=lambda t: (t[0], -t[1]))
        want = sorted([(c, s, b) for _, c, s, b in ref], key=lambda t: (t[0], -t[1]))
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want], abs=1e-7)
        np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], atol=2e-3)


def test_results_unchanged_by_the_per_level_optimisation(runs: List[Run], decoder: NanoDetDecoder) -> None:
    for thr in threshold_vectors():
        for outputs, _, _ in runs:
            new = decoder.decode(outputs, 0, thr)
            old = original_decode(decoder, outputs, thr)
            for a, b in zip(new, old):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)


def test_fused_output_decodes_like_the_split_levels(runs: List[Run], decoder: NanoDetDecoder) -> None:
    outputs = runs[0][0]
    scores = np.concatenate([outputs[s] for s, _ in decoder.levels], 1)
    dists = np.concatenate([outputs[d] for _, d in decoder.levels], 1)
    fused_out = {"out": np.concatenate([scores, dists], 2)}
    from edge.infer.base import TensorSpec

    fused = make_decoder([TensorSpec("out", fused_out["out"].shape)], SIZE, SIZE, 80)
    assert isinstance(fused, NanoDetDecoder) and fused.fused
    thr = threshold_vectors()[0]
    for a, b in zip(fused.decode(fused_out, 0, thr), decoder.decode(outputs, 0, thr)):
        np.testing.assert_array_equal(a, b)


def test_batch_index_selects_the_image(runs: List[Run], decoder: NanoDetDecoder) -> None:
    (a, _, _), (b, _, _) = runs[0], runs[1]
    batched = {k: np.concatenate([a[k], b[k]], 0) for k in a}
    thr = threshold_vectors()[0]
    for got, want in zip(decoder.decode(batched, 1, thr), decoder.decode(b, 0, thr)):
        np.testing.assert_array_equal(got, want)


def test_pedestrians_found_inside_the_frame(runs: List[Run], decoder: NanoDetDecoder) -> None:
    post = PostProcessor(decoder, COCO_LABELS)
    filters = Filters(score_threshold=0.35)
    for outputs, placement, frame in runs:
        det = post(outputs, 0, placement, filters)
        persons = det.select(det.class_ids == PERSON)
        assert 3 <= len(persons) <= 11, f"{len(persons)} persons"
        h, w = frame.shape[:2]
        b = det.boxes
        assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= w) and np.all(b[:, 1] >= 0) and np.all(b[:, 3] <= h)
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        # Pedestrians are taller than wide, and far smaller than the frame.
        ph, pw = persons.boxes[:, 3] - persons.boxes[:, 1], persons.boxes[:, 2] - persons.boxes[:, 0]
        assert np.median(ph / pw) > 1.3
        assert np.all(ph < h / 2)
        assert np.all(np.diff(det.scores) <= 0)  # best first


def test_persons_only_filter_and_nms_leave_no_duplicates(runs: List[Run], decoder: NanoDetDecoder) -> None:
    from edge.postprocess.nms import iou_matrix

    post = PostProcessor(decoder, COCO_LABELS)
    for outputs, placement, _ in runs:
        det = post(outputs, 0, placement, Filters(score_threshold=0.3, classes=["person"], iou_threshold=0.5))
        assert set(det.class_ids.tolist()) == {PERSON}
        iou = iou_matrix(det.boxes, det.boxes)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= 0.5 + 1e-3  # after mapping back (uniform scale) IoUs are preserved

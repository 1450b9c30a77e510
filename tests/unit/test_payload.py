"""The detections payload (version 1): fields, sequence numbers, JSON encoding."""

from __future__ import annotations

import json
import re
from typing import Optional

import numpy as np
import pytest

from edge.postprocess.end2end import End2EndDecoder
from edge.postprocess.pipeline import Filters, PostProcessor
from edge.postprocess.types import Detections, FrameResult
from edge.preprocess.geometry import place
from edge.publish.payload import PAYLOAD_VERSION, PayloadContext, build_payload, encode, new_session_id

LABELS = ["person", "car", "dog"]


def result(camera: str = "front", seq: int = 7, detections: Optional[Detections] = None) -> FrameResult:
    det = detections if detections is not None else Detections(
        np.array([[10.04, 20.06, 110.0, 220.96], [0.0, 0.0, 5.5, 5.5]], np.float32),
        np.array([0.876543, 0.5], np.float32),
        np.array([0, 9], np.int32),  # 9: a class id without a label
    )
    return FrameResult(camera, seq, 1700000000.1234567, 123.4, 768, 576, det, {"infer": 12.34567, "post": 0.1})


def ctx() -> PayloadContext:
    return PayloadContext(device="box-1", model="nanodet", precision="fp32", backend="onnxruntime", labels=LABELS)


def test_payload_fields() -> None:
    c = ctx()
    p = build_payload(result(), c)
    assert p == {
        "v": PAYLOAD_VERSION,
        "device": "box-1",
        "camera": "front",
        "session": c.session,
        "seq": 1,
        "frame": 7,
        "ts": 1700000000.123457,
        "source": {"width": 768, "height": 576},
        "model": {"name": "nanodet", "precision": "fp32", "backend": "onnxruntime"},
        "latency_ms": {"infer": 12.346, "post": 0.1},
        "detections": [
            {"label": "person", "class_id": 0, "score": 0.8765, "box": [10.0, 20.1, 110.0, 221.0]},
            {"label": "9", "class_id": 9, "score": 0.5, "box": [0.0, 0.0, 5.5, 5.5]},
        ],
    }
    assert PAYLOAD_VERSION == 1


def test_seq_counts_per_camera_and_session_ids_differ() -> None:
    c = ctx()
    seqs = [(cam, build_payload(result(cam), c)["seq"]) for cam in ["a", "b", "a", "a", "b"]]
    assert seqs == [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
    assert re.fullmatch(r"[0-9a-f]{16}", c.session)
    assert len({new_session_id() for _ in range(50)}) == 50
    assert ctx().session != c.session


def test_encode_is_compact_json_with_plain_types() -> None:
    p = build_payload(result(), ctx())
    raw = encode(p)
    assert isinstance(raw, bytes) and b" " not in raw and b"\n" not in raw
    assert json.loads(raw) == p
    d = json.loads(raw)["detections"][0]
    assert type(d["class_id"]) is int and type(d["score"]) is float and all(type(v) is float for v in d["box"])


def test_empty_detections() -> None:
    p = build_payload(result(detections=Detections.empty()), ctx())
    assert p["detections"] == []
    assert json.loads(encode(p))["detections"] == []


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError):
        encode({"score": float("nan")})


def test_nan_and_inf_boxes_never_reach_the_payload() -> None:
    """A model emitting NaN/inf coordinates: the post-processor drops or clips them, so encoding works."""
    rows = np.zeros((1, 4, 6), np.float32)
    rows[0, 0] = (np.nan, 10, 50, 60, 0.9, 0)
    rows[0, 1] = (10, 10, np.inf, 60, 0.8, 1)
    rows[0, 2] = (-np.inf, 5, 20, 30, 0.7, 2)
    post = PostProcessor(End2EndDecoder("o", 3), LABELS)
    det = post({"o": rows}, 0, place(64, 64, 64, 64), Filters(score_threshold=0.5))
    assert det.class_ids.tolist() == [1, 2]
    assert np.isfinite(det.boxes).all()
    assert det.boxes.tolist() == [[10, 10, 64, 60], [0, 5, 20, 30]]
    payload = json.loads(encode(build_payload(result(detections=det), ctx())))
    assert [d["label"] for d in payload["detections"]] == ["car", "dog"]

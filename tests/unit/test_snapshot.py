"""Snapshots: a real video frame with boxes drawn, as JPEG; the per-camera rate limit."""

from __future__ import annotations

from typing import Any, List

import cv2
import numpy as np

from edge.postprocess.types import Detections, FrameResult
from edge.publish.snapshot import RateLimiter, render_snapshot


def test_render_draws_the_boxes_on_the_frame(video_frames: List[Any]) -> None:
    frame = video_frames[0]
    h, w = frame.shape[:2]
    dets = Detections(np.array([[100, 100, 300, 400]], np.float32), np.array([0.87], np.float32),
                      np.array([0], np.int32))
    result = FrameResult("street", 0, 0.0, 0.0, w, h, dets, {})
    jpeg = render_snapshot("street", frame, result, ["person"])
    assert jpeg is not None and jpeg[:3] == b"\xff\xd8\xff"
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == frame.shape
    plain = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1], cv2.IMREAD_COLOR)
    edge = np.abs(img[250, 95:106].astype(int) - plain[250, 95:106].astype(int)).sum()
    inside = np.abs(img[250, 150:160].astype(int) - plain[250, 150:160].astype(int)).sum()
    assert edge > 10 * max(inside, 1)  # the box's left side is drawn, its inside untouched
    assert np.array_equal(frame, video_frames[0])  # the caller's frame is not modified


def test_large_frames_are_scaled_down() -> None:
    frame = np.zeros((2160, 3840, 3), np.uint8)
    result = FrameResult("c", 0, 0.0, 0.0, 3840, 2160, Detections.empty(), {})
    img = cv2.imdecode(np.frombuffer(render_snapshot("c", frame, result, []) or b"", np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (720, 1280, 3)


def test_rate_limiter_per_key() -> None:
    r = RateLimiter(1.0)
    assert [r.allow("a", 0.0), r.allow("a", 0.5), r.allow("b", 0.5), r.allow("a", 1.0)] == [True, False, True, True]
    assert r.limited == 1

"""JPEG snapshots with the detections drawn, and the per-camera rate limit for publishing them."""

from __future__ import annotations

import logging
import time
from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from edge.postprocess.types import FrameResult

log = logging.getLogger(__name__)

MAX_WIDTH = 1280  # larger frames are scaled down before encoding
JPEG_QUALITY = 80


def _color(class_id: int) -> tuple:
    # A fixed, well-spread colour per class (golden-ratio hue steps), BGR.
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    bgr = cv2.cvtColor(np.array([[[hue, 200, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return (int(bgr[0]), int(bgr[1]), int(bgr[2]))


def render_snapshot(camera: str, image: np.ndarray, result: FrameResult, labels: Sequence[str],
                    quality: int = JPEG_QUALITY) -> Optional[bytes]:
    """The frame as JPEG with each detection's box, label and score drawn (None if encoding fails)."""
    scale = min(1.0, MAX_WIDTH / max(1, image.shape[1]))
    canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    det = result.detections
    thick = max(1, round(canvas.shape[1] / 640))
    for box, score, cid in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist()):
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
        color = _color(cid)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thick)
        name = labels[cid] if 0 <= cid < len(labels) else str(cid)
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, thick)
        ty = max(y1, th + base + 2)
        cv2.rectangle(canvas, (x1, ty - th - base - 2), (x1 + tw + 2, ty), color, -1)
        cv2.putText(canvas, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, (0, 0, 0), thick,
                    cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        log.warning("camera %s: could not encode a snapshot as JPEG", camera)
        return None
    return buf.tobytes()


class RateLimiter:
    """At most one event per key every ``min_interval_s`` (monotonic clock); the rest are counted."""

    def __init__(self, min_interval_s: float) -> None:
        self.min_interval_s = min_interval_s
        self._last: Dict[str, float] = {}
        self.limited = 0

    def allow(self, key: str, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.min_interval_s:
            self.limited += 1
            return False
        self._last[key] = now
        return True

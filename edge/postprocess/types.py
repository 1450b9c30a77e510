"""Detections as arrays (fast to filter) and the per-frame result that publishing consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np


@dataclass
class Detections:
    """N detections: ``boxes`` N×4 float32 xyxy, ``scores`` N float32, ``class_ids`` N int32."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, index: np.ndarray) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index])

    def to_dicts(self, labels: Sequence[str]) -> List[Dict[str, object]]:
        """JSON-ready list: label, class_id, score and pixel box (x1, y1, x2, y2)."""
        out = []
        n = len(labels)
        for box, score, cid in zip(self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist()):
            out.append(
                {
                    "label": labels[cid] if 0 <= cid < n else str(cid),
                    "class_id": cid,
                    "score": round(score, 4),
                    "box": [round(v, 1) for v in box],
                }
            )
        return out


@dataclass
class FrameResult:
    """What the inference stage produced for one frame, ready to publish."""

    camera: str
    seq: int
    timestamp: float  # capture time, seconds since the epoch
    monotonic: float  # capture time, monotonic clock
    width: int
    height: int
    detections: Detections
    latency_ms: Dict[str, float] = field(default_factory=dict)  # stage → milliseconds

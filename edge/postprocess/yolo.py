"""YOLO heads with boxes as centre/size: v5/v7 ``[B,N,5+C]`` and v8/11 ``[B,4+C,N]``."""

from __future__ import annotations

from typing import Dict

import numpy as np

from edge.postprocess.decoder import Candidates, Decoder, empty, select_scores


def _cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] * 0.5
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], 1).astype(np.float32)


class Yolov5Decoder(Decoder):
    """Rows of cx, cy, w, h, objectness, C class probabilities; score = objectness × class."""

    name = "yolov5"

    def __init__(self, output: str, num_classes: int) -> None:
        self.output = output
        self.num_classes = num_classes

    def decode(self, outputs: Dict[str, np.ndarray], index: int, thresholds: np.ndarray) -> Candidates:
        t = outputs[self.output][index]
        obj = t[:, 4]
        # No class can pass if objectness is already below the lowest threshold.
        keep = np.nonzero(obj >= thresholds.min())[0]
        if keep.size == 0:
            return empty()
        t = t[keep]
        rows, cls, conf = select_scores(t[:, 5:] * t[:, 4:5], thresholds)
        if rows.size == 0:
            return empty()
        return _cxcywh_to_xyxy(t[rows, :4]), conf, cls


class Yolov8Decoder(Decoder):
    """Columns of cx, cy, w, h, C class scores (no objectness), transposed: [B, 4+C, N]."""

    name = "yolov8"

    def __init__(self, output: str, num_classes: int) -> None:
        self.output = output
        self.num_classes = num_classes

    def decode(self, outputs: Dict[str, np.ndarray], index: int, thresholds: np.ndarray) -> Candidates:
        t = outputs[self.output][index]  # (4+C) × N
        rows, cls, conf = select_scores(t[4:].T, thresholds)
        if rows.size == 0:
            return empty()
        return _cxcywh_to_xyxy(t[:4, rows].T), conf, cls

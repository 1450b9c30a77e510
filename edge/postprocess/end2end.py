"""Models that end in their own NMS: ``[B,K,6]`` rows and EfficientNMS's four outputs."""

from __future__ import annotations

from typing import Dict

import numpy as np

from edge.postprocess.decoder import Candidates, Decoder, empty


def _filter(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray, thresholds: np.ndarray) -> Candidates:
    ok = (cls >= 0) & (cls < thresholds.shape[0])
    boxes, scores, cls = boxes[ok], scores[ok], cls[ok]
    ok = scores >= thresholds[cls]
    return boxes[ok].astype(np.float32), scores[ok].astype(np.float32), cls[ok].astype(np.int32)


class End2EndDecoder(Decoder):
    """NMS-free heads (YOLOv10/26 style): K rows of x1, y1, x2, y2, score, class."""

    name = "end2end"
    needs_nms = False

    def __init__(self, output: str, num_classes: int) -> None:
        self.output = output
        self.num_classes = num_classes

    def decode(self, outputs: Dict[str, np.ndarray], index: int, thresholds: np.ndarray) -> Candidates:
        t = outputs[self.output][index]
        if t.shape[0] == 0:
            return empty()
        return _filter(t[:, :4], t[:, 4], np.rint(t[:, 5]).astype(np.int64), thresholds)


class EfficientNmsDecoder(Decoder):
    """TensorRT EfficientNMS / BatchedNMS: num_detections, boxes (xyxy), scores, classes."""

    name = "efficientnms"
    needs_nms = False

    def __init__(self, num: str, boxes: str, scores: str, classes: str, num_classes: int) -> None:
        self.names = (num, boxes, scores, classes)
        self.num_classes = num_classes

    def decode(self, outputs: Dict[str, np.ndarray], index: int, thresholds: np.ndarray) -> Candidates:
        num, boxes, scores, classes = (outputs[n][index] for n in self.names)
        k = int(np.asarray(num).reshape(-1)[0])
        k = max(0, min(k, boxes.shape[0]))
        return _filter(boxes[:k], scores[:k], np.rint(classes[:k]).astype(np.int64), thresholds)

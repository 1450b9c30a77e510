"""Decode → per-class thresholds and allow-list → NMS → cap → boxes in source pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from edge.postprocess.decoder import Decoder
from edge.postprocess.nms import batched_nms
from edge.postprocess.types import Detections
from edge.preprocess.geometry import Placement


@dataclass(frozen=True)
class Filters:
    """What to keep: the score threshold, per-label thresholds and the allowed labels.

    Hashable (the post-processor caches one threshold vector per Filters): a mapping of
    class thresholds or a list of classes is stored as sorted pairs / a tuple.
    """

    score_threshold: float = 0.35
    # label → threshold, as a mapping or (label, threshold) pairs
    class_thresholds: Optional[Union[Mapping[str, float], Tuple[Tuple[str, float], ...]]] = None
    classes: Optional[Sequence[str]] = None  # allow-list of labels; None keeps every class
    iou_threshold: float = 0.5
    class_agnostic: bool = False
    max_detections: int = 100

    def __post_init__(self) -> None:
        if self.class_thresholds is not None:
            pairs = tuple(sorted(dict(self.class_thresholds).items()))
            object.__setattr__(self, "class_thresholds", pairs)
        if self.classes is not None and not isinstance(self.classes, tuple):
            object.__setattr__(self, "classes", tuple(self.classes))

    def vector(self, labels: Sequence[str], num_classes: int) -> np.ndarray:
        """One minimum score per class id; ``inf`` for classes that are not kept."""
        thr = np.full(num_classes, self.score_threshold, np.float32)
        index = {name: i for i, name in enumerate(labels) if i < num_classes}
        for name, t in dict(self.class_thresholds or ()).items():
            if name in index:
                thr[index[name]] = t
        if self.classes is not None:
            keep = np.zeros(num_classes, bool)
            keep[[index[c] for c in self.classes if c in index]] = True
            thr[~keep] = np.inf
        return thr


class PostProcessor:
    def __init__(self, decoder: Decoder, labels: Sequence[str]) -> None:
        self.decoder = decoder
        self.labels = list(labels)
        self._vectors: Dict[Filters, np.ndarray] = {}

    def thresholds(self, filters: Filters) -> np.ndarray:
        v = self._vectors.get(filters)
        if v is None:
            n = self.decoder.num_classes or len(self.labels)
            v = self._vectors[filters] = filters.vector(self.labels, n)
        return v

    def __call__(
        self, outputs: Dict[str, np.ndarray], index: int, placement: Placement, filters: Filters
    ) -> Detections:
        boxes, scores, cls = self.decoder.decode(outputs, index, self.thresholds(filters))
        if scores.size == 0:
            return Detections.empty()
        if self.decoder.needs_nms:
            keep = batched_nms(boxes, scores, cls, filters.iou_threshold, filters.class_agnostic,
                               filters.max_detections)
        else:
            keep = np.argsort(-scores, kind="stable")[: filters.max_detections]
        boxes = placement.to_source(boxes[keep])
        det = Detections(boxes, scores[keep], cls[keep])
        # Drop boxes that collapsed to nothing after clipping (entirely in the padding).
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return det if ok.all() else det.select(ok)

"""The decoder interface: raw model outputs of one image → candidate detections."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Tuple

import numpy as np

Candidates = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes N×4 (model px, xyxy), scores N, class ids N


class Decoder(ABC):
    """Decodes the outputs of image ``index`` of a batch.

    ``thresholds`` holds one minimum score per class (``inf`` for classes not kept), so
    decoders can skip everything below it before doing any box maths.
    """

    name: str = "decoder"
    needs_nms: bool = True  # False when the model already suppressed duplicates
    num_classes: int = 0

    @abstractmethod
    def decode(self, outputs: Dict[str, np.ndarray], index: int, thresholds: np.ndarray) -> Candidates: ...


def select_scores(scores: np.ndarray, thresholds: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an N×C score matrix: (row, class, score) of every entry at or above its class threshold."""
    rows, cls = np.nonzero(scores >= thresholds[None, :])
    return rows, cls.astype(np.int32), scores[rows, cls].astype(np.float32)


def empty() -> Candidates:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)

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


def passing(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean N×C mask of the entries at or above their class threshold.

    A single threshold for every class (the common case) is compared as a scalar, which
    is several times faster than broadcasting the per-class vector.
    """
    lo = thresholds.min()
    if lo == thresholds.max():
        return scores >= lo
    return scores >= thresholds


def select_scores(scores: np.ndarray, thresholds: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an N×C score matrix: (row, class, score) of every entry at or above its class threshold.

    Row-major order (by row, then class). ``np.flatnonzero`` on the flat mask is much
    faster than ``np.nonzero`` on the 2-D one.
    """
    flat = np.flatnonzero(passing(scores, thresholds))
    rows, cls = np.divmod(flat, scores.shape[1])
    return rows, cls.astype(np.int32), scores[rows, cls].astype(np.float32)


def empty() -> Candidates:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)

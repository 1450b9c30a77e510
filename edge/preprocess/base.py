"""The preprocessing interface: images in, the model's input batch and placements out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

import numpy as np

from edge.preprocess.geometry import Placement


@dataclass(frozen=True)
class InputGeometry:
    """Everything preprocessing needs, resolved from the config and the model's input tensor."""

    width: int
    height: int
    batch: int
    color: str  # "bgr" | "rgb": what the model expects (frames are BGR)
    resize: str  # "letterbox" | "stretch"
    center: bool
    pad_value: int
    mean: Tuple[float, float, float]  # pixel units, model channel order
    std: Tuple[float, float, float]
    dtype: str = "float32"  # "float32" | "float16"


class Preprocessor(ABC):
    """Turns up to ``batch`` BGR frames into one NCHW input batch.

    The returned batch is a buffer the preprocessor reuses: ``buffers`` of them rotate, so a
    batch stays valid until ``buffers`` further calls have been made (frame n+1 is prepared
    while n infers). The daemon never has more than ``buffers`` batches in flight.
    """

    geometry: InputGeometry
    buffers: int = 2  # batches that may be in flight at once (see __call__)

    @abstractmethod
    def __call__(self, images: Sequence[np.ndarray]) -> Tuple[Any, List[Placement]]:
        """Return (input batch, one placement per image)."""

    def close(self) -> None:
        """Free buffers (device memory for the CUDA path)."""

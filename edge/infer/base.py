"""The inference backend interface, shared by ONNX Runtime and TensorRT.

A backend is a context manager: it owns its session or engine and frees it on ``close``.
``infer`` takes the preprocessed batch and returns every output by name, as numpy arrays
in the layout the model produced, so postprocessing never asks which backend ran.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

# Progress of a long step (engine build): a message and a fraction done, or None when unknown.
Progress = Callable[[str, Optional[float]], None]


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (model and calibration-data identities)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a dynamic dimension) and numpy dtype of one model tensor."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str = "float32"

    @property
    def is_image(self) -> bool:
        """True for a 4-D NCHW tensor with 1 or 3 channels."""
        return len(self.shape) == 4 and self.shape[1] in (1, 3)


@dataclass(frozen=True)
class BackendInfo:
    """What the payloads and the status topic say about the backend."""

    name: str  # "onnxruntime", "tensorrt"
    precision: str  # "fp32", "fp16", "int8", "mixed"
    device: str  # "cpu", "cuda:0 NVIDIA H200", "Orin (sm_87)", ...
    detail: str = ""


class Backend(ABC):
    """Runs a detector on a preprocessed batch."""

    info: BackendInfo
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def batch(self) -> int:
        """Fixed batch size of the model, or 1 when the batch dimension is dynamic."""
        b = self.inputs[0].shape[0]
        return b if isinstance(b, int) and b > 0 else 1

    @abstractmethod
    def infer(self, batch: Any) -> Dict[str, np.ndarray]:
        """Run one batch (N×C×H×W, the input dtype) and return every output by name.

        The arrays belong to the caller: a later call must not overwrite them, because
        postprocessing of batch n runs while batch n+1 infers.
        """

    def activate(self) -> None:
        """Called at the start of every worker thread that uses this backend (CUDA: push context)."""

    def deactivate(self) -> None:
        """Called when such a thread is done with the backend (CUDA: pop context)."""

    def make_preprocessor(self, geometry: Any) -> Optional[Any]:
        """A backend-specific Preprocessor (CUDA, writing into the engine's input), or None for CPU."""
        return None

    def frame_allocator(self) -> Optional[Callable[[Tuple[int, ...]], np.ndarray]]:
        """Allocator for capture frame buffers (pinned/mapped host memory), or None for plain numpy."""
        return None

    def close(self) -> None:
        """Release the session, engine, buffers and streams."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

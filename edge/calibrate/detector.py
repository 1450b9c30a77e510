"""The daemon's own detection path, reused for calibration and evaluation.

Frames go through exactly what the daemon runs: :class:`~edge.preprocess.cpu.CpuPreprocessor`
with the geometry resolved from config and model, a :class:`~edge.infer.base.Backend`, and
:class:`~edge.postprocess.pipeline.PostProcessor` with the configured :class:`Filters`.
Calibration therefore sees the very tensors the deployed model will see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge.config.model import Config, DetectConfig
from edge.infer.base import Backend
from edge.infer.select import input_geometry, load_labels
from edge.postprocess.detect import make_decoder
from edge.postprocess.pipeline import Filters, PostProcessor
from edge.postprocess.types import Detections
from edge.preprocess.base import InputGeometry
from edge.preprocess.cpu import CpuPreprocessor
from edge.preprocess.geometry import Placement


def filters_from(detect: DetectConfig) -> Filters:
    """The daemon's detection filters from ``detect:`` in the config."""
    return Filters(
        score_threshold=detect.score_threshold,
        class_thresholds=dict(detect.class_thresholds) or None,
        classes=list(detect.classes) if detect.classes is not None else None,
        iou_threshold=detect.iou_threshold,
        class_agnostic=detect.class_agnostic_nms,
        max_detections=detect.max_detections,
    )


def open_onnx(model: Path, threads: int = 0, precision: str = "fp32") -> Backend:
    """An ONNX Runtime CPU session (the backend the daemon uses without TensorRT)."""
    from edge.infer.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(Path(model), threads, ("CPUExecutionProvider",), precision)


class Detector:
    """Preprocess → backend → postprocess for one model variant, as the daemon does it.

    The backend is owned by the detector and closed with it; it is activated (CUDA context
    pushed) for the detector's lifetime, so use a detector from the thread that made it.
    """

    def __init__(self, cfg: Config, backend: Backend, filters: Optional[Filters] = None) -> None:
        self.cfg = cfg
        self.backend = backend
        backend.activate()
        try:
            self._setup(cfg, backend, filters)
        except BaseException:
            backend.deactivate()
            backend.close()
            raise

    def _setup(self, cfg: Config, backend: Backend, filters: Optional[Filters]) -> None:
        self.labels = load_labels(cfg.model)
        self.geometry: InputGeometry = input_geometry(cfg.model, backend)
        self.pre = CpuPreprocessor(self.geometry)
        m = cfg.model
        decoder = make_decoder(
            backend.outputs, self.geometry.width, self.geometry.height, len(self.labels),
            m.format, m.strides, m.reg_max,
        )
        self.post = PostProcessor(decoder, self.labels)
        self.filters = filters or filters_from(cfg.detect)

    @property
    def batch(self) -> int:
        return self.geometry.batch

    def batches(self, images: Iterable[np.ndarray]) -> Iterator[Tuple[np.ndarray, List[Placement], int]]:
        """Preprocessed input batches (copies, of the model's batch size) with placements and fill."""
        chunk: List[np.ndarray] = []
        for img in images:
            chunk.append(img)
            if len(chunk) == self.batch:
                yield self._prepare(chunk)
                chunk = []
        if chunk:
            yield self._prepare(chunk)

    def _prepare(self, chunk: List[np.ndarray]) -> Tuple[np.ndarray, List[Placement], int]:
        tensor, placements = self.pre(chunk)
        return np.array(tensor, copy=True), placements, len(chunk)

    def tensors(self, images: Iterable[np.ndarray]) -> Tensors:
        """The preprocessed batches of ``images``, re-made on every iteration."""
        return Tensors(self, images)

    def infer(self, tensor: np.ndarray) -> Dict[str, np.ndarray]:
        return self.backend.infer(tensor)

    def decode(self, outputs: Dict[str, np.ndarray], placements: Sequence[Placement],
               filters: Optional[Filters] = None) -> List[Detections]:
        f = filters or self.filters
        return [self.post(outputs, i, p, f) for i, p in enumerate(placements)]

    def detect(self, images: Iterable[np.ndarray], *filters: Filters) -> List[List[Detections]]:
        """Detections of every image, once per filter set given (default: the configured filters)."""
        sets = list(filters) or [self.filters]
        out: List[List[Detections]] = [[] for _ in sets]
        for tensor, placements, _ in self.batches(images):
            outputs = self.infer(tensor)
            for k, f in enumerate(sets):
                out[k] += self.decode(outputs, placements, f)
        return out

    def close(self) -> None:
        self.pre.close()
        self.backend.deactivate()
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Tensors:
    """Re-iterable preprocessed batches of a (re-iterable) image set, made by ``detector``."""

    def __init__(self, detector: Detector, images: Iterable[np.ndarray]) -> None:
        self.detector = detector
        self.images = images

    def __len__(self) -> int:
        n = len(self.images)  # type: ignore[arg-type]
        return max(0, -(-n // self.detector.batch))

    def __iter__(self) -> Iterator[np.ndarray]:
        for tensor, _, _ in self.detector.batches(self.images):
            yield tensor

"""Choose and open the backend, and resolve the model's input geometry and labels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

from edge.config.labels import COCO_LABELS
from edge.config.model import Config, ModelConfig
from edge.errors import HardwareError, ModelError
from edge.infer.base import Backend, Progress
from edge.preprocess.base import InputGeometry

log = logging.getLogger(__name__)


def tensorrt_importable() -> bool:
    try:
        from edge.infer.tensorrt import tensorrt_available
    except ImportError:
        return False
    return bool(tensorrt_available())


def open_backend(cfg: Config, progress: Optional[Progress] = None) -> Backend:
    """Open the configured backend; ``auto`` takes TensorRT when importable and says so."""
    kind = cfg.backend.kind
    if kind == "auto":
        kind = "tensorrt" if tensorrt_importable() else "onnxruntime"
        why = "" if kind == "tensorrt" else " (TensorRT is not importable)"
        log.info("backend: auto picked %s%s", kind, why)
    if kind == "tensorrt":
        if not tensorrt_importable():
            raise HardwareError(
                "backend.kind is tensorrt but TensorRT's Python module cannot be imported",
                "on a Jetson use a virtualenv with --system-site-packages, or set backend.kind: onnxruntime",
            )
        from edge.infer.tensorrt import open_tensorrt_backend

        return open_tensorrt_backend(cfg.model, cfg.backend, cfg.state_dir, progress)
    return _open_onnxruntime(cfg)


def _open_onnxruntime(cfg: Config) -> Backend:
    from edge.infer.onnxruntime import OnnxRuntimeBackend

    precision = cfg.backend.precision
    model = cfg.model.path
    if precision == "best":
        precision = "fp32"
        log.info("precision: best on ONNX Runtime is fp32 (int8 needs a Q/DQ model from edge-calibrate)")
    elif precision == "int8":
        if cfg.backend.tensorrt.qdq_model is None:
            raise HardwareError(
                "precision int8 on ONNX Runtime needs an explicitly quantized (Q/DQ) model",
                "make one with `edge-calibrate calibrate` and set backend.tensorrt.qdq_model, or use fp32",
            )
        model = cfg.backend.tensorrt.qdq_model
    elif precision == "fp16":
        raise HardwareError(
            "precision fp16 is not available on the ONNX Runtime CPU backend",
            "use precision: best (or fp32) here; fp16 runs on the TensorRT backend",
        )
    ort = cfg.backend.onnxruntime
    return OnnxRuntimeBackend(Path(model), ort.threads, ort.providers, precision)


def load_labels(model: ModelConfig) -> List[str]:
    if model.labels == "coco":
        return list(COCO_LABELS)
    if isinstance(model.labels, list):
        return list(model.labels)
    path = Path(model.labels)
    try:
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise ModelError(f"cannot read labels file {path}: {exc.strerror}", "check model.labels") from None
    if not names:
        raise ModelError(f"labels file {path} is empty", "one class name per line")
    return names


def input_geometry(model: ModelConfig, backend: Backend) -> InputGeometry:
    """The preprocessing geometry from config and the model's input tensor, cross-checked."""
    spec = backend.input
    if not spec.is_image or spec.shape[1] != 3:
        raise ModelError(
            f"model input {spec.name!r} has shape {list(spec.shape)}, not an image tensor [N,3,H,W]",
            "use a detector exported with a single NCHW image input",
        )
    if spec.dtype not in ("float32", "float16"):
        raise ModelError(
            f"model input {spec.name!r} is {spec.dtype}; edge-detector feeds float32 or float16",
            "export the model with a float input",
        )
    inp = model.input
    h, w = spec.shape[2], spec.shape[3]
    for name, dim, want in (("width", w, inp.width), ("height", h, inp.height)):
        if dim is not None and want is not None and dim != want:
            raise ModelError(
                f"model.input.{name} is {want} but the model's input is fixed at {dim}",
                f"remove model.input.{name} or set it to {dim}",
            )
    width = w or inp.width
    height = h or inp.height
    if width is None or height is None:
        raise ModelError(
            f"the model's input size is dynamic ({list(spec.shape)})",
            "set model.input.width and model.input.height",
        )
    return InputGeometry(
        width=int(width),
        height=int(height),
        batch=backend.batch,
        color=inp.color,
        resize=inp.resize,
        center=inp.center,
        pad_value=inp.pad_value,
        mean=(inp.mean[0], inp.mean[1], inp.mean[2]),
        std=(inp.std[0], inp.std[1], inp.std[2]),
        dtype=spec.dtype,
    )

"""The TensorRT backend: engines built from ONNX, cached per key, run with pycuda buffers.

Importing this package needs neither TensorRT nor pycuda; they are imported when a
backend is opened. Modules: ``compat`` (every TensorRT version difference), ``builder``
(ONNX → engine; used by edge-calibrate too), ``cache`` (engine files and sidecars),
``runner`` (execution), ``backend`` (the daemon's entry point, wiring them together).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from edge.config.model import BackendConfig, ModelConfig
    from edge.infer.base import Backend, Progress


def tensorrt_available() -> bool:
    """True when both ``tensorrt`` and ``pycuda`` can be imported (nothing is imported here)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("tensorrt", "pycuda"))
    except (ImportError, ValueError):
        return False


def open_tensorrt_backend(
    model: ModelConfig,
    backend: BackendConfig,
    state_dir: Path,
    progress: Optional[Progress] = None,
) -> Backend:
    """Load the cached engine for this model and settings, or build it (reporting ``progress``)."""
    from edge.infer.tensorrt.backend import open_backend

    return open_backend(model, backend, state_dir, progress)


__all__ = ["open_tensorrt_backend", "tensorrt_available"]

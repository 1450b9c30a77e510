"""ONNX Runtime backend: CPU everywhere, CUDA/TensorRT execution providers when installed."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

from edge.errors import HardwareError, ModelError
from edge.infer.base import Backend, BackendInfo, TensorSpec

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
_GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


def _ort_errors(ort: Any) -> Tuple[Type[BaseException], ...]:
    """The exceptions onnxruntime raises for a model it cannot load (its own types derive from Exception)."""
    state = getattr(getattr(ort, "capi", None), "onnxruntime_pybind11_state", None)
    own = [v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception)] if state else []
    return (*own, RuntimeError, ValueError, OSError)


def _ort_message(exc: BaseException) -> str:
    """ONNX Runtime's reason without its prefix: '[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model
    from X failed:Protobuf parsing failed.' → 'INVALID_PROTOBUF: Protobuf parsing failed.'"""
    text = " ".join(str(exc).split()) or type(exc).__name__
    m = re.match(r"\[ONNXRuntimeError\] : \d+ : (\w+) : (?:Load model from .*? failed:)?(.*)", text)
    return f"{m.group(1)}: {m.group(2).strip()}" if m else text


def choose_providers(requested: Sequence[str], available: Sequence[str]) -> List[str]:
    """Resolve the configured provider list ('auto' = GPU providers present, then CPU)."""
    out: List[str] = []
    for name in requested:
        if name == "auto":
            out += [p for p in _GPU_PROVIDERS if p in available and p not in out]
            continue
        if name not in available:
            raise HardwareError(
                f"ONNX Runtime execution provider {name!r} is not available here",
                f"available: {', '.join(available)}",
            )
        if name not in out:
            out.append(name)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


class OnnxRuntimeBackend(Backend):
    def __init__(
        self,
        model: Path,
        threads: int = 0,
        providers: Sequence[str] = ("auto",),
        precision: str = "fp32",
    ) -> None:
        import onnxruntime as ort

        if precision not in ("fp32", "int8"):
            raise HardwareError(
                f"precision {precision} is not available on ONNX Runtime",
                "use fp32 (or an int8 Q/DQ model from edge-calibrate), or the TensorRT backend for fp16",
            )
        chosen = choose_providers(providers, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads would steal the cores that capture and postprocessing need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        if not model.is_file():
            what = "is a directory" if model.is_dir() else "not found"
            raise ModelError(f"model file {what}: {model}", "check model.path")
        try:
            session = ort.InferenceSession(str(model), sess_options=opts, providers=chosen)
        except _ort_errors(ort) as exc:
            raise ModelError(
                f"cannot load model {model}: {_ort_message(exc)}", "is it a valid ONNX file for this onnxruntime?"
            ) from None
        self._session: Optional[Any] = session
        self.inputs = [_spec(a) for a in session.get_inputs()]
        self.outputs = [_spec(a) for a in session.get_outputs()]
        self._names = [o.name for o in self.outputs]
        used = session.get_providers()
        device = "cuda" if any(p in used for p in _GPU_PROVIDERS) else "cpu"
        self.info = BackendInfo("onnxruntime", precision, device, f"providers={','.join(used)}")

    def infer(self, batch: Any) -> Dict[str, np.ndarray]:
        if self._session is None:
            raise RuntimeError("infer() on a closed OnnxRuntimeBackend")
        results = self._session.run(self._names, {self.inputs[0].name: batch})
        return dict(zip(self._names, results))

    def close(self) -> None:
        self._session = None


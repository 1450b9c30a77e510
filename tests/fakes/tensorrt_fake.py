"""Contract fakes of the ``tensorrt`` Python module, one per version band. NOT TensorRT.

Each fake exposes exactly the API that the TensorRT reference this project follows (NVIDIA/TensorRT release branches)
document for its band, and nothing that band removed: an attribute that a band lacks
raises ``AttributeError`` on read *and* on write, so code that calls a removed API fails.

  8.0  bindings only; ``max_workspace_size`` only; ``STRICT_TYPES`` (no OBEY/PREFER); no timing cache
  8.2  bindings only; ``max_workspace_size`` only; OBEY/PREFER; timing cache
  8.5  both APIs; memory pool limit (``max_workspace_size`` deprecated but present)
  8.6  as 8.5, plus ``VERSION_COMPATIBLE``
  10   names only; no ``max_workspace_size``; EXPLICIT_BATCH in the enum but ignored; STRONGLY_TYPED;
       parser errors add ``node_name``/``node_operator``
  11   names only; no FP16/INT8/constraint flags, no ``platform_has_fast_*``, no calibrators or
       ``int8_calibrator``, no EXPLICIT_BATCH; enum values renumbered

The builder parses the real ONNX file (with the ``onnx`` package) for its inputs, outputs and
nodes; the plan is JSON; an execution context runs the ONNX model with onnxruntime (or an
executor registered in ``EXECUTORS`` by file name) on the fake pycuda memory. Every call is
appended to ``module.calls``.
"""

from __future__ import annotations

import enum
import json
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

import numpy as np

from fakes.pycuda_fake import FakeCuda
from fakes.tensorrt_parts import (
    FakeBuilder,
    FakeConfig,
    FakeContext,
    FakeEngine,
    FakeParser,
    FakeRuntime,
    Strict,
)

BANDS: Dict[str, str] = {"8.0": "8.0.1.6", "8.2": "8.2.1.8", "8.5": "8.5.2.2", "8.6": "8.6.1.6",
                         "10": "10.3.0.26", "11": "11.0.0.9"}
EXECUTORS: Dict[str, Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]] = {}


def _features(band: str) -> Set[str]:
    f = {"calibrators", "precision_flags", "platform_fast", "build_serialized", "plugins"}
    if band in ("8.0", "8.2"):
        f |= {"bindings", "max_workspace_size", "explicit_batch", "build_engine", "strict_types"}
    if band == "8.2":
        f |= {"constraints", "timing_cache"}
    if band in ("8.5", "8.6"):
        f |= {"bindings", "names", "max_workspace_size", "memory_pool", "explicit_batch", "build_engine",
              "constraints", "timing_cache", "strict_types"}
    if band == "8.6":
        f.add("version_compatible")
    if band == "10":
        f |= {"names", "memory_pool", "explicit_batch", "constraints", "timing_cache", "strongly_typed",
              "node_name", "version_compatible"}
    if band == "11":
        f = {"names", "memory_pool", "timing_cache", "strongly_typed", "node_name", "build_serialized",
             "plugins", "version_compatible"}
    return f


def _enum(name: str, members: List[str], renumber: bool) -> Any:
    values = list(reversed(range(len(members)))) if renumber else list(range(len(members)))
    return enum.IntEnum(name, dict(zip(members, values)))  # type: ignore[misc]


def make_tensorrt(
    band: str, *, cuda: FakeCuda, fast_fp16: bool = True, fast_int8: bool = True, dla_cores: int = 0
) -> types.ModuleType:
    """A fake ``tensorrt`` module for ``band`` ("8.0", "8.2", "8.5", "8.6", "10", "11")."""
    feats = _features(band)
    new = band == "11"
    trt = types.ModuleType("tensorrt")
    trt.__version__ = BANDS[band]  # type: ignore[attr-defined]
    trt.calls = []  # type: ignore[attr-defined]
    trt.features = feats  # type: ignore[attr-defined]
    trt.cuda = cuda  # type: ignore[attr-defined]
    trt.hw = types.SimpleNamespace(fast_fp16=fast_fp16, fast_int8=fast_int8, dla_cores=dla_cores,  # type: ignore[attr-defined]
                                   gpu=cuda.name)
    trt.plugins_ready = False  # type: ignore[attr-defined]
    trt.executors = EXECUTORS  # type: ignore[attr-defined]

    flags = ["FP16", "INT8", "GPU_FALLBACK", "REFIT", "DEBUG"]
    if "strict_types" in feats:
        flags.append("STRICT_TYPES")
    if "constraints" in feats:
        flags += ["OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"]
    if "version_compatible" in feats:
        flags.append("VERSION_COMPATIBLE")
    if "precision_flags" not in feats:
        flags = [f for f in flags if f not in ("FP16", "INT8")]
    trt.BuilderFlag = _enum("BuilderFlag", flags, new)  # type: ignore[attr-defined]
    net_flags = (["EXPLICIT_BATCH"] if "explicit_batch" in feats else []) + (
        ["STRONGLY_TYPED"] if "strongly_typed" in feats else [])
    trt.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", net_flags or ["NONE_"], new)  # type: ignore[attr-defined]
    trt.DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL"] + (  # type: ignore[attr-defined]
        ["UINT8", "INT64"] if band in ("8.6", "10", "11") else []), new)
    trt.DeviceType = _enum("DeviceType", ["GPU", "DLA"], new)  # type: ignore[attr-defined]
    if "memory_pool" in feats:
        trt.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM"], new)  # type: ignore[attr-defined]
    if "names" in feats:
        trt.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], new)  # type: ignore[attr-defined]

    class Logger(Strict):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)
        _attrs = {"min_severity"}

        def __init__(self, min_severity: int = 2) -> None:
            self.min_severity = min_severity

    trt.Logger = Logger  # type: ignore[attr-defined]

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        trt.calls.append(("init_libnvinfer_plugins", namespace))  # type: ignore[attr-defined]
        trt.plugins_ready = True  # type: ignore[attr-defined]
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins  # type: ignore[attr-defined]
    trt.Builder = lambda logger: FakeBuilder(trt, logger)  # type: ignore[attr-defined]
    trt.OnnxParser = lambda network, logger: FakeParser(trt, network, logger)  # type: ignore[attr-defined]
    trt.Runtime = lambda logger: FakeRuntime(trt, logger)  # type: ignore[attr-defined]
    if "calibrators" in feats:
        class IInt8Calibrator:
            def __init__(self) -> None:
                self._base_init = True

        class IInt8EntropyCalibrator2(IInt8Calibrator):
            algorithm = "EntropyCalibration2"

        class IInt8MinMaxCalibrator(IInt8Calibrator):
            algorithm = "MinMaxCalibration"

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2  # type: ignore[attr-defined]
        trt.IInt8MinMaxCalibrator = IInt8MinMaxCalibrator  # type: ignore[attr-defined]
    trt.FakeConfig, trt.FakeEngine, trt.FakeContext = FakeConfig, FakeEngine, FakeContext  # type: ignore[attr-defined]
    return trt


def plan_json(plan: bytes) -> Dict[str, Any]:
    """The JSON inside a fake plan (tests read what the builder was asked to do)."""
    return json.loads(bytes(plan)[len(b"FAKEPLAN") :].decode())


def register_executor(onnx_name: str, fn: Optional[Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]]) -> None:
    if fn is None:
        EXECUTORS.pop(Path(onnx_name).name, None)
    else:
        EXECUTORS[Path(onnx_name).name] = fn

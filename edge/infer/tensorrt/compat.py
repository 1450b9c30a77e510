"""Every difference between TensorRT versions, and nothing else.

Supported bands: 8.0/8.2 (JetPack 4.6, bindings API only), 8.5/8.6 (JetPack 5/6.0, both
APIs), 10.x (names API only, precision flags deprecated) and 11.x (strongly typed: no
precision flags, no calibrators, no ``EXPLICIT_BATCH``). Rules kept here:

- features are tested with ``hasattr`` where the API allows it; versions are integer
  tuples (never strings: "10" < "8" as text); enums are used by symbolic name only
  (their values were renumbered in 11.0);
- the builder (:mod:`.builder`) and the runner (:mod:`.runner`) call TensorRT only through
  :class:`TrtCompat` or for calls that are identical in every band (``trt.Builder``,
  ``builder.create_network``, ``trt.OnnxParser``, ``create_optimization_profile``, ...).

The module imports without TensorRT: the ``tensorrt`` module is passed in (tests pass
contract fakes from ``tests/fakes``) or imported by :meth:`TrtCompat.load`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from edge.errors import HardwareError, ModelError

Version = Tuple[int, int, int]

# TensorRT DataType member name → numpy dtype name (looked up by name, never by value).
_DTYPES = (
    ("FLOAT", "float32"),
    ("HALF", "float16"),
    ("INT8", "int8"),
    ("INT32", "int32"),
    ("INT64", "int64"),
    ("BOOL", "bool"),
    ("UINT8", "uint8"),
)
# The ONNX opset the parser of each band reads (used in hints only).
_OPSET_CEILINGS = (((8, 0, 0), 13), ((8, 4, 0), 17), ((10, 0, 0), 20), ((10, 15, 0), 24))
_CALIBRATION_ALGORITHMS = {"entropy2": "EntropyCalibration2", "minmax": "MinMaxCalibration"}
_CALIBRATOR_CLASSES = {"entropy2": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}


def parse_version(text: str) -> Version:
    """``"8.2.1.8"`` → ``(8, 2, 1)``; missing parts are 0."""
    nums = [int(n) for n in re.findall(r"\d+", text)[:3]]
    while len(nums) < 3:
        nums.append(0)
    return (nums[0], nums[1], nums[2])


def version_text(version: Version) -> str:
    return ".".join(str(n) for n in version)


@dataclass(frozen=True)
class IoTensor:
    """One engine input or output: -1 marks a dynamic dimension; dtype is a numpy name."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: str
    index: int  # binding index (8.x bindings API) or position in the name list


class TrtCompat:
    """The adapter over one ``tensorrt`` module; see the module docstring."""

    def __init__(self, trt: ModuleType) -> None:
        self.trt = trt
        self.version: Version = parse_version(str(getattr(trt, "__version__", "0")))
        self._dtype_by_name: Dict[str, Any] = {
            np_name: getattr(trt.DataType, name) for name, np_name in _DTYPES if hasattr(trt.DataType, name)
        }

    @classmethod
    def load(cls) -> TrtCompat:
        """Import the installed TensorRT, or raise a HardwareError saying what to install."""
        try:
            import tensorrt
        except ImportError:
            raise HardwareError(
                f"TensorRT's Python module is not importable by this Python ({sys.executable})",
                "on a Jetson use a venv with --system-site-packages (JetPack's python3-libnvinfer), "
                "on x86 `pip install tensorrt`; or set backend.kind: onnxruntime",
            ) from None
        return cls(tensorrt)

    # ------------------------------------------------------------------ identity
    @property
    def version_text(self) -> str:
        return version_text(self.version)

    @property
    def band(self) -> str:
        """"8.0", "8.2", "8.5", "8.6", "10" or "11" - for messages and docs."""
        major, minor, _ = self.version
        return f"{major}.{minor}" if major < 10 else str(major)

    @property
    def opset_ceiling(self) -> int:
        ceiling = 13
        for since, opset in _OPSET_CEILINGS:
            if self.version >= since:
                ceiling = opset
        return ceiling

    # ------------------------------------------------------------------ logging, plugins
    def logger(self, severity: str = "WARNING") -> Any:
        return self.trt.Logger(getattr(self.trt.Logger, severity))

    def init_plugins(self, logger: Any) -> None:
        """Register the bundled plugins (EfficientNMS...) before parsing or deserializing."""
        if not self.trt.init_libnvinfer_plugins(logger, ""):
            raise HardwareError(
                "TensorRT's plugin library (libnvinfer_plugin) could not be initialised",
                "reinstall TensorRT with its plugin library (libnvinfer-plugin)",
            )

    # ------------------------------------------------------------------ capabilities
    @property
    def has_precision_flags(self) -> bool:
        """False on 11.x: precision comes from the ONNX types and Q/DQ nodes."""
        flags = self.trt.BuilderFlag
        return hasattr(flags, "FP16") and hasattr(flags, "INT8")

    @property
    def has_calibrators(self) -> bool:
        """Implicit INT8 calibration (8.0-10.x; removed in 11.0)."""
        return hasattr(self.trt, "IInt8EntropyCalibrator2")

    @property
    def has_layer_precisions(self) -> bool:
        return self._constraint_flag() is not None

    def fast_fp16(self, builder: Optional[Any], capability: Tuple[int, int]) -> bool:
        if builder is not None and hasattr(builder, "platform_has_fast_fp16"):
            return bool(builder.platform_has_fast_fp16)
        return capability in ((5, 3), (6, 0), (6, 2)) or capability >= (7, 0)

    def fast_int8(self, builder: Optional[Any], capability: Tuple[int, int]) -> bool:
        if builder is not None and hasattr(builder, "platform_has_fast_int8"):
            return bool(builder.platform_has_fast_int8)
        return capability >= (6, 1) and capability != (6, 2)  # DP4A; TX2 (sm_62) has none

    def dla_cores(self, builder: Any) -> int:
        return int(getattr(builder, "num_DLA_cores", 0) or 0)

    # ------------------------------------------------------------------ network
    def network_flags(self) -> int:
        """EXPLICIT_BATCH before 10.0 (deprecated in 10.x, gone in 11.x); strongly typed by default in 11."""
        flags = 0
        kinds = self.trt.NetworkDefinitionCreationFlag
        if self.version < (10, 0, 0) and hasattr(kinds, "EXPLICIT_BATCH"):
            flags |= 1 << int(kinds.EXPLICIT_BATCH)
        return flags

    def parser_errors(self, parser: Any) -> List[str]:
        """Every parser error as one line naming its node (10.x adds node name and operator)."""
        lines = []
        for i in range(int(parser.num_errors)):
            err = parser.get_error(i)
            where = f"node {err.node()}"
            if hasattr(err, "node_name"):
                name, op = err.node_name(), err.node_operator() if hasattr(err, "node_operator") else ""
                where += f" {name!r}" + (f" ({op})" if op else "")
            lines.append(f"{where}: {err.desc()} [{err.code()}]")
        return lines

    # ------------------------------------------------------------------ builder config
    def set_workspace(self, config: Any, nbytes: int) -> None:
        """Memory pool limit where it exists (8.4+), else ``max_workspace_size`` (default 0 on 8.0/8.2)."""
        if hasattr(config, "set_memory_pool_limit") and hasattr(self.trt, "MemoryPoolType"):
            config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, int(nbytes))
        else:
            config.max_workspace_size = int(nbytes)

    def set_flag(self, config: Any, name: str) -> None:
        flag = getattr(self.trt.BuilderFlag, name, None)
        if flag is None:
            raise HardwareError(
                f"TensorRT {self.version_text} has no builder flag {name}",
                "this precision or option needs TensorRT 8.x-10.x",
            )
        config.set_flag(flag)

    def set_precision(self, config: Any, precision: str, *, fp16_fallback: bool, qdq: bool = False) -> None:
        """Builder flags for fp32 / fp16 / int8 (int8 also enables fp16 for the layers left in float).

        A Q/DQ model for int8 sets INT8 (+FP16) where the flags exist (8.x, 10.x weakly typed);
        strongly typed TensorRT (11.x) takes the precision from the Q/DQ nodes and sets nothing.
        """
        if precision == "fp32" or (precision == "int8" and qdq and not self.has_precision_flags):
            return
        if not self.has_precision_flags:
            raise HardwareError(
                f"TensorRT {self.version_text} has no {precision.upper()} builder flag (strongly typed)",
                "export the ONNX model in that precision (FP16 types or INT8 Q/DQ nodes) and build it as is",
            )
        if precision == "fp16":
            self.set_flag(config, "FP16")
        elif precision == "int8":
            self.set_flag(config, "INT8")
            if fp16_fallback:
                self.set_flag(config, "FP16")
        else:
            raise ValueError(f"unknown precision {precision!r}")

    def _constraint_flag(self, obey: bool = True) -> Optional[str]:
        flags = self.trt.BuilderFlag
        name = "OBEY_PRECISION_CONSTRAINTS" if obey else "PREFER_PRECISION_CONSTRAINTS"
        if hasattr(flags, name):
            return name
        if hasattr(flags, "STRICT_TYPES"):  # 8.0
            return "STRICT_TYPES"
        return None

    def apply_layer_precisions(
        self, network: Any, config: Any, precisions: Mapping[str, str], *, obey: bool = True
    ) -> None:
        """Pin named layers to a precision ("fp32"/"fp16"/"int8"); fails on 11.x and on unknown names."""
        flag = self._constraint_flag(obey)
        if flag is None:
            raise HardwareError(
                f"per-layer precision is not available in TensorRT {self.version_text} (strongly typed)",
                "put the layer precisions into the ONNX model instead (TensorRT 8.2-10.x support this option)",
            )
        names = {"fp32": "float32", "fp16": "float16", "int8": "int8"}
        wanted = dict(precisions)
        for i in range(int(network.num_layers)):
            layer = network.get_layer(i)
            precision = wanted.pop(layer.name, None)
            if precision is None:
                continue
            dtype = self._dtype_by_name[names[precision]]
            layer.precision = dtype
            for j in range(int(layer.num_outputs)):
                layer.set_output_type(j, dtype)
        if wanted:
            raise ModelError(
                f"layer precision given for layers the network does not have: {', '.join(sorted(wanted))}",
                "use the TensorRT layer names reported by edge-calibrate",
            )
        self.set_flag(config, flag)

    def use_dla(self, config: Any, core: int) -> None:
        """Default to DLA core ``core`` with GPU fallback (plugins and unsupported layers run on the GPU)."""
        config.default_device_type = self.trt.DeviceType.DLA
        config.DLA_core = int(core)
        self.set_flag(config, "GPU_FALLBACK")

    # ------------------------------------------------------------------ INT8
    def calibrator_base(self, algorithm: str = "entropy2") -> type:
        """The TensorRT base class a calibrator must subclass (call its ``__init__``)."""
        if algorithm not in _CALIBRATOR_CLASSES:
            raise ValueError(f"unknown calibration algorithm {algorithm!r}")
        base = getattr(self.trt, _CALIBRATOR_CLASSES[algorithm], None)
        if base is None:
            raise HardwareError(
                f"TensorRT {self.version_text} has no INT8 calibrators (removed in 11.0)",
                "quantize explicitly: give a Q/DQ model (backend.tensorrt.qdq_model, `edge-calibrate --qdq`)",
            )
        return base

    def set_calibrator(self, config: Any, calibrator: Any, profile: Optional[Any] = None) -> None:
        if not hasattr(config, "int8_calibrator"):
            self.calibrator_base()  # raises the explanatory error
        config.int8_calibrator = calibrator
        if profile is not None and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)

    @property
    def calibration_version_code(self) -> int:
        """The version number written in calibration cache headers."""
        major, minor, patch = self.version
        return major * (1000 if major < 10 else 10000) + minor * 100 + patch

    def calibration_header(self, algorithm: str = "entropy2") -> str:
        return f"TRT-{self.calibration_version_code}-{_CALIBRATION_ALGORITHMS[algorithm]}"

    def check_calibration_cache(self, data: bytes, source: str = "calibration cache") -> str:
        """Check a cache's header against this TensorRT; returns its algorithm ("entropy2"/"minmax")."""
        first = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
        match = re.fullmatch(r"TRT-(\d+)-(\w+)", first)
        algos = {v: k for k, v in _CALIBRATION_ALGORITHMS.items()}
        if not match or match.group(2) not in algos:
            raise ModelError(f"{source} is not a TensorRT calibration cache (first line {first[:60]!r})",
                             "make one with edge-calibrate")
        if int(match.group(1)) != self.calibration_version_code:
            raise ModelError(
                f"{source} was written by another TensorRT (header {first}, this is {self.version_text})",
                "calibrate again on this TensorRT version with edge-calibrate",
            )
        return algos[match.group(2)]

    # ------------------------------------------------------------------ timing cache
    def has_timing_cache(self, config: Any) -> bool:
        return hasattr(config, "create_timing_cache")

    def attach_timing_cache(self, config: Any, data: bytes) -> None:
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, False)

    def merged_timing_cache(self, config: Any, on_disk: bytes) -> bytes:
        """The config's timing cache with ``on_disk`` entries combined in, serialized."""
        ours = config.get_timing_cache()
        if ours is None:
            return on_disk
        if on_disk:
            ours.combine(config.create_timing_cache(on_disk), False)
        return bytes(ours.serialize())

    # ------------------------------------------------------------------ build
    def build_serialized(self, builder: Any, network: Any, config: Any) -> Optional[bytes]:
        plan = builder.build_serialized_network(network, config)
        return None if plan is None else bytes(plan)

    # ------------------------------------------------------------------ runtime
    def runtime(self, logger: Any, dla_core: Optional[int] = None) -> Any:
        runtime = self.trt.Runtime(logger)
        if dla_core is not None:
            runtime.DLA_core = int(dla_core)
        return runtime

    def dtype_name(self, dtype: Any) -> str:
        for np_name, member in self._dtype_by_name.items():
            if dtype == member:
                return np_name
        raise ModelError(f"the engine uses tensor type {dtype}, which edge-detector does not handle",
                         "export the model with float32/float16/int32 inputs and outputs")

    @staticmethod
    def uses_tensor_names(engine: Any) -> bool:
        return hasattr(engine, "num_io_tensors")

    def io_tensors(self, engine: Any) -> List[IoTensor]:
        """Inputs and outputs of an engine, from the names API (8.5+) or bindings (8.0/8.2)."""
        out = []
        if self.uses_tensor_names(engine):
            inp = self.trt.TensorIOMode.INPUT
            for i in range(int(engine.num_io_tensors)):
                name = engine.get_tensor_name(i)
                out.append(IoTensor(name, engine.get_tensor_mode(name) == inp, tuple(engine.get_tensor_shape(name)),
                                    self.dtype_name(engine.get_tensor_dtype(name)), i))
        else:
            for i in range(int(engine.num_bindings)):
                dtype = self.dtype_name(engine.get_binding_dtype(i))
                out.append(IoTensor(engine.get_binding_name(i), bool(engine.binding_is_input(i)),
                                    tuple(engine.get_binding_shape(i)), dtype, i))
        return out

    def set_input_shape(self, context: Any, tensor: IoTensor, shape: Sequence[int]) -> None:
        ok = (context.set_input_shape(tensor.name, tuple(shape)) if hasattr(context, "set_input_shape")
              else context.set_binding_shape(tensor.index, tuple(shape)))
        if ok is False:
            raise ModelError(f"the engine does not accept input shape {list(shape)} for {tensor.name}",
                             "rebuild the engine for this batch size (delete the engine cache entry)")

    def execute(self, context: Any, stream_handle: int, tensors: Sequence[IoTensor], addresses: Sequence[int]) -> None:
        """Enqueue one inference on ``stream_handle`` with the device addresses given per tensor."""
        if hasattr(context, "execute_async_v3"):
            for tensor, address in zip(tensors, addresses):
                context.set_tensor_address(tensor.name, int(address))
            ok = context.execute_async_v3(stream_handle)
        else:
            bindings = [0] * len(tensors)
            for tensor, address in zip(tensors, addresses):
                bindings[tensor.index] = int(address)
            ok = context.execute_async_v2(bindings, stream_handle)
        if not ok:
            raise HardwareError("TensorRT could not enqueue the inference",
                                "see TensorRT's log lines above; the engine or the GPU state is bad")

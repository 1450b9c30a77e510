"""The objects of the TensorRT contract fakes (see ``tensorrt_fake``). NOT TensorRT."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np

_OPSET_CEILING = {"8.0": 13, "8.2": 13, "8.5": 17, "8.6": 17, "10": 20, "11": 24}
_ONNX_TYPES = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 3: "INT8", 9: "BOOL", 2: "UINT8"}
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "INT8": np.int8,
       "BOOL": np.bool_, "UINT8": np.uint8}
_SESSIONS: Dict[str, Any] = {}


def band_of(trt: Any) -> str:
    major, minor = (int(x) for x in trt.__version__.split(".")[:2])
    return f"{major}.{minor}" if major < 10 else str(major)


class Strict:
    """Attributes outside ``_attrs`` (or hidden by the band) cannot be set; hidden ones cannot be read."""

    _attrs: Set[str] = set()
    _hidden: Set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name in object.__getattribute__(self, "_hidden"):
            raise AttributeError(f"{type(self).__name__}.{name} does not exist in this TensorRT band")
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and (name not in self._attrs or name in self._hidden):
            raise AttributeError(f"cannot set {type(self).__name__}.{name} in this TensorRT band")
        object.__setattr__(self, name, value)


def _member(trt: Any, enum_name: str, value: Any) -> str:
    """The member name of ``value`` in the module's enum; refuses plain ints (values differ by band)."""
    cls = getattr(trt, enum_name)
    if not isinstance(value, cls):
        raise TypeError(f"expected a tensorrt.{enum_name} member, got {value!r}")
    return str(value.name)


class FakeTensor(Strict):
    def __init__(self, name: str, shape: Tuple[int, ...], dtype: Any) -> None:
        self._name, self._shape, self._dtype = name, shape, dtype

    name = property(lambda self: self._name)
    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)


class FakeLayer(Strict):
    _attrs = {"precision"}

    def __init__(self, trt: Any, name: str, op: str, outputs: int) -> None:
        self._trt, self._name, self._op, self._outputs = trt, name, op, outputs
        self._precision: Optional[str] = None
        self._output_types: Dict[int, str] = {}

    name = property(lambda self: self._name)
    num_outputs = property(lambda self: self._outputs)

    @property
    def precision(self) -> Any:
        return self._precision

    @precision.setter
    def precision(self, dtype: Any) -> None:
        self._precision = _member(self._trt, "DataType", dtype)

    def set_output_type(self, index: int, dtype: Any) -> None:
        if not 0 <= index < self._outputs:
            raise IndexError(index)
        self._output_types[index] = _member(self._trt, "DataType", dtype)


class FakeNetwork(Strict):
    def __init__(self, trt: Any, explicit: bool) -> None:
        self._trt, self._explicit = trt, explicit
        self._inputs: List[FakeTensor] = []
        self._outputs: List[FakeTensor] = []
        self._layers: List[FakeLayer] = []
        self._onnx = ""
        self._qdq = False
        self._plugins: List[str] = []

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))
    num_layers = property(lambda self: len(self._layers))

    def get_input(self, i: int) -> FakeTensor:
        return self._inputs[i]

    def get_output(self, i: int) -> FakeTensor:
        return self._outputs[i]

    def get_layer(self, i: int) -> FakeLayer:
        return self._layers[i]


class FakeParserError(Strict):
    def __init__(self, trt: Any, code: int, desc: str, node: int, name: str = "", op: str = "") -> None:
        self._c, self._d, self._n, self._name, self._op = code, desc, node, name, op
        if "node_name" not in trt.features:
            self._hidden = {"node_name", "node_operator"}

    def code(self) -> int:
        return self._c

    def desc(self) -> str:
        return self._d

    def node(self) -> int:
        return self._n

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op


class FakeParser(Strict):
    def __init__(self, trt: Any, network: FakeNetwork, logger: Any) -> None:
        self._trt, self._net = trt, network
        self._errors: List[FakeParserError] = []
        trt.calls.append(("OnnxParser",))

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, i: int) -> FakeParserError:
        return self._errors[i]

    def parse(self, data: bytes) -> bool:
        import onnx

        return self._load(lambda: onnx.load_from_string(bytes(data)), "<bytes>")

    def parse_from_file(self, path: str) -> bool:
        import onnx

        return self._load(lambda: onnx.load(str(path), load_external_data=False), str(path))

    def _fail(self, desc: str, node: int = -1, name: str = "", op: str = "") -> bool:
        self._errors.append(FakeParserError(self._trt, 4, desc, node, name, op))
        return False

    def _load(self, load: Any, where: str) -> bool:
        import onnx

        trt, net = self._trt, self._net
        trt.calls.append(("parse", where))
        try:
            model = load()
        except Exception as exc:  # noqa: BLE001 - any onnx decode failure is a parse error here
            return self._fail(f"Failed to parse ONNX model: {type(exc).__name__}")
        if not net._explicit:
            return self._fail("Network must have explicit batch dimensions (create it with EXPLICIT_BATCH)")
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        if opset > _OPSET_CEILING[band_of(trt)]:
            first = model.graph.node[0]
            return self._fail(f"Unsupported ONNX opset {opset}", 0, first.name, first.op_type)
        for i, node in enumerate(model.graph.node):
            if node.op_type.endswith("_TRT"):
                if not trt.plugins_ready:
                    return self._fail(f"could not find plugin {node.op_type}", i, node.name, node.op_type)
                net._plugins.append(node.op_type)
            elif not onnx.defs.has(node.op_type):
                return self._fail(f"No importer registered for op: {node.op_type}", i, node.name, node.op_type)
            net._layers.append(FakeLayer(trt, node.name or f"node_{i}", node.op_type, len(node.output)))
        net._qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
        init = {t.name for t in model.graph.initializer}
        for vi, dest in [(v, net._inputs) for v in model.graph.input if v.name not in init] + [
            (v, net._outputs) for v in model.graph.output
        ]:
            t = vi.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            kind = _ONNX_TYPES[t.elem_type]
            if kind == "INT64" and not hasattr(trt.DataType, "INT64"):
                kind = "INT32"
            dest.append(FakeTensor(vi.name, dims, getattr(trt.DataType, kind)))
        net._onnx = where
        return True


class FakeProfile(Strict):
    def __init__(self) -> None:
        self._shapes: Dict[str, Tuple[Tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
        self._shapes[name] = (tuple(low), tuple(opt), tuple(high))


class FakeTimingCache(Strict):
    def __init__(self, data: bytes) -> None:
        text = bytes(data).decode() if data else ""
        if text and not text.startswith("FAKETC"):
            raise RuntimeError("timing cache is corrupt")
        self._entries: Set[str] = set(text.split("\n")[1:]) if text else set()

    def serialize(self) -> bytes:
        return ("FAKETC\n" + "\n".join(sorted(self._entries))).encode()

    def combine(self, other: FakeTimingCache, ignore_mismatch: bool) -> bool:
        self._entries |= other._entries
        return True


class FakeConfig(Strict):
    def __init__(self, trt: Any) -> None:
        f = trt.features
        self._trt = trt
        self._flags: Set[str] = set()
        self._pool: Dict[str, int] = {}
        self._profiles: List[FakeProfile] = []
        self._calibration_profile: Optional[FakeProfile] = None
        self._timing: Optional[FakeTimingCache] = None
        self._attrs = {"default_device_type", "DLA_core"}
        self._attrs |= {"max_workspace_size"} if "max_workspace_size" in f else set()
        self._attrs |= {"int8_calibrator"} if "calibrators" in f else set()
        self._hidden = {n for feat, names in (
            ("max_workspace_size", {"max_workspace_size"}),
            ("memory_pool", {"set_memory_pool_limit", "get_memory_pool_limit"}),
            ("calibrators", {"int8_calibrator", "set_calibration_profile"}),
            ("timing_cache", {"create_timing_cache", "set_timing_cache", "get_timing_cache"}),
        ) if feat not in f for n in names}
        self.default_device_type = trt.DeviceType.GPU
        self.DLA_core = -1
        if "max_workspace_size" in f:
            self.max_workspace_size = 0
        if "calibrators" in f:
            self.int8_calibrator = None

    def set_flag(self, flag: Any) -> None:
        self._flags.add(_member(self._trt, "BuilderFlag", flag))

    def clear_flag(self, flag: Any) -> None:
        self._flags.discard(_member(self._trt, "BuilderFlag", flag))

    def get_flag(self, flag: Any) -> bool:
        return _member(self._trt, "BuilderFlag", flag) in self._flags

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self._pool[_member(self._trt, "MemoryPoolType", pool)] = int(size)

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self._pool.get(_member(self._trt, "MemoryPoolType", pool), 0)

    def add_optimization_profile(self, profile: FakeProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def set_calibration_profile(self, profile: FakeProfile) -> bool:
        self._calibration_profile = profile
        return True

    def create_timing_cache(self, data: bytes) -> FakeTimingCache:
        return FakeTimingCache(data)

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        self._timing = cache
        return True

    def get_timing_cache(self) -> Optional[FakeTimingCache]:
        return self._timing


from fakes.tensorrt_build import FakeBuilder  # noqa: E402 - split for size; uses the classes above
from fakes.tensorrt_exec import FakeContext, FakeEngine, FakeRuntime  # noqa: E402

__all__ = ["FakeBuilder", "FakeConfig", "FakeContext", "FakeEngine", "FakeNetwork", "FakeParser", "FakeRuntime",
           "Strict", "band_of"]

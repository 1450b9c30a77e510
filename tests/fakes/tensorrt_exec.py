"""The fake runtime, engine and execution context (contract fakes, NOT TensorRT).

Deserialization fails (returns None, like TensorRT) for a plan of another version or GPU,
a damaged plan, or a plan with plugins before ``init_libnvinfer_plugins``. Execution
checks that every tensor has a valid device address and a concrete shape, then runs the
model on the fake device memory (onnxruntime on the ONNX file, or a registered executor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from fakes.tensorrt_parts import _NP, _SESSIONS, Strict

_NAMES_API = {"num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype"}
_BINDINGS_API = {"num_bindings", "get_binding_name", "get_binding_index", "get_binding_shape", "get_binding_dtype",
                 "binding_is_input"}


class FakeRuntime(Strict):
    _attrs = {"DLA_core"}

    def __init__(self, trt: Any, logger: Any) -> None:
        self._trt = trt
        self.DLA_core = -1
        trt.calls.append(("Runtime",))

    def deserialize_cuda_engine(self, data: bytes) -> Optional[FakeEngine]:
        trt = self._trt
        trt.calls.append(("deserialize_cuda_engine", len(data)))
        raw = bytes(data)
        if not raw.startswith(b"FAKEPLAN"):
            trt.calls.append(("deserialize failed", "magic"))
            return None
        try:
            plan = json.loads(raw[8:].decode())
        except ValueError:
            trt.calls.append(("deserialize failed", "damaged"))
            return None
        if plan["version"] != trt.__version__ or plan["gpu"] != trt.hw.gpu:
            trt.calls.append(("deserialize failed", "The engine plan file is not compatible with this version"))
            return None
        if plan["plugins"] and not trt.plugins_ready:
            trt.calls.append(("deserialize failed", "plugins not initialised"))
            return None
        if plan["dla"] is not None and self.DLA_core != plan["dla"]:
            trt.calls.append(("deserialize failed", "runtime.DLA_core does not match the engine"))
            return None
        return FakeEngine(trt, plan)


class FakeEngine(Strict):
    def __init__(self, trt: Any, plan: Dict[str, Any]) -> None:
        self._trt, self._plan = trt, plan
        self._io: List[Dict[str, Any]] = plan["io"]
        f = trt.features
        self._hidden = (set() if "names" in f else _NAMES_API) | (set() if "bindings" in f else _BINDINGS_API)
        self._contexts = 0

    num_io_tensors = property(lambda self: len(self._io))
    num_bindings = property(lambda self: len(self._io))

    def _find(self, name: str) -> Dict[str, Any]:
        for t in self._io:
            if t["name"] == name:
                return t
        raise KeyError(f"no tensor named {name}")

    def get_tensor_name(self, i: int) -> str:
        return str(self._io[i]["name"])

    def get_tensor_mode(self, name: str) -> Any:
        return self._trt.TensorIOMode.INPUT if self._find(name)["input"] else self._trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return tuple(self._find(name)["shape"])

    def get_tensor_dtype(self, name: str) -> Any:
        return getattr(self._trt.DataType, self._find(name)["dtype"])

    def get_binding_name(self, i: int) -> str:
        return str(self._io[i]["name"])

    def get_binding_index(self, name: str) -> int:
        return [t["name"] for t in self._io].index(name)

    def get_binding_shape(self, i: int) -> Tuple[int, ...]:
        return tuple(self._io[i]["shape"])

    def get_binding_dtype(self, i: int) -> Any:
        return getattr(self._trt.DataType, self._io[i]["dtype"])

    def binding_is_input(self, i: int) -> bool:
        return bool(self._io[i]["input"])

    def create_execution_context(self) -> FakeContext:
        self._trt.cuda.require_context("create_execution_context")
        self._contexts += 1
        return FakeContext(self._trt, self)


class FakeContext(Strict):
    def __init__(self, trt: Any, engine: FakeEngine) -> None:
        self._trt, self._engine = trt, engine
        f = trt.features
        self._hidden = set()
        if "names" not in f:
            self._hidden |= {"set_input_shape", "set_tensor_address", "execute_async_v3"}
        if "bindings" not in f:
            self._hidden |= {"set_binding_shape", "execute_async_v2"}
        self._shapes: Dict[str, Tuple[int, ...]] = {}
        self._addresses: Dict[str, int] = {}
        self.executions = 0

    _attrs = {"executions"}

    def _set_shape(self, name: str, shape: Any) -> bool:
        t = self._engine._find(name)
        shape = tuple(int(d) for d in shape)
        profile = self._engine._plan["profile"].get(name)
        if len(shape) != len(t["shape"]) or any(d >= 0 and d != s for d, s in zip(t["shape"], shape)):
            return False
        if profile and not all(lo <= s <= hi for lo, s, hi in zip(profile[0], shape, profile[2])):
            return False
        self._shapes[name] = shape
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        return self._set_shape(name, shape)

    def set_binding_shape(self, index: int, shape: Any) -> bool:
        return self._set_shape(self._engine._io[index]["name"], shape)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self._engine._find(name)
        self._addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self._trt.calls.append(("execute_async_v3", stream_handle))
        return self._run(self._addresses, stream_handle)

    def execute_async_v2(self, bindings: List[int], stream_handle: int) -> bool:
        self._trt.calls.append(("execute_async_v2", stream_handle))
        if len(bindings) != len(self._engine._io):
            return False
        return self._run({t["name"]: int(b) for t, b in zip(self._engine._io, bindings)}, stream_handle)

    def _run(self, addresses: Dict[str, int], stream: int) -> bool:
        trt, cuda = self._trt, self._trt.cuda
        cuda.require_context("execute")
        if not isinstance(stream, int) or not stream:
            return False
        io = self._engine._io
        batch = None
        inputs: Dict[str, np.ndarray] = {}
        for t in io:
            if t["name"] not in addresses or not addresses[t["name"]]:
                trt.calls.append(("execute failed", f"no address for {t['name']}"))
                return False
            if t["input"]:
                shape = self._shapes.get(t["name"], tuple(t["shape"]))
                if any(d < 0 for d in shape):
                    trt.calls.append(("execute failed", f"input shape of {t['name']} not set"))
                    return False
                dt = np.dtype(_NP[t["dtype"]])
                raw = cuda.resolve(addresses[t["name"]], int(np.prod(shape)) * dt.itemsize)
                inputs[t["name"]] = raw.view(dt).reshape(shape).copy()
                batch = shape[0]
        outputs = self._execute(inputs)
        for t in io:
            if t["input"]:
                continue
            shape = tuple(batch if d < 0 and i == 0 else d for i, d in enumerate(t["shape"]))
            data = np.asarray(outputs[t["name"]], _NP[t["dtype"]]).reshape(shape)
            cuda.resolve(addresses[t["name"]], data.nbytes)[:] = data.view(np.uint8).reshape(-1)
        self.executions += 1
        return True

    def _execute(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        onnx = self._engine._plan["onnx"]
        executor = self._trt.executors.get(Path(onnx).name)
        if executor is not None:
            return dict(executor(inputs))
        session = _SESSIONS.get(onnx)
        if session is None:
            import onnxruntime as ort

            session = _SESSIONS[onnx] = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        feed = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in inputs.items()}
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feed)))

"""Runs a deserialized TensorRT engine: one execution context and one stream per runner.

The runner is the daemon's :class:`~edge.infer.base.Backend` for TensorRT. Inputs come
either as a host numpy batch (copied to the device on the runner's stream) or as a
``DeviceBatch`` from the CUDA preprocessor, already in one of the runner's input slots;
the stream then waits on the batch's ``ready`` event and, after enqueueing the inference,
records ``slot_consumed[slot]`` so the preprocessor does not overwrite the slot too early.
Outputs are copied back into pinned host buffers and returned as fresh numpy arrays, in the
engine's layout and names (the same as ONNX Runtime's), so the decoders consume them as is.

Version differences (names vs bindings API, shapes, dtypes) go through :class:`TrtCompat`.
All CUDA work happens with the device's primary context pushed; ``close`` pushes it itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edge.errors import HardwareError, ModelError
from edge.infer.base import Backend, BackendInfo, TensorSpec
from edge.infer.cuda import CudaDevice, DeviceBuffer, PinnedFrames, Resources
from edge.infer.tensorrt.compat import IoTensor, TrtCompat

log = logging.getLogger(__name__)


class EngineLoadError(ModelError):
    """TensorRT refused a serialized engine (other TensorRT or GPU, corrupt file)."""


class TensorRtRunner(Backend):
    """See the module docstring. Owns ``device`` (closes it) when ``own_device``."""

    def __init__(
        self,
        compat: TrtCompat,
        device: CudaDevice,
        plan: bytes,
        *,
        batch: int = 1,
        dla_core: Optional[int] = None,
        precision: str = "fp32",
        detail: str = "",
        mapped_memory: str = "auto",
        gpu_preprocess: bool = True,
        slots: int = 2,
        own_device: bool = False,
    ) -> None:
        self.compat = compat
        self.device = device
        self.cuda = device.cuda
        self._own_device = own_device
        self._mapped_memory = mapped_memory
        self._gpu_preprocess = gpu_preprocess
        self._res = Resources(self.cuda)
        self._frames: Optional[PinnedFrames] = None
        self._lock = threading.Lock()
        self._closed = False
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        with device.activated():
            try:
                self._open(plan, batch, dla_core, slots)
            except BaseException:
                self._release()
                raise
        api = "names API (execute_async_v3)" if compat.uses_tensor_names(self._engine) else "bindings API (v2)"
        self.info = BackendInfo("tensorrt", precision, device.describe(),
                                f"TensorRT {compat.version_text}, {api}" + (f", {detail}" if detail else ""))

    # ------------------------------------------------------------------ setup
    def _open(self, plan: bytes, batch: int, dla_core: Optional[int], slots: int) -> None:
        compat = self.compat
        logger = compat.logger()
        compat.init_plugins(logger)
        self._runtime = compat.runtime(logger, dla_core)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise EngineLoadError(
                f"TensorRT {compat.version_text} could not deserialize the engine on {self.device.name}",
                "it was built by another TensorRT or for another GPU, or the file is damaged: rebuild it",
            )
        io = compat.io_tensors(self._engine)
        ins = [t for t in io if t.is_input]
        outs = [t for t in io if not t.is_input]
        if len(ins) != 1 or not outs:
            raise ModelError(f"the engine has {len(ins)} inputs and {len(outs)} outputs",
                             "edge-detector runs detectors with one image input")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise HardwareError("TensorRT could not create an execution context (out of device memory?)",
                                "stop other GPU processes or use a smaller batch")
        self._input = ins[0]
        in_shape = _concrete(ins[0], batch)
        if any(d < 0 for d in ins[0].shape):
            compat.set_input_shape(self._context, ins[0], in_shape)
        self._io: List[IoTensor] = io
        self._shapes: Dict[str, Tuple[int, ...]] = {t.name: _concrete(t, batch) for t in io}
        self.inputs = [TensorSpec(ins[0].name, in_shape, ins[0].dtype)]
        self.outputs = [TensorSpec(t.name, self._shapes[t.name], t.dtype) for t in outs]

        res = self._res
        self._stream = res.stream()
        in_bytes = _nbytes(in_shape, ins[0].dtype)
        self._slots: List[DeviceBuffer] = [res.buffer(in_bytes) for _ in range(max(1, slots))]
        self.input_slots: List[int] = [b.ptr for b in self._slots]
        self.slot_consumed: List[Any] = [res.event() for _ in self._slots]
        self._host_input = res.pinned(in_shape, np.dtype(ins[0].dtype))
        self._host_device_input = res.buffer(in_bytes)
        self._out_dev: Dict[str, DeviceBuffer] = {}
        self._out_host: Dict[str, np.ndarray] = {}
        for t in outs:
            shape = self._shapes[t.name]
            self._out_dev[t.name] = res.buffer(_nbytes(shape, t.dtype))
            self._out_host[t.name] = res.pinned(shape, np.dtype(t.dtype))
        log.info("engine ready: input %s %s %s, outputs %s", ins[0].name, list(in_shape), ins[0].dtype,
                 ", ".join(f"{t.name} {list(self._shapes[t.name])} {t.dtype}" for t in outs))

    # ------------------------------------------------------------------ Backend hooks
    def activate(self) -> None:
        self.device.push()

    def deactivate(self) -> None:
        self.device.pop()

    def activated(self) -> Any:
        return self.device.activated()

    @property
    def mapped(self) -> bool:
        """Whether frame buffers are mapped into the GPU (zero copy)."""
        can = self.device.can_map_host_memory
        if self._mapped_memory == "on":
            if not can:
                raise HardwareError(f"{self.device.name} cannot map host memory",
                                    "set backend.tensorrt.mapped_memory: auto or off")
            return True
        return self._mapped_memory == "auto" and can and self.device.integrated

    def frame_allocator(self) -> Optional[Callable[[Tuple[int, ...]], np.ndarray]]:
        """Pinned (mapped on integrated GPUs) frame buffers, when the CUDA preprocessor is used."""
        if not self._gpu_preprocess:
            return None
        with self._lock:
            if self._frames is None:
                self._frames = PinnedFrames(self.device, self.mapped)
                log.info("frame buffers: pinned host memory%s", ", mapped (zero copy)" if self.mapped else "")
            return self._frames

    def frame_lookup(self, image: np.ndarray) -> Optional[int]:
        frames = self._frames
        return frames.lookup(image) if frames is not None else None

    def make_preprocessor(self, geometry: Any) -> Optional[Any]:
        """The CUDA preprocessor writing into this engine's input slots (None when disabled)."""
        if not self._gpu_preprocess:
            return None
        shape = self.inputs[0].shape
        if (geometry.batch, 3, geometry.height, geometry.width) != tuple(shape) or geometry.dtype != self._input.dtype:
            raise ModelError(f"preprocessing geometry {geometry} does not match the engine input {list(shape)}",
                             "check model.input against the model")
        from edge.preprocess.cuda import CudaPreprocessor  # the backend hands its stage-specific preprocessor out

        with self.device.activated():
            return CudaPreprocessor(geometry, self)

    # ------------------------------------------------------------------ inference
    def infer(self, batch: Any) -> Dict[str, np.ndarray]:
        if self._closed:
            raise RuntimeError("TensorRT runner is closed")
        cuda, stream = self.cuda, self._stream
        slot: Optional[int] = None
        if isinstance(batch, np.ndarray):
            address = self._upload(batch)
        else:  # a DeviceBatch from the CUDA preprocessor
            stream.wait_for_event(batch.ready)
            address, slot = int(batch.ptr), int(batch.slot)
        addresses = [address if t.is_input else self._out_dev[t.name].ptr for t in self._io]
        self.compat.execute(self._context, stream.handle, self._io, addresses)
        if slot is not None:
            self.slot_consumed[slot].record(stream)
        for name, host in self._out_host.items():
            cuda.memcpy_dtoh_async(host, self._out_dev[name].ptr, stream)
        stream.synchronize()
        return {name: host.copy() for name, host in self._out_host.items()}

    def _upload(self, batch: np.ndarray) -> int:
        want = self._host_input.shape
        if batch.ndim != len(want) or batch.shape[1:] != want[1:] or not 0 < batch.shape[0] <= want[0]:
            raise ValueError(f"input batch {batch.shape} does not fit the engine input {list(want)}")
        n = batch.shape[0]
        np.copyto(self._host_input[:n], batch, casting="same_kind")
        self.cuda.memcpy_htod_async(self._host_device_input.ptr, self._host_input, self._stream)
        return self._host_device_input.ptr

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Free context, engine, runtime, buffers and streams; from any thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self.device.activated():
            self._release()
        if self._own_device:
            self.device.close()

    def _release(self) -> None:
        self._res.close()  # synchronizes the stream first
        self._context = None  # context before engine before runtime
        self._engine = None
        self._runtime = None
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.close()


def _concrete(t: IoTensor, batch: int) -> Tuple[int, ...]:
    """The tensor's shape with a dynamic batch set to ``batch``; other dynamic dimensions are refused."""
    shape = list(t.shape)
    if shape and shape[0] < 0:
        shape[0] = batch
    if any(d < 0 for d in shape):
        raise ModelError(f"engine tensor {t.name} has data-dependent or dynamic dimensions {list(t.shape)}",
                         "use a model with fixed spatial sizes and fixed-size outputs (e.g. EfficientNMS)")
    return tuple(shape)


def _nbytes(shape: Tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize

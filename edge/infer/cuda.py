"""CUDA through pycuda: the device's primary context, streams, events and buffers.

One :class:`CudaDevice` per GPU holds the primary context (the one TensorRT's runtime uses
too). Every thread that touches CUDA pushes it first (:meth:`CudaDevice.activated`, or
``Backend.activate``/``deactivate``) and pops it when done; nothing relies on
``pycuda.autoinit``. Every buffer, stream and event created here is owned by an object
with ``close()`` and released there, never in ``__del__``. pycuda raises
``pycuda.driver.Error`` on every failed CUDA call, so no status goes unchecked.

Host frame buffers (:class:`PinnedFrames`) are page-locked, and on integrated GPUs (Jetson)
mapped into the device's address space (``DEVICEMAP``): the GPU reads them with no copy.
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edge.errors import HardwareError

log = logging.getLogger(__name__)


def load_driver() -> ModuleType:
    """Import and initialise ``pycuda.driver``, or raise a HardwareError saying what to install."""
    try:
        import pycuda.driver as driver
    except ImportError:
        raise HardwareError(
            "pycuda is not installed (needed for TensorRT and the CUDA preprocessing)",
            "pip install 'pycuda>=2022.2' with the CUDA toolkit on PATH (see docs/jetson.md), "
            "or set backend.kind: onnxruntime",
        ) from None
    driver.init()
    return driver


class CudaDevice:
    """One GPU and its retained primary context.

    ``driver`` is ``pycuda.driver`` (tests pass a contract fake). Create and ``close`` it in
    the same thread.
    """

    def __init__(self, ordinal: int = 0, driver: Optional[ModuleType] = None) -> None:
        self.cuda = driver if driver is not None else load_driver()
        count = self.cuda.Device.count()
        if ordinal >= count:
            raise HardwareError(
                f"CUDA device {ordinal} does not exist ({count} found)",
                "check the NVIDIA driver (nvidia-smi / tegrastats) and that this user may use the GPU",
            )
        self.ordinal = ordinal
        self._dev = self.cuda.Device(ordinal)
        self.name: str = self._dev.name()
        cc = self._dev.compute_capability()
        self.compute_capability: Tuple[int, int] = (int(cc[0]), int(cc[1]))
        attrs = self.cuda.device_attribute
        self.integrated = bool(self._dev.get_attribute(attrs.INTEGRATED))
        self.can_map_host_memory = bool(self._dev.get_attribute(attrs.CAN_MAP_HOST_MEMORY))
        self._ctx: Any = self._dev.retain_primary_context()
        self._owner = threading.get_ident()
        self._depth = threading.local()

    # ------------------------------------------------------------------ identity
    @property
    def sm(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    def describe(self) -> str:
        return f"cuda:{self.ordinal} {self.name} ({self.sm}{', integrated' if self.integrated else ''})"

    # ------------------------------------------------------------------ context
    def push(self) -> None:
        """Make the primary context current in this thread (pair with :meth:`pop`)."""
        if self._ctx is None:
            raise RuntimeError("CUDA device already closed")
        self._ctx.push()
        self._depth.n = getattr(self._depth, "n", 0) + 1

    def pop(self) -> None:
        if getattr(self._depth, "n", 0) <= 0:
            raise RuntimeError("CudaDevice.pop() without a matching push() in this thread")
        self.cuda.Context.pop()
        self._depth.n -= 1

    def activated(self) -> _Activated:
        """``with device.activated():`` - push the primary context for the block."""
        return _Activated(self)

    def mem_get_info(self) -> Tuple[int, int]:
        """(free, total) device memory in bytes."""
        with self.activated():
            free, total = self.cuda.mem_get_info()
        return int(free), int(total)

    def close(self) -> None:
        """Give back our retain of the primary context.

        pycuda can release it only from the thread that retained it; from another thread
        the reference is dropped (the primary context is per process and TensorRT's runtime
        holds it too, so nothing of ours stays allocated: buffers and streams are freed by
        their owners' ``close`` before this).
        """
        ctx, self._ctx = self._ctx, None
        if ctx is not None and threading.get_ident() == self._owner:
            ctx.detach()


class _Activated:
    def __init__(self, device: CudaDevice) -> None:
        self.device = device

    def __enter__(self) -> CudaDevice:
        self.device.push()
        return self.device

    def __exit__(self, *exc: object) -> None:
        self.device.pop()


class DeviceBuffer:
    """``nbytes`` of device memory; ``int(buf)`` / ``buf.ptr`` is its address."""

    def __init__(self, cuda: ModuleType, nbytes: int) -> None:
        self._alloc: Any = cuda.mem_alloc(max(1, int(nbytes)))
        self.nbytes = int(nbytes)
        self.ptr = int(self._alloc)

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        alloc, self._alloc = self._alloc, None
        if alloc is not None:
            alloc.free()


class PinnedFrames:
    """The frame allocator for :class:`edge.frames.FrameRing`: page-locked host buffers.

    With ``mapped`` the buffers are also mapped for the device (``DEVICEMAP``), so a kernel
    reads them with no copy. :meth:`lookup` recognises any array that lives in one of these
    buffers (the buffer itself or a view into it) and returns its device address (mapped) or
    0 (pinned only, so an async copy is allowed); it returns None for ordinary memory.
    Capture threads call the allocator, so it pushes the context itself.
    """

    def __init__(self, device: CudaDevice, mapped: bool) -> None:
        self.device = device
        self.cuda = device.cuda
        self.mapped = mapped
        self._lock = threading.Lock()
        self._buffers: Dict[int, Tuple[Any, int, int]] = {}  # host address → (array, nbytes, device address)

    def __call__(self, shape: Tuple[int, ...]) -> np.ndarray:
        flags = self.cuda.host_alloc_flags.DEVICEMAP if self.mapped else 0
        with self.device.activated():
            arr: Any = self.cuda.pagelocked_empty(tuple(shape), np.uint8, mem_flags=flags)
            device = int(arr.base.get_device_pointer()) if self.mapped else 0
        with self._lock:
            self._buffers[arr.ctypes.data] = (arr, arr.nbytes, device)
        return arr

    def lookup(self, image: np.ndarray) -> Optional[int]:
        """Device address of ``image`` (mapped), 0 (pinned, not mapped) or None (not ours)."""
        addr = image.__array_interface__["data"][0]
        end = addr + image.nbytes
        with self._lock:
            for host, (_, nbytes, device) in self._buffers.items():
                if host <= addr and end <= host + nbytes:
                    return device + (addr - host) if device else 0
        return None

    @property
    def count(self) -> int:
        """Buffers allocated so far (no ``__len__``: an empty allocator must still be truthy)."""
        return len(self._buffers)

    def close(self) -> None:
        """Free every buffer; frames still using them must have been released."""
        with self._lock:
            buffers, self._buffers = list(self._buffers.values()), {}
        if buffers:
            with self.device.activated():
                for arr, _, _ in buffers:
                    arr.base.free()


class Resources:
    """Streams, events and device buffers created in one place and released in one ``close``."""

    def __init__(self, cuda: ModuleType) -> None:
        self.cuda = cuda
        self._buffers: List[DeviceBuffer] = []
        self._pinned: List[Any] = []
        self._streams: List[Any] = []

    def buffer(self, nbytes: int) -> DeviceBuffer:
        buf = DeviceBuffer(self.cuda, nbytes)
        self._buffers.append(buf)
        return buf

    def release(self, buf: DeviceBuffer) -> None:
        """Free one buffer early (e.g. a staging buffer resized for a new source size)."""
        if buf in self._buffers:
            self._buffers.remove(buf)
        buf.free()

    def pinned(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        arr: Any = self.cuda.pagelocked_empty(tuple(shape), dtype)
        self._pinned.append(arr)
        return arr

    def stream(self) -> Any:
        s = self.cuda.Stream()
        self._streams.append(s)
        return s

    def event(self) -> Any:
        return self.cuda.Event()

    def close(self) -> None:
        """Wait for the streams, then free buffers (the caller has the context pushed)."""
        streams, self._streams = self._streams, []
        for s in streams:
            s.synchronize()
        buffers, self._buffers = self._buffers, []
        for b in buffers:
            b.free()
        pinned, self._pinned = self._pinned, []
        for arr in pinned:
            arr.base.free()


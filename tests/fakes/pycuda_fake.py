"""A contract fake of ``pycuda`` (driver + compiler), NOT pycuda: for host-side tests only.

It mirrors the subset of pycuda's documented API that edge-detector uses, with the same
names and signatures, and enforces its contracts: every allocation, copy, stream and
kernel launch needs the context pushed in the calling thread (else ``Error``, like pycuda's
"invalid context"); memory is freed at most once; async copies need a stream. Device
memory is host memory behind fake addresses, mapped pinned memory (``DEVICEMAP``) aliases
the host array, and the preprocessing kernel is executed by a numpy transcription, so the
arguments a caller passes are checked by their effect. Calls are recorded in ``log``.
"""

from __future__ import annotations

import itertools
import threading
import types
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from fakes.kernel_reference import letterbox_reference


class Error(Exception):
    """pycuda.driver.Error."""


class FakeCuda:
    """One fake CUDA installation: build with :func:`make_pycuda`."""

    def __init__(self, name: str, capability: Tuple[int, int], integrated: bool, total: int) -> None:
        self.name, self.capability, self.integrated, self.total = name, capability, integrated, total
        self.log: List[Tuple[Any, ...]] = []
        self.memory: Dict[int, np.ndarray] = {}  # base address → uint8 view
        self._addr = itertools.count(0x7F0000000000, 1 << 20)
        self.tls = threading.local()
        self.retained = 0
        self.freed = 0

    # --- memory helpers used by both fakes
    def new_address(self, view: np.ndarray) -> int:
        addr = next(self._addr)
        self.memory[addr] = view
        return addr

    def resolve(self, address: int, nbytes: int) -> np.ndarray:
        for base, view in self.memory.items():
            if base <= address and address + nbytes <= base + view.nbytes:
                return view[address - base : address - base + nbytes]
        raise Error(f"invalid device address {address:#x} (+{nbytes} bytes)")

    def require_context(self, what: str) -> None:
        if not getattr(self.tls, "stack", None):
            raise Error(f"{what}: no CUDA context is current in this thread (invalid context)")


def make_pycuda(
    name: str = "Fake GPU", capability: Tuple[int, int] = (8, 7), integrated: bool = False, total: int = 8 << 30
) -> types.SimpleNamespace:
    """Returns a namespace with ``pycuda``, ``driver`` and ``compiler`` modules and the ``state``."""
    st = FakeCuda(name, capability, integrated, total)
    drv = types.ModuleType("pycuda.driver")
    drv.Error = Error  # type: ignore[attr-defined]
    drv.init = lambda: st.log.append(("init",))  # type: ignore[attr-defined]
    drv.device_attribute = types.SimpleNamespace(INTEGRATED="INTEGRATED", CAN_MAP_HOST_MEMORY="CAN_MAP")  # type: ignore[attr-defined]
    drv.host_alloc_flags = types.SimpleNamespace(PORTABLE=1, DEVICEMAP=2, WRITECOMBINED=4)  # type: ignore[attr-defined]

    class Context:
        def push(self) -> None:
            stack = getattr(st.tls, "stack", None) or []
            stack.append(self)
            st.tls.stack = stack

        @staticmethod
        def pop() -> None:
            stack = getattr(st.tls, "stack", None)
            if not stack:
                raise Error("context::pop: cannot pop non-current context")
            stack.pop()

        @staticmethod
        def synchronize() -> None:
            st.require_context("Context.synchronize")

        def detach(self) -> None:
            st.retained -= 1
            st.log.append(("detach",))

    class Device:
        def __init__(self, ordinal: int) -> None:
            if ordinal != 0:
                raise Error("invalid device ordinal")

        @staticmethod
        def count() -> int:
            return 1

        def name(self) -> str:
            return st.name

        def compute_capability(self) -> Tuple[int, int]:
            return st.capability

        def get_attribute(self, attr: str) -> int:
            return int(st.integrated) if attr == "INTEGRATED" else 1

        def retain_primary_context(self) -> Context:
            st.retained += 1
            return Context()

    class DeviceAllocation:
        def __init__(self, nbytes: int) -> None:
            st.require_context("mem_alloc")
            self.ptr = st.new_address(np.zeros(nbytes, np.uint8))
            self.nbytes = nbytes

        def __int__(self) -> int:
            return self.ptr

        def free(self) -> None:
            st.require_context("DeviceAllocation.free")
            if st.memory.pop(self.ptr, None) is None:
                raise Error("double free")
            st.freed += 1

    class HostAllocation:
        """pagelocked_empty's buffer: numpy arrays made from it have it as ``.base``."""

        def __init__(self, shape: Tuple[int, ...], dtype: Any, mapped: bool) -> None:
            st.require_context("pagelocked_empty")
            dt = np.dtype(dtype)
            self._mem = np.zeros(int(np.prod(shape, dtype=np.int64)) * dt.itemsize, np.uint8)
            self.__array_interface__ = {"shape": tuple(shape), "typestr": dt.str, "version": 3,
                                        "data": (self._mem.ctypes.data, False)}
            self.device_ptr = st.new_address(self._mem) if mapped else None
            self.freed = False

        def get_device_pointer(self) -> int:
            if self.device_ptr is None:
                raise Error("get_device_pointer: memory was not allocated with DEVICEMAP")
            return self.device_ptr

        def free(self) -> None:
            st.require_context("HostAllocation.free")
            if self.freed:
                raise Error("double free")
            self.freed = True
            if self.device_ptr is not None:
                st.memory.pop(self.device_ptr, None)
            st.freed += 1

    class Stream:
        _handles = itertools.count(0x5000)

        def __init__(self, flags: int = 0) -> None:
            st.require_context("Stream")
            self.handle = next(Stream._handles)

        def synchronize(self) -> None:
            st.log.append(("stream.synchronize", self.handle))

        def wait_for_event(self, event: Any) -> None:
            st.log.append(("stream.wait_for_event", self.handle, id(event)))

    class Event:
        def __init__(self, flags: int = 0) -> None:
            st.require_context("Event")

        def record(self, stream: Optional[Stream] = None) -> Event:
            st.log.append(("event.record", id(self), getattr(stream, "handle", 0)))
            return self

        def synchronize(self) -> Event:
            return self

        def query(self) -> bool:
            return True

    def _address(obj: Any) -> int:
        return int(obj)

    def memcpy_htod_async(dest: Any, src: Any, stream: Optional[Stream] = None) -> None:
        st.require_context("memcpy_htod_async")
        if stream is None:
            raise Error("memcpy_htod_async without a stream is synchronous: pass the stream")
        data = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        st.resolve(_address(dest), data.nbytes)[:] = data
        pinned = isinstance(getattr(src, "base", None), HostAllocation)
        st.log.append(("htod", stream.handle, data.nbytes, "pinned" if pinned else "pageable"))

    def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Optional[Stream] = None) -> None:
        st.require_context("memcpy_dtoh_async")
        if stream is None:
            raise Error("memcpy_dtoh_async without a stream")
        out = dest.reshape(-1).view(np.uint8)
        out[:] = st.resolve(_address(src), out.nbytes)
        st.log.append(("dtoh", stream.handle, out.nbytes))

    def mem_get_info() -> Tuple[int, int]:
        st.require_context("mem_get_info")
        return st.total // 2, st.total

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        return np.asarray(HostAllocation(shape, dtype, bool(mem_flags & 2)))

    for f in (Context, Device, Stream, Event, memcpy_htod_async, memcpy_dtoh_async, mem_get_info, pagelocked_empty):
        setattr(drv, f.__name__, f)
    drv.mem_alloc = DeviceAllocation  # type: ignore[attr-defined]
    drv.DeviceAllocation = DeviceAllocation  # type: ignore[attr-defined]

    comp = types.ModuleType("pycuda.compiler")
    comp.SourceModule = lambda source, nvcc="nvcc", options=None, no_extern_c=False, **kw: _Module(st, source)  # type: ignore[attr-defined]
    pkg = types.ModuleType("pycuda")
    pkg.driver, pkg.compiler = drv, comp  # type: ignore[attr-defined]
    return types.SimpleNamespace(pycuda=pkg, driver=drv, compiler=comp, state=st)


class _Module:
    def __init__(self, st: FakeCuda, source: str) -> None:
        self.st, self.source = st, source

    def get_function(self, name: str) -> _Kernel:
        if f"void {name}(" not in self.source:
            raise Error(f"no kernel named {name}")
        return _Kernel(self.st)


class _Kernel:
    """Runs the preprocessing kernel's numpy transcription on fake device memory."""

    def __init__(self, st: FakeCuda) -> None:
        self.st = st
        self.types: Optional[str] = None
        self.launches = 0

    def prepare(self, arg_types: str) -> _Kernel:
        self.types = arg_types
        return self

    def prepared_async_call(self, grid: Tuple[int, ...], block: Tuple[int, ...], stream: Any, *args: Any) -> None:
        self.st.require_context("prepared_async_call")
        if self.types is None or len(args) != len(self.types):
            raise Error(f"kernel launched with {len(args)} arguments, prepared for {self.types}")
        for t, a in zip(self.types, args):
            if (t in "Pi" and not isinstance(a, (int, np.integer))) or (t == "f" and not isinstance(a, (float, int))):
                raise Error(f"argument {a!r} does not match type {t}")
        (src, sw, sh, pitch, dst, dw, dh, half, nw, nh, px, py, stx, sty, c0, c1, c2, *rest) = args
        if grid[0] * block[0] < dw or grid[1] * block[1] < dh:
            raise Error("grid does not cover the output")
        scale, shift, pad = rest[0:3], rest[3:6], rest[6]
        image = np.lib.stride_tricks.as_strided(self.st.resolve(src, (sh - 1) * pitch + sw * 3),
                                                shape=(sh, sw, 3), strides=(pitch, 3, 1))
        out = letterbox_reference(image, dw, dh, nw, nh, px, py, stx, sty, (c0, c1, c2), scale, shift, pad)
        dtype = np.float16 if half else np.float32
        data = out.astype(dtype).view(np.uint8).reshape(-1)
        self.st.resolve(dst, data.nbytes)[:] = data
        self.launches += 1
        self.st.log.append(("kernel", getattr(stream, "handle", 0), src, dst))

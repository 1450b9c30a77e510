"""GPU fixtures (marker ``cuda``): a real CUDA device through pycuda, or a clear skip."""

from __future__ import annotations

from typing import Any, Iterator, List, Optional

import numpy as np
import pytest

from edge.infer.cuda import CudaDevice, PinnedFrames, Resources


def _device_or_skip() -> CudaDevice:
    try:
        import pycuda.driver as cuda
    except ImportError:
        pytest.skip("needs pycuda and an NVIDIA GPU (pip install pycuda with the CUDA toolkit; see docs/jetson.md)")
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            pytest.skip("needs an NVIDIA GPU: pycuda found no CUDA device")
    except cuda.Error as exc:
        pytest.skip(f"needs an NVIDIA GPU: CUDA did not initialise ({exc})")
    return CudaDevice(0)


@pytest.fixture(scope="session")
def device() -> Iterator[CudaDevice]:
    dev = _device_or_skip()
    yield dev
    dev.close()


class GpuTarget:
    """What the TensorRT runner lends the CUDA preprocessor (input slots, events, frames), without TensorRT."""

    def __init__(self, device: CudaDevice, nbytes: int, slots: int = 2, mapped: Optional[bool] = None) -> None:
        self.device = device
        self.cuda = device.cuda
        with device.activated():
            self.res = Resources(self.cuda)
            self._slots = [self.res.buffer(nbytes) for _ in range(slots)]
            self.input_slots: List[int] = [b.ptr for b in self._slots]
            self.slot_consumed = [self.res.event() for _ in range(slots)]
            self.stream = self.res.stream()  # plays the inference stream
        self.nbytes = nbytes
        self.frames = PinnedFrames(device, bool(mapped)) if mapped is not None else None

    def frame_lookup(self, image: np.ndarray) -> Optional[int]:
        return self.frames.lookup(image) if self.frames is not None else None

    def activated(self) -> Any:
        return self.device.activated()

    def consume(self, batch: Any, dtype: Any, shape: Any) -> np.ndarray:
        """What an inference would see: wait for the batch on the 'inference' stream, copy it back."""
        host = np.empty(shape, dtype)
        self.stream.wait_for_event(batch.ready)
        self.cuda.memcpy_dtoh_async(host, batch.ptr, self.stream)
        self.slot_consumed[batch.slot].record(self.stream)
        self.stream.synchronize()
        return host

    def close(self) -> None:
        with self.device.activated():
            self.res.close()
        if self.frames is not None:
            self.frames.close()


@pytest.fixture
def make_target(device: CudaDevice) -> Iterator[Any]:
    made: List[GpuTarget] = []

    def make(nbytes: int, slots: int = 2, mapped: Optional[bool] = None) -> GpuTarget:
        t = GpuTarget(device, nbytes, slots, mapped)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


@pytest.fixture(scope="session")
def kernel(device: CudaDevice) -> Any:
    """The preprocessing kernel, compiled once for the session (as the daemon does at start)."""
    from edge.preprocess.cuda import compile_kernel

    with device.activated():
        return compile_kernel()

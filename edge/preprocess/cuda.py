"""Preprocessing on the GPU: one CUDA kernel from BGR uint8 frames to the engine's NCHW input.

Per output pixel the kernel does the letterbox (or stretch) placement, bilinear sampling
with OpenCV's ``INTER_LINEAR`` conventions (half-pixel centres, edge clamping, rounding to
whole pixel levels like cv2's uint8 resize), the colour order, the scaling
``(pixel - mean) / std`` and the NCHW layout, writing FP32 or FP16 straight into the
engine's input buffer. It is compiled once, when the preprocessor is created.

Frames reach the kernel with no copy when they live in mapped pinned memory (Jetson),
with one async host-to-device copy on this preprocessor's stream when they are pinned
(discrete GPU), and with a plain copy otherwise. The target (the TensorRT runner) lends
``slots`` input buffers; before a slot is written again, this stream waits on the event
the runner recorded after the inference that read it, so preprocessing of batch n+1
overlaps inference of batch n and never overwrites a batch still in use.

Callers push the CUDA context in their thread (``Backend.activate``). Only ``pycuda`` is
used here; the target is duck-typed (see :class:`CudaTarget`) so no stage imports another.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ContextManager, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from edge.errors import HardwareError
from edge.preprocess.base import InputGeometry, Preprocessor
from edge.preprocess.geometry import Placement, place

log = logging.getLogger(__name__)

KERNEL_NAME = "letterbox_nchw"
BLOCK = (32, 8, 1)
KERNEL_SOURCE = r"""
extern "C" __global__ void letterbox_nchw(
    const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch,
    unsigned char* __restrict__ dst, int dst_w, int dst_h, int half,
    int new_w, int new_h, int pad_x, int pad_y, float step_x, float step_y,
    int c0, int c1, int c2, float s0, float s1, float s2, float b0, float b1, float b2, float pad)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    float v0 = pad, v1 = pad, v2 = pad;
    const int rx = x - pad_x, ry = y - pad_y;
    if (rx >= 0 && ry >= 0 && rx < new_w && ry < new_h) {
        float fx = (rx + 0.5f) * step_x - 0.5f, fy = (ry + 0.5f) * step_y - 0.5f;
        int x0 = (int)floorf(fx), y0 = (int)floorf(fy);
        float ax = fx - x0, ay = fy - y0;
        if (x0 < 0) { x0 = 0; ax = 0.f; }
        if (x0 >= src_w - 1) { x0 = src_w - 1; ax = 0.f; }
        if (y0 < 0) { y0 = 0; ay = 0.f; }
        if (y0 >= src_h - 1) { y0 = src_h - 1; ay = 0.f; }
        const int x1 = min(x0 + 1, src_w - 1), y1 = min(y0 + 1, src_h - 1);
        const unsigned char* r0 = src + (size_t)y0 * src_pitch;
        const unsigned char* r1 = src + (size_t)y1 * src_pitch;
        float px[3];
        #pragma unroll
        for (int k = 0; k < 3; ++k) {
            const float top = r0[x0 * 3 + k] + ax * (r0[x1 * 3 + k] - r0[x0 * 3 + k]);
            const float bot = r1[x0 * 3 + k] + ax * (r1[x1 * 3 + k] - r1[x0 * 3 + k]);
            px[k] = rintf(top + ay * (bot - top));
        }
        v0 = px[c0]; v1 = px[c1]; v2 = px[c2];
    }
    const float o0 = v0 * s0 + b0, o1 = v1 * s1 + b1, o2 = v2 * s2 + b2;
    const size_t plane = (size_t)dst_w * dst_h, i = (size_t)y * dst_w + x;
    if (half) {
        unsigned short* d = (unsigned short*)dst;
        unsigned short h0, h1, h2;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h0) : "f"(o0));
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h1) : "f"(o1));
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h2) : "f"(o2));
        d[i] = h0; d[plane + i] = h1; d[2 * plane + i] = h2;
    } else {
        float* d = (float*)dst;
        d[i] = o0; d[plane + i] = o1; d[2 * plane + i] = o2;
    }
}
"""
# prepared_async_call argument types, in the kernel's order: pointer "P", int "i", float "f".
ARG_TYPES = "Piii" + "P" + "iii" + "iiii" + "ff" + "iii" + "ffffff" + "f"


class CudaTarget(Protocol):
    """What the preprocessor writes into (implemented by the TensorRT runner)."""

    cuda: ModuleType  # pycuda.driver
    input_slots: List[int]  # device addresses of the input buffers, one per in-flight batch
    slot_consumed: List[Any]  # per slot: the event recorded after the inference that read it

    def frame_lookup(self, image: np.ndarray) -> Optional[int]:
        """Device address of a mapped frame, 0 for a pinned one, None for ordinary memory."""

    def activated(self) -> ContextManager[Any]:
        """Push the CUDA context for a block (close() may run in a thread without it)."""


@dataclass
class DeviceBatch:
    """A batch already in the engine's input buffer ``slot``, complete once ``ready`` has fired."""

    ptr: int
    slot: int
    count: int
    ready: Any  # pycuda Event recorded on the preprocessing stream


def _nvcc() -> Optional[str]:
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.exists(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return None


def compile_kernel() -> Any:
    """Compile the kernel with nvcc (once per process start) and return the prepared function."""
    from pycuda.compiler import SourceModule

    nvcc = _nvcc()
    if nvcc is None:
        raise HardwareError("nvcc (the CUDA compiler) is not found; the CUDA preprocessing kernel needs it",
                            "put /usr/local/cuda/bin on PATH (JetPack installs it there) or set "
                            "backend.tensorrt.gpu_preprocess: false")
    module = SourceModule(KERNEL_SOURCE, nvcc=nvcc, no_extern_c=True, options=["-O3"])
    func = module.get_function(KERNEL_NAME)
    func.prepare(ARG_TYPES)
    return func


def kernel_args(
    src: int, src_w: int, src_h: int, src_pitch: int, dst: int, g: InputGeometry, p: Placement
) -> Tuple[Any, ...]:
    """The kernel's arguments for one image, in order (shared with the contract fake)."""
    order = (0, 1, 2) if g.color == "bgr" else (2, 1, 0)
    scale = [1.0 / s for s in g.std]
    shift = [-m / s for m, s in zip(g.mean, g.std)]
    return (
        src, src_w, src_h, src_pitch,
        dst, g.width, g.height, 1 if g.dtype == "float16" else 0,
        p.new_w, p.new_h, int(p.pad_x), int(p.pad_y), src_w / p.new_w, src_h / p.new_h,
        order[0], order[1], order[2], scale[0], scale[1], scale[2], shift[0], shift[1], shift[2],
        float(g.pad_value),
    )


class CudaPreprocessor(Preprocessor):
    """See the module docstring. ``kernel`` defaults to :func:`compile_kernel`."""

    def __init__(self, geometry: InputGeometry, target: CudaTarget, kernel: Optional[Any] = None) -> None:
        if geometry.dtype not in ("float32", "float16"):
            raise HardwareError(f"the CUDA preprocessor writes float32 or float16, not {geometry.dtype}",
                                "set backend.tensorrt.gpu_preprocess: false")
        self.geometry = geometry
        self.target = target
        self.cuda = target.cuda
        self.buffers = len(target.input_slots)
        self._kernel = kernel if kernel is not None else compile_kernel()
        self._stream = self.cuda.Stream()
        self._events = [self.cuda.Event() for _ in range(self.buffers)]
        self._staging: List[Tuple[Any, int]] = []  # per batch index: (allocation, nbytes)
        self._next = 0
        self._elem = 2 if geometry.dtype == "float16" else 4
        self._image_bytes = 3 * geometry.width * geometry.height * self._elem
        self._grid = ((geometry.width + BLOCK[0] - 1) // BLOCK[0], (geometry.height + BLOCK[1] - 1) // BLOCK[1])
        self._plans: Dict[Tuple[int, int], Tuple[Placement, Tuple[Any, ...]]] = {}
        self._lock = threading.Lock()
        self.copies = 0  # frames that needed a host-to-device copy (not mapped)
        self.zero_copy = 0  # frames read in place through mapped memory

    def placement(self, src_w: int, src_h: int) -> Placement:
        g = self.geometry
        return place(src_w, src_h, g.width, g.height, g.resize, g.center)

    def __call__(self, images: Sequence[np.ndarray]) -> Tuple[DeviceBatch, List[Placement]]:
        g = self.geometry
        if not 0 < len(images) <= g.batch:
            raise ValueError(f"expected 1..{g.batch} images, got {len(images)}")
        with self._lock:
            slot = self._next
            self._next = (slot + 1) % self.buffers
            base = self.target.input_slots[slot]
            # Do not overwrite the slot before the inference that read it has finished.
            self._stream.wait_for_event(self.target.slot_consumed[slot])
            placements = []
            for i, image in enumerate(images):
                h, w = image.shape[:2]
                plan = self._plans.get((w, h))
                if plan is None:  # once per source size: placement and the size-dependent arguments
                    p = self.placement(w, h)
                    plan = self._plans[(w, h)] = (p, kernel_args(0, w, h, 0, 0, g, p)[5:])
                placements.append(plan[0])
                src, pitch = self._source(i, image)
                self._kernel.prepared_async_call(self._grid, BLOCK, self._stream, src, w, h, pitch,
                                                 base + i * self._image_bytes, *plan[1])
            ready = self._events[slot]
            ready.record(self._stream)
        return DeviceBatch(base, slot, len(images), ready), placements

    def _source(self, index: int, image: np.ndarray) -> Tuple[int, int]:
        """Device address and row pitch of ``image``: mapped in place, or copied to a staging buffer."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 BGR image, got {image.dtype} {image.shape}")
        rows_ok = image.strides[1] == 3 and image.strides[2] == 1
        found = self.target.frame_lookup(image) if rows_ok else None
        if found:  # mapped pinned memory: the kernel reads the frame where capture wrote it
            self.zero_copy += 1
            return found, image.strides[0]
        if not image.flags.c_contiguous:
            image = np.ascontiguousarray(image)
        dst = self._staging_buffer(index, image.nbytes)
        # Pinned frames (found == 0) copy asynchronously; pageable ones are staged by the driver.
        self.cuda.memcpy_htod_async(dst, image, self._stream)
        self.copies += 1
        return int(dst), image.shape[1] * 3

    def _staging_buffer(self, index: int, nbytes: int) -> Any:
        while len(self._staging) <= index:
            self._staging.append((None, 0))
        alloc, size = self._staging[index]
        if alloc is None or size < nbytes:
            if alloc is not None:
                self._stream.synchronize()  # the old buffer may still be read by a queued kernel
                alloc.free()
            alloc = self.cuda.mem_alloc(nbytes)
            self._staging[index] = (alloc, nbytes)
        return alloc

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        """Wait for queued work and free the staging buffers; safe from any thread, more than once."""
        staging, self._staging = self._staging, []
        with self.target.activated():
            self._stream.synchronize()
            for alloc, _ in staging:
                if alloc is not None:
                    alloc.free()

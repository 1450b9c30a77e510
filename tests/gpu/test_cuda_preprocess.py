"""The CUDA preprocessing kernel on a real GPU against the CPU path, on real video frames."""

from __future__ import annotations

import threading
from typing import Any, List, Tuple

import cv2
import numpy as np
import pytest

from edge.infer.cuda import CudaDevice
from edge.preprocess.base import InputGeometry
from edge.preprocess.cpu import CpuPreprocessor
from edge.preprocess.cuda import CudaPreprocessor

pytestmark = pytest.mark.cuda

SOURCES = [(768, 576), (1920, 1080), (1280, 720), (640, 480), (333, 517)]
NANODET_NORM = ((103.53, 116.28, 123.675), (57.375, 57.12, 58.395))


def geometry(size: int = 416, resize: str = "letterbox", center: bool = True, dtype: str = "float32",
             color: str = "rgb", norm: Any = None, batch: int = 1) -> InputGeometry:
    mean, std = norm or ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
    return InputGeometry(size, size, batch, color, resize, center, 114, mean, std, dtype)


def frames_of(video_frames: List[np.ndarray], size: Tuple[int, int], n: int = 3) -> List[np.ndarray]:
    out = []
    for f in video_frames[:n * 7:7]:
        out.append(f if f.shape[1::-1] == size else cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    return out


def levels(gpu: np.ndarray, cpu: np.ndarray, g: InputGeometry) -> float:
    """Largest difference in pixel levels (1 level = 1/255 of the 8-bit range)."""
    std = np.array(g.std, np.float32)[None, :, None, None]
    return float((np.abs(gpu.astype(np.float32) - cpu.astype(np.float32)) * std).max())


def run_both(target: Any, kernel: Any, device: CudaDevice, g: InputGeometry, images: List[np.ndarray]) -> Any:
    cpu, cpu_pl = CpuPreprocessor(g)(images)
    dtype = np.float16 if g.dtype == "float16" else np.float32
    with device.activated():
        pre = CudaPreprocessor(g, target, kernel)
        batch, placements = pre(images)
        gpu = target.consume(batch, dtype, cpu.shape)
        pre.close()
    assert placements == cpu_pl
    return gpu, cpu, pre


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("resize", "center"), [("letterbox", True), ("letterbox", False), ("stretch", True)])
@pytest.mark.parametrize(("size", "dtype", "color", "norm"), [
    (416, "float32", "bgr", NANODET_NORM), (640, "float16", "rgb", None), (416, "float16", "bgr", NANODET_NORM),
])
def test_kernel_equals_cpu_path(device, kernel, make_target, video_frames, source, resize, center, size, dtype,
                                color, norm) -> None:
    g = geometry(size, resize, center, dtype, color, norm)
    target = make_target(3 * size * size * (2 if dtype == "float16" else 4))
    worst = 0.0
    for image in frames_of(video_frames, source):
        gpu, cpu, _ = run_both(target, kernel, device, g, [image])
        worst = max(worst, levels(gpu, cpu, g))
    # within one pixel level (1/255); fp16 adds at most one half-precision step (~0.15 level)
    assert worst <= (1.0 if dtype == "float32" else 1.15) + 1e-3, worst


@pytest.mark.parametrize("path", ["numpy", "pinned", "mapped"])
def test_mapped_pinned_and_plain_frames(device, kernel, make_target, video_frames, path) -> None:
    if path == "mapped" and not device.can_map_host_memory:
        pytest.skip(f"{device.name} cannot map host memory")
    g = geometry(640, norm=NANODET_NORM)
    target = make_target(3 * 640 * 640 * 4, mapped={"numpy": None, "pinned": False, "mapped": True}[path])
    images = frames_of(video_frames, (1920, 1080), 2)
    if target.frames is not None:
        bufs = []
        for image in images:
            buf = target.frames(image.shape)
            buf[:] = image
            bufs.append(buf)
        images = bufs
    for image in images:
        gpu, cpu, pre = run_both(target, kernel, device, g, [image])
        assert levels(gpu, cpu, g) <= 1.0 + 1e-3
    if path == "mapped":
        assert pre.zero_copy == 1 and pre.copies == 0
    else:
        assert pre.copies == 1 and pre.zero_copy == 0


def test_batch_of_mixed_sizes(device, kernel, make_target, video_frames) -> None:
    g = geometry(416, batch=2, norm=NANODET_NORM)
    target = make_target(2 * 3 * 416 * 416 * 4)
    images = [frames_of(video_frames, (1920, 1080), 1)[0], frames_of(video_frames, (640, 480), 1)[0]]
    gpu, cpu, _ = run_both(target, kernel, device, g, images)
    assert gpu.shape == (2, 3, 416, 416) and levels(gpu, cpu, g) <= 1.0 + 1e-3


def test_a_slot_is_not_overwritten_before_it_was_consumed(device, kernel, make_target, video_frames) -> None:
    """Inference of batch n (slow) overlaps preprocessing of n+1 and n+2; n+2 reuses n's slot."""
    from pycuda.compiler import SourceModule

    g = geometry(416, norm=NANODET_NORM)
    target = make_target(3 * 416 * 416 * 4)
    a, b, c = frames_of(video_frames, (1280, 720), 3)
    with device.activated():
        spin = SourceModule("""extern "C" __global__ void spin(long long n) {
            long long t0 = clock64(); while (clock64() - t0 < n) {} }""", no_extern_c=True).get_function("spin")
        pre = CudaPreprocessor(g, target, kernel)
        first, _ = pre([a])
        host = target.cuda.pagelocked_empty((1, 3, 416, 416), np.float32)
        target.stream.wait_for_event(first.ready)
        spin(np.int64(200_000_000), block=(1, 1, 1), grid=(1, 1), stream=target.stream)  # ~0.1 s "inference"
        target.cuda.memcpy_dtoh_async(host, first.ptr, target.stream)
        target.slot_consumed[first.slot].record(target.stream)
        second, _ = pre([b])
        third, _ = pre([c])  # same slot as the first: must wait for the consumer
        assert third.slot == first.slot != second.slot
        target.stream.synchronize()
        third.ready.synchronize()
        pre.close()
        seen = host.copy()
        host.base.free()
    ref, _ = CpuPreprocessor(g)([a])
    assert levels(seen, ref, g) <= 1.0 + 1e-3


def test_context_handling_from_a_second_thread(device, kernel, make_target, video_frames) -> None:
    import pycuda.driver as cuda

    g = geometry(416, norm=NANODET_NORM)
    target = make_target(3 * 416 * 416 * 4, mapped=False)
    with device.activated():
        pre = CudaPreprocessor(g, target, kernel)
    image = frames_of(video_frames, (768, 576), 1)[0]
    outcome: dict = {}

    def worker() -> None:
        try:
            pre([image])
            outcome["without"] = "ran"
        except cuda.Error as exc:  # no context pushed in this thread
            outcome["without"] = type(exc).__name__
        buf = target.frames(image.shape)  # the allocator pushes the context itself (capture threads)
        buf[:] = image
        with device.activated():
            batch, _ = pre([buf])
            outcome["with"] = target.consume(batch, np.float32, (1, 3, 416, 416))
        pre.close()  # pushes the context itself

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert outcome["without"] != "ran"
    ref, _ = CpuPreprocessor(g)([image])
    assert levels(outcome["with"], ref, g) <= 1.0 + 1e-3


def test_device_opens_and_closes_repeatedly(device) -> None:
    for _ in range(2):
        other = CudaDevice(0)
        free, total = other.mem_get_info()
        assert 0 < free <= total
        with other.activated():
            buf = other.cuda.mem_alloc(1 << 20)
            buf.free()
        other.close()
    with device.activated():  # the session's device still works
        device.cuda.mem_alloc(1024).free()

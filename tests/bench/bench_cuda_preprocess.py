"""Benchmark: CUDA preprocessing vs the cv2 CPU path, 1080p frames → 416 and 640 inputs, same run.

    EDGE_ASSETS=... python tests/bench/bench_cuda_preprocess.py [--iterations 300]

Prints per-frame milliseconds (median) and the speed-up over the CPU path for each input
size and each way a frame reaches the GPU: mapped pinned memory (zero copy), pinned memory
with one async copy, and an ordinary numpy frame. "latency" waits for each frame; "pipelined"
enqueues frames back to back (what the daemon does while the previous batch infers). The
kernel alone is timed with CUDA events. Needs pycuda and an NVIDIA GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from edge.infer.cuda import CudaDevice, PinnedFrames, Resources  # noqa: E402
from edge.preprocess.base import InputGeometry  # noqa: E402
from edge.preprocess.cpu import CpuPreprocessor  # noqa: E402
from edge.preprocess.cuda import CudaPreprocessor, compile_kernel  # noqa: E402


class Target:
    def __init__(self, device: CudaDevice, nbytes: int, frames: PinnedFrames, resident: Any = None) -> None:
        self.device, self.cuda, self.frames, self.resident = device, device.cuda, frames, resident
        self.res = Resources(device.cuda)
        self._bufs = [self.res.buffer(nbytes) for _ in range(2)]
        self.input_slots = [b.ptr for b in self._bufs]
        self.slot_consumed = [self.res.event() for _ in range(2)]

    def frame_lookup(self, image: np.ndarray) -> Any:
        if self.resident is not None and image is self.resident[0]:
            return int(self.resident[1])  # the frame is already in device memory (e.g. hardware decoded)
        return self.frames.lookup(image)

    def activated(self) -> Any:
        return self.device.activated()


def median_ms(fn: Callable[[], None], n: int) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--cpu-threads", type=int, nargs="+", default=[0, 1],
                    help="cv2 thread counts for the CPU rows (0: OpenCV's default)")
    args = ap.parse_args()
    assets = Path(os.environ.get("EDGE_ASSETS", Path.home() / ".cache" / "edge-detector" / "assets"))
    cap = cv2.VideoCapture(str(assets / "media" / "vtest.avi"))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        sys.exit(f"cannot read {assets / 'media' / 'vtest.avi'} (set EDGE_ASSETS)")
    src = cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    device = CudaDevice(0)
    print(f"device: {device.describe()}; source 1920x1080 BGR; {args.iterations} iterations; "
          f"cv2 {cv2.__version__} with {cv2.getNumThreads()} threads")
    rows: List[Dict[str, Any]] = []
    with device.activated():
        kernel = compile_kernel()
        mapped = PinnedFrames(device, mapped=device.can_map_host_memory)
        pinned = PinnedFrames(device, mapped=False)
        resident = (src.copy(), device.cuda.mem_alloc(src.nbytes))
        device.cuda.memcpy_htod(resident[1], resident[0])
        frames = {"mapped (zero copy)": mapped((1080, 1920, 3)), "pinned + async copy": pinned((1080, 1920, 3)),
                  "numpy + copy": src.copy(), "frame in GPU memory": resident[0]}
        for buf in frames.values():
            buf[:] = src
        for size in (416, 640):
            g = InputGeometry(size, size, 1, "rgb", "letterbox", True, 114, (0, 0, 0), (255, 255, 255))
            cpu = CpuPreprocessor(g)
            default_threads = cv2.getNumThreads()
            cpu_ms = {}
            for threads in args.cpu_threads:
                cv2.setNumThreads(threads or default_threads)
                cpu_ms[threads] = median_ms(lambda cpu=cpu: cpu([src]), args.iterations)  # type: ignore[misc]
                n = threads or default_threads
                label = f"cpu cv2 {n} thread" + ("s" if n > 1 else "")
                rows.append({"size": size, "path": label, "latency": cpu_ms[threads], "pipelined": cpu_ms[threads]})
            cv2.setNumThreads(default_threads)
            base_ms = cpu_ms[args.cpu_threads[0]]
            for name, image in frames.items():
                lookup = mapped if "mapped" in name else pinned
                target = Target(device, 3 * size * size * 4, lookup, resident)
                pre = CudaPreprocessor(g, target, kernel)

                def one(pre: CudaPreprocessor = pre, image: np.ndarray = image) -> None:
                    batch, _ = pre([image])
                    batch.ready.synchronize()

                latency = median_ms(one, args.iterations)
                t = time.perf_counter()
                for _ in range(args.iterations):
                    batch, _ = pre([image])
                    target.slot_consumed[batch.slot].record(pre._stream)
                pre.synchronize()
                pipelined = (time.perf_counter() - t) * 1000 / args.iterations
                start, end = device.cuda.Event(), device.cuda.Event()
                start.record(pre._stream)
                for _ in range(args.iterations):
                    pre([image])
                end.record(pre._stream)
                end.synchronize()
                gpu_ms = start.time_till(end) / args.iterations
                rows.append({"size": size, "path": name, "latency": latency, "pipelined": pipelined,
                             "gpu": gpu_ms, "ratio": base_ms / latency, "ratio_pipe": base_ms / pipelined,
                             "ratio_1": cpu_ms.get(1, float("nan")) / pipelined})
                pre.close()
                target.res.close()
        mapped.close()
        pinned.close()
        resident[1].free()
    device.close()
    first = args.cpu_threads[0]
    print(f"ratios: CPU row '{first or 'default'} threads' / GPU row; last column: 1-thread CPU / GPU pipelined")
    print(f"{'input':>6} {'path':<22} {'latency ms':>11} {'pipelined ms':>13} {'GPU ms':>8} "
          f"{'x (latency)':>12} {'x (pipelined)':>14} {'x 1-thread':>11}")
    nan = float("nan")
    for r in rows:
        print(f"{r['size']:>6} {r['path']:<22} {r['latency']:>11.3f} {r['pipelined']:>13.3f} "
              f"{r.get('gpu', nan):>8.3f} {r.get('ratio', nan):>12.1f} {r.get('ratio_pipe', nan):>14.1f} "
              f"{r.get('ratio_1', nan):>11.1f}")


if __name__ == "__main__":
    main()

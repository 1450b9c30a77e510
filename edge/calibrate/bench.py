"""Speed and memory of one backend: latency median/p99 over a warm run, throughput, memory.

Latency is ``Backend.infer`` on a preprocessed batch, host arrays in and out (so a
TensorRT figure includes its copies, as the daemon pays them). Memory is the growth of
free device memory used (TensorRT) or of the process's resident set (ONNX Runtime on the
CPU) from before the backend was opened to the end of the run; it is labelled as such.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from edge.infer.base import Backend


@dataclass
class Speed:
    """Where and how fast; ``runtime`` is what the selection compares against its target."""

    runtime: str  # "onnxruntime" | "tensorrt"
    device: str  # e.g. "cpu: Intel Xeon (2 threads)" or "cuda:0 Orin (sm_87, integrated)"
    median_ms: float
    p99_ms: float
    throughput_fps: float  # images per second at ``batch``
    batch: int
    runs: int


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_bytes() -> Optional[int]:
    """Resident set size of this process (Linux), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def measure(backend: Backend, batch: np.ndarray, runtime: str, device: str, warmup: int = 10, runs: int = 100,
            tick: Optional[Callable[[int], None]] = None) -> Speed:
    """Warm up, then time ``runs`` calls of ``backend.infer(batch)``."""
    for _ in range(max(0, warmup)):
        backend.infer(batch)
    times = np.empty(max(1, runs), np.float64)
    start = time.perf_counter()
    for i in range(times.size):
        t0 = time.perf_counter()
        backend.infer(batch)
        times[i] = time.perf_counter() - t0
        if tick:
            tick(1)
    total = time.perf_counter() - start
    n = int(batch.shape[0])
    return Speed(runtime, device, float(np.median(times) * 1e3), float(np.percentile(times, 99) * 1e3),
                 float(n * times.size / total), n, int(times.size))


class MemoryProbe:
    """Memory a backend takes: device memory (TensorRT) or host RSS growth (CPU)."""

    def __init__(self, device: Any = None) -> None:
        self.device = device  # edge.infer.cuda.CudaDevice, or None for the CPU
        self.kind = "device memory" if device is not None else "host RSS growth"
        self.before = self._used()
        self.peak = self.before

    def _used(self) -> Optional[int]:
        if self.device is not None:
            free, total = self.device.mem_get_info()
            return int(total - free)
        return rss_bytes()

    def sample(self) -> None:
        now = self._used()
        if now is not None and (self.peak is None or now > self.peak):
            self.peak = now

    @property
    def grown(self) -> Optional[int]:
        if self.before is None or self.peak is None:
            return None
        return max(0, self.peak - self.before)

"""Rolling latency windows and rate counters for stats and STATUS= lines."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, Dict, Iterable, Mapping, Optional, Tuple

import numpy as np


class LatencyWindow:
    """The last ``size`` values of each stage, for median and p99."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._values: Dict[str, Deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, stage_ms: Mapping[str, float]) -> None:
        with self._lock:
            for stage, ms in stage_ms.items():
                q = self._values.get(stage)
                if q is None:
                    q = self._values[stage] = deque(maxlen=self._size)
                q.append(ms)

    def summary(self) -> Dict[str, Dict[str, float]]:
        """stage → {"p50": ms, "p99": ms, "n": count}."""
        with self._lock:
            items = [(k, list(v)) for k, v in self._values.items()]
        out = {}
        for stage, vals in items:
            if vals:
                p50, p99 = np.percentile(vals, [50, 99])
                out[stage] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "n": len(vals)}
        return out


class RateMeter:
    """Events per second over a sliding window of ``window_s`` seconds, per key."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._window = window_s
        self._events: Dict[str, Deque[float]] = {}
        self._lock = threading.Lock()

    def mark(self, key: str, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.get(key)
            if q is None:
                q = self._events[key] = deque()
            q.append(now)
            self._trim(q, now)

    def _trim(self, q: Deque[float], now: float) -> None:
        while q and now - q[0] > self._window:
            q.popleft()

    def rates(self, keys: Optional[Iterable[str]] = None, now: Optional[float] = None) -> Dict[str, float]:
        now = time.monotonic() if now is None else now
        with self._lock:
            names = list(keys) if keys is not None else list(self._events)
            out = {}
            for k in names:
                q = self._events.get(k)
                if not q:
                    out[k] = 0.0
                    continue
                self._trim(q, now)
                span = min(self._window, max(now - q[0], 1e-3)) if len(q) > 1 else self._window
                out[k] = round(len(q) / span, 2) if q else 0.0
            return out


def percentiles(values: Iterable[float]) -> Tuple[float, float]:
    arr = np.fromiter(values, float)
    if arr.size == 0:
        return 0.0, 0.0
    p50, p99 = np.percentile(arr, [50, 99])
    return float(p50), float(p99)

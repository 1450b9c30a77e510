"""Helpers for capture tests: a frame collector, waiting on conditions, thread and memory counts."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List

import psutil


@dataclass
class Seen:
    seq: int
    shape: tuple
    address: int
    monotonic: float
    writeable: bool


class Collector:
    """A ``deliver`` callback that records every frame; releases it unless ``hold``."""

    def __init__(self, hold: bool = False, keep: int = 0) -> None:
        self.hold = hold
        self.keep = keep  # keep the newest ``keep`` frames' images (copied) for content checks
        self.seen: List[Seen] = []
        self.images: List[Any] = []
        self.held: List[Any] = []
        self._cond = threading.Condition()

    def __call__(self, frame: Any) -> None:
        with self._cond:
            self.seen.append(
                Seen(
                    frame.seq,
                    frame.image.shape,
                    frame.image.__array_interface__["data"][0],
                    time.monotonic(),
                    bool(frame.image.flags.writeable),
                )
            )
            if len(self.images) < self.keep:
                self.images.append(frame.image.copy())
            self._cond.notify_all()
        if self.hold:
            self.held.append(frame)
        else:
            frame.release()

    @property
    def count(self) -> int:
        with self._cond:
            return len(self.seen)

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.seen) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def release_all(self) -> None:
        held, self.held = self.held, []
        for frame in held:
            frame.release()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def native_threads() -> int:
    """OS threads of this process (GStreamer's streaming threads included)."""
    return len(os.listdir("/proc/self/task"))


def python_threads() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if not isinstance(t, threading._DummyThread))


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 1e6


def camera(name: str, source: Dict[str, Any], **over: Any) -> Any:
    from edge.config.model import CameraConfig

    reconnect = {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "jitter": 0.1}
    reconnect.update(over.pop("reconnect", {}))
    return CameraConfig(name=name, source=source, reconnect=reconnect, **over)


def stopped(source: Any, timeout: float = 10.0) -> None:
    source.stop(timeout)
    assert source.stats.state.value == "stopped"


def capture_frames(cam: Any, count: int, timeout: float = 30.0, ring: Any = None, **collector: Any) -> Any:
    """Start a real source, wait for ``count`` frames, stop it; returns (collector, source)."""
    from edge.capture import open_source

    seen = Collector(**collector)
    src = open_source(cam, seen, ring)
    src.start()
    try:
        assert seen.wait_for(count, timeout), src.stats.as_dict()
    finally:
        stopped(src)
    return seen, src

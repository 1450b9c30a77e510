"""Per-worker liveness on the monotonic clock.

Each worker thread (a capture per camera, inference, publisher) owns a :class:`Heartbeat`
and calls ``beat()`` whenever it makes progress. The systemd watchdog is fed only while
no heartbeat is older than its limit (see :mod:`edge.health.systemd`).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, List, Optional


class Heartbeat:
    __slots__ = ("last", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()


class Heartbeats:
    """All heartbeats of the daemon; ``probes`` add liveness that is computed, not beaten."""

    def __init__(self) -> None:
        self._beats: Dict[str, Heartbeat] = {}
        self._probes: Dict[str, Callable[[float], bool]] = {}
        self._lock = threading.Lock()

    def register(self, name: str) -> Heartbeat:
        with self._lock:
            hb = self._beats[name] = Heartbeat(name)
            return hb

    def add_probe(self, name: str, alive: Callable[[float], bool]) -> None:
        """``alive(now)`` is asked at each check (e.g. a capture source's own liveness)."""
        with self._lock:
            self._probes[name] = alive

    def remove(self, name: str) -> None:
        with self._lock:
            self._beats.pop(name, None)
            self._probes.pop(name, None)

    def stalled(self, max_age_s: float, now: Optional[float] = None) -> List[str]:
        """Names of workers with no progress for ``max_age_s`` seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            beats = list(self._beats.values())
            probes = list(self._probes.items())
        out = [hb.name for hb in beats if now - hb.last > max_age_s]
        out += [name for name, alive in probes if not alive(now)]
        return out

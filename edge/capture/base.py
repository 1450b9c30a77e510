"""The capture interface: a Source delivers BGR frames of one camera to a callback.

Sources are started and stopped by the daemon; in between they reconnect on their own
(see :mod:`edge.capture.supervisor`). ``deliver`` is called from the source's own thread
with each new frame and must return quickly (it drops the frame into a newest-frame slot).
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from edge.frames import Frame

Deliver = Callable[[Frame], None]


class SourceState(str, enum.Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"
    STOPPED = "stopped"  # stopped by us, or a non-looping file ended
    FAILED = "failed"  # a configuration that cannot work (e.g. a bad pipeline override)


@dataclass
class SourceStats:
    state: SourceState = SourceState.CONNECTING
    frames: int = 0  # frames delivered
    reconnects: int = 0
    dropped: int = 0  # frames the source itself could not hand over (no free buffer)
    last_error: str = ""
    last_frame_monotonic: float = field(default_factory=time.monotonic)
    last_progress_monotonic: float = field(default_factory=time.monotonic)  # frame or state change
    stalls: int = 0  # attempts ended because no frame came for the stall time
    loops: int = 0  # times a looping file started again from its beginning
    state_since_monotonic: float = field(default_factory=time.monotonic)

    def as_dict(self, now: Optional[float] = None) -> Dict[str, Any]:
        """A JSON-ready snapshot for stats messages and logs."""
        now = time.monotonic() if now is None else now
        return {
            "state": self.state.value,
            "state_for_s": round(now - self.state_since_monotonic, 3),
            "frames": self.frames,
            "dropped": self.dropped,
            "reconnects": self.reconnects,
            "stalls": self.stalls,
            "loops": self.loops,
            "last_error": self.last_error,
            "last_frame_age_s": round(now - self.last_frame_monotonic, 3) if self.frames else None,
        }


class Source(ABC):
    """One camera. ``start`` returns at once; frames arrive through ``deliver``."""

    name: str
    stats: SourceStats
    where: str = ""  # the source's location for logs and stats, credentials redacted

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self, timeout: float = 5.0) -> None:
        """Stop capturing and join the source's threads; idempotent."""

    def alive(self, now: Optional[float] = None, stall_s: float = 10.0) -> bool:
        """Liveness for the watchdog: true while the source's thread makes progress.

        A camera that is reconnecting is alive (its supervisor keeps trying); only a
        wedged thread (no frame and no state change for ``stall_s``) is not.
        """
        now = time.monotonic() if now is None else now
        return now - self.stats.last_progress_monotonic < stall_s

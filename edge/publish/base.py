"""The publishing interface: a Sink takes each frame's result, in order, from one thread."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict

from edge.postprocess.types import FrameResult


class Sink(ABC):
    """Where results go (MQTT, stdout). Called only from the publisher thread."""

    name: str = "sink"

    def start(self) -> None:
        """Connect or open; must not block for long (a broker that is down is retried)."""

    @abstractmethod
    def publish(self, result: FrameResult, payload: Dict[str, Any]) -> None:
        """Deliver one frame's payload (built once by the publisher, see payload.py)."""

    def publish_status(self, status: Dict[str, Any]) -> None:
        """The retained device status (version, model, cameras, ...)."""

    def publish_stats(self, stats: Dict[str, Any]) -> None:
        """Periodic counters and latencies."""

    def publish_snapshot(self, camera: str, jpeg: bytes) -> None:
        """A JPEG of a frame with its boxes drawn."""

    def poll(self) -> None:
        """Called regularly by the publisher thread, also when no results arrive."""

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is pending (within ``timeout``) and disconnect."""

    def stats(self) -> Dict[str, Any]:
        """Counters for the stats topic and systemd STATUS=."""
        return {}

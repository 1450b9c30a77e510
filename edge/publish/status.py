"""Topics and the device-level messages: availability, status, stats.

* ``availability`` (retained): ``online`` after each connect, ``offline`` as the broker's
  last will when the connection dies, ``stopped`` on a clean shutdown.
* ``status`` (retained): what runs here (version, model, precision, backend, cameras,
  start time), re-sent after each connect.
* ``stats`` (periodic, through the outbox like detections): whatever the daemon measures,
  plus ``device``, ``session``, ``seq`` and ``ts``.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Dict

from edge.config.model import MqttConfig

ONLINE = b"online"
OFFLINE = b"offline"
STOPPED = b"stopped"
MESSAGE_VERSION = 1


class Topics:
    """The configured topic templates filled in for this device (and camera)."""

    def __init__(self, cfg: MqttConfig, device: str) -> None:
        self._cfg = cfg
        self._fill = {"prefix": cfg.topic_prefix, "device": device}
        self.availability = cfg.availability_topic.format(**self._fill)
        self.status = cfg.status_topic.format(**self._fill)
        self.stats = cfg.stats_topic.format(**self._fill)
        self.command = cfg.command_topic.format(**self._fill)
        self.response = cfg.response_topic.format(**self._fill)
        self._detections: Dict[str, str] = {}

    def detections(self, camera: str) -> str:
        topic = self._detections.get(camera)
        if topic is None:
            topic = self._detections[camera] = self._cfg.detections_topic.format(camera=camera, **self._fill)
        return topic

    def snapshot(self, camera: str) -> str:
        return self._cfg.snapshot_topic.format(camera=camera, **self._fill)


def status_message(status: Dict[str, Any], device: str, session: str) -> Dict[str, Any]:
    return {"v": MESSAGE_VERSION, "device": device, "session": session, "ts": round(time.time(), 3), **status}


def stats_message(stats: Dict[str, Any], device: str, session: str, seq: int) -> Dict[str, Any]:
    return {"v": MESSAGE_VERSION, "device": device, "session": session, "seq": seq,
            "ts": round(time.time(), 3), **stats}


def clean_json(value: Any) -> Any:
    """``value`` with what JSON cannot carry made carriable: NaN/inf → null, other objects → str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return clean_json(value.item())
    return str(value)


def encode_json(value: Dict[str, Any]) -> bytes:
    return json.dumps(clean_json(value), separators=(",", ":"), allow_nan=False).encode()

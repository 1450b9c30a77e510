"""The detections payload, version 1 (documented in docs/mqtt.md).

Built once per frame by the publisher and shared by every sink, so MQTT and stdout
always carry the same bytes.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence

from edge.postprocess.types import FrameResult

PAYLOAD_VERSION = 1


def new_session_id() -> str:
    """A fresh id for this run of the daemon; with ``seq`` it identifies a message."""
    return uuid.uuid4().hex[:16]


@dataclass
class PayloadContext:
    device: str
    model: str
    precision: str
    backend: str
    labels: Sequence[str]
    session: str = field(default_factory=new_session_id)
    _seq: Dict[str, int] = field(default_factory=dict)

    def next_seq(self, camera: str) -> int:
        n = self._seq.get(camera, 0) + 1
        self._seq[camera] = n
        return n


def build_payload(result: FrameResult, ctx: PayloadContext) -> Dict[str, Any]:
    return {
        "v": PAYLOAD_VERSION,
        "device": ctx.device,
        "camera": result.camera,
        "session": ctx.session,
        "seq": ctx.next_seq(result.camera),
        "frame": result.seq,
        "ts": round(result.timestamp, 6),
        "source": {"width": result.width, "height": result.height},
        "model": {"name": ctx.model, "precision": ctx.precision, "backend": ctx.backend},
        "latency_ms": {k: round(v, 3) for k, v in result.latency_ms.items()},
        "detections": result.detections.to_dicts(ctx.labels),
    }


def encode(payload: Dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()

"""Simple sinks: one JSON line per processed frame on stdout."""

from __future__ import annotations

import sys
from typing import IO, Any, Dict, Optional

from edge.postprocess.types import FrameResult
from edge.publish.base import Sink
from edge.publish.payload import encode


class StdoutSink(Sink):
    name = "stdout"

    def __init__(self, stream: Optional[IO[bytes]] = None) -> None:
        self._out = stream or sys.stdout.buffer
        self.count = 0

    def publish(self, result: FrameResult, payload: Dict[str, Any]) -> None:
        try:
            self._out.write(encode(payload) + b"\n")
            self._out.flush()
        except BrokenPipeError:
            pass  # the reader went away (e.g. `| head`); keep detecting for the other sinks
        self.count += 1

    def stats(self) -> Dict[str, Any]:
        return {"stdout_lines": self.count}

"""Record calibration frames from a live camera through the daemon's own capture code.

A stream has no length to spread samples over, so frames are kept at a fixed stride
(one every ``stride`` delivered frames) until enough are recorded; they are written as
lossless PNG files into a folder, which is then sampled like any image folder.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Union

from edge.config.model import CameraConfig, RtspSource
from edge.errors import SourceError
from edge.frames import Frame

log = logging.getLogger(__name__)

Tick = Callable[[int], None]


class _State:
    def __init__(self) -> None:
        self.seen = 0
        self.kept = 0
        self.error = ""


def record_stream(
    source: Union[str, CameraConfig],
    count: int,
    stride: int,
    folder: Path,
    tick: Optional[Tick] = None,
    timeout_s: Optional[float] = None,
) -> Path:
    """Record ``count`` frames (every ``stride``-th) of an RTSP URL or a configured camera into ``folder``."""
    import cv2

    from edge.capture import open_source

    camera = source if isinstance(source, CameraConfig) else CameraConfig(
        name="calibrate", source=RtspSource(kind="rtsp", url=source))
    folder = Path(folder) / "stream-frames"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    stride = max(1, int(stride))
    done = threading.Event()
    state = _State()

    def deliver(frame: Frame) -> None:
        try:
            if done.is_set():
                return
            n = state.seen
            state.seen = n + 1
            if n % stride:
                return
            k = state.kept
            if not cv2.imwrite(str(folder / f"{k:06d}.png"), frame.image):
                state.error = f"cannot write frames into {folder}"
                done.set()
                return
            state.kept = k + 1
            if tick:
                tick(1)
            if k + 1 >= count:
                done.set()
        finally:
            frame.release()

    limit = timeout_s if timeout_s is not None else max(60.0, count * stride / 2.0)
    src = open_source(camera, deliver)
    src.start()
    try:
        deadline = time.monotonic() + limit
        while not done.wait(0.5):
            if time.monotonic() > deadline:
                break
    finally:
        src.stop()
    if state.error:
        raise SourceError(state.error, "check --out")
    if state.kept < count:
        raise SourceError(
            f"recorded only {state.kept} of {count} frames from {camera.name} in {limit:.0f} s "
            f"({src.stats.last_error or 'no error reported'})",
            "check that the stream plays (gst-launch-1.0), or lower --count / --stride",
        )
    log.info("recorded %d frames from %s into %s", state.kept, camera.name, folder)
    return folder

"""One thread per source that never gives up.

Each attempt builds a fresh pipeline, sets it PLAYING and then, on the source's own
thread, pulls frames from the appsink and reads the bus between pulls. An ERROR, an EOS
from a live source, an error reported by our own callbacks, or no frame for the stall time
(no first frame for the connect timeout) ends the attempt: the pipeline goes to NULL, the
thread waits an exponential backoff with jitter (capped) and builds again, forever. The
state (connecting, streaming, backoff, stopped) and the counters live in ``stats``. Every
log line names the camera and its redacted location.
"""

from __future__ import annotations

import logging
import operator
import random
import threading
import time
from dataclasses import dataclass
from functools import reduce
from typing import Any, Optional, Tuple

import numpy as np

from edge.capture.base import Deliver, Source, SourceState, SourceStats
from edge.capture.convert import yuv_to_bgr
from edge.capture.diagnose import explain
from edge.capture.gst import Layout, MappedBuffer, bgr_view, buffer_layout, buffer_pointer, caps_layout, gst_modules
from edge.capture.pipelines import ERROR_MESSAGE, AttemptError, Builder, Graph
from edge.config.model import CameraConfig
from edge.errors import SourceError
from edge.frames import Frame, FrameRing
from edge.threads import name_native_thread

log = logging.getLogger(__name__)

CONVERT_SLOTS = 6

POLL_S = 0.05  # longest wait for a frame before the bus and the stall watchdog are checked


@dataclass
class Outcome:
    reason: str = ""  # why the attempt ended ("" when stopped or finished)
    streamed: bool = False  # at least one frame was delivered
    finished: bool = False  # nothing more will come (non-looping file ended, or stop())
    retry_now: bool = False  # rebuild without waiting (a looping file that could not seek)


def backoff_delay(failures: int, initial: float, maximum: float, jitter: float, rng: random.Random) -> float:
    """``initial * 2**failures``, spread by ±``jitter``, never above ``maximum``."""
    base = min(maximum, initial * (2.0 ** min(failures, 30)))
    return max(0.0, min(maximum, base * (1.0 + jitter * rng.uniform(-1.0, 1.0))))


class GstSource(Source):
    """A GStreamer source with reconnection, stall watchdog and zero-copy frame hand-off."""

    def __init__(
        self,
        camera: CameraConfig,
        deliver: Deliver,
        ring: Optional[FrameRing],
        builder: Builder,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.name = camera.name
        self.stats = SourceStats()
        self.where = builder.where  # already redacted
        self._policy = camera.reconnect
        self._deliver = deliver
        self._ring = ring
        # Without a ring, YUV frames are converted into buffers of our own: reusing them avoids
        # a fresh 1-6 MB allocation (and its page faults) per frame. Enough slots for the frame
        # in the mailbox, two batches in flight and the one being written.
        self._convert_ring = FrameRing(CONVERT_SLOTS)
        self._builder = builder
        self._redact = builder.redact
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._seq = 0
        self._layout: Optional[Tuple[Any, Layout]] = None  # (caps we hold, its layout)

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            self._set_state(SourceState.STOPPED)
            return
        thread.join(timeout)
        if thread.is_alive():
            log.warning("camera %s (%s): capture thread did not stop within %.1f s", self.name, self.where, timeout)

    def alive(self, now: Optional[float] = None, stall_s: float = 10.0) -> bool:
        if self.stats.state == SourceState.STOPPED:
            return True
        thread = self._thread
        if thread is not None and not thread.is_alive():
            return False  # died of a fault in our code (its traceback is logged)
        return super().alive(now, stall_s)

    # ------------------------------------------------------------------ thread
    def _set_state(self, state: SourceState, error: Optional[str] = None) -> None:
        now = time.monotonic()
        if error is not None:
            self.stats.last_error = error
        if state != self.stats.state:
            self.stats.state = state
            self.stats.state_since_monotonic = now
        self.stats.last_progress_monotonic = now

    def _run(self) -> None:
        name_native_thread()
        failures = 0
        attempt = 0
        down_since: Optional[float] = None
        try:
            while not self._stop.is_set():
                attempt += 1
                if attempt > 1:
                    self.stats.reconnects += 1
                self._set_state(SourceState.CONNECTING)
                log.log(
                    logging.INFO if attempt == 1 else logging.DEBUG,
                    "camera %s: connecting to %s (attempt %d)",
                    self.name,
                    self.where,
                    attempt,
                )
                outcome = self._attempt(down_since)
                if outcome.finished or self._stop.is_set():
                    break
                if outcome.streamed:
                    failures, down_since = 0, time.monotonic()
                elif down_since is None:
                    down_since = time.monotonic()
                delay = (
                    0.0
                    if outcome.retry_now
                    else backoff_delay(
                        failures,
                        self._policy.backoff_initial_s,
                        self._policy.backoff_max_s,
                        self._policy.jitter,
                        self._rng,
                    )
                )
                failures += 0 if outcome.retry_now else 1
                self._set_state(SourceState.BACKOFF, outcome.reason)
                # First failure of an outage, every power of two after, and any new reason: WARNING.
                loud = failures & (failures - 1) == 0 or outcome.streamed
                log.log(
                    logging.WARNING if loud else logging.DEBUG,
                    "camera %s (%s): %s; reconnecting in %.1f s (failed attempts in a row: %d)",
                    self.name,
                    self.where,
                    outcome.reason,
                    delay,
                    failures,
                )
                self._wait(delay)
        finally:
            self._set_state(SourceState.STOPPED)
            self._layout = None
            log.info("camera %s (%s): capture stopped", self.name, self.where)

    def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds unless stopped, showing progress at least once a second."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 1.0))
            self.stats.last_progress_monotonic = time.monotonic()

    def _attempt(self, down_since: Optional[float]) -> Outcome:
        Gst = gst_modules().Gst
        try:
            graph = self._builder.build()
        except (AttemptError, SourceError) as exc:
            return Outcome(self._redact(str(exc)))
        bus = graph.pipeline.get_bus()
        try:
            if graph.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                outcome = self._read_bus(bus, graph) or Outcome("the pipeline could not start")
                return outcome
            return self._stream(graph, bus, down_since)
        finally:
            graph.pipeline.set_state(Gst.State.NULL)
            bus.set_flushing(True)
            graph.close()
            self._layout = None

    def _stream(self, graph: Graph, bus: Any, down_since: Optional[float]) -> Outcome:
        sink = graph.appsink
        poll_ns = int(POLL_S * 1e9)
        start = time.monotonic()
        last_frame: Optional[float] = None
        while not self._stop.is_set():
            sample = sink.try_pull_sample(poll_ns)
            now = time.monotonic()
            self.stats.last_progress_monotonic = now
            if sample is not None:
                if last_frame is None:
                    self._set_state(SourceState.STREAMING, "")
                    self._log_streaming(sample, now - start, down_since)
                self._on_sample(sample, now)
                # Measured after the hand-over: a consumer that applies back-pressure
                # (a file processed frame by frame) is not a stalled source.
                last_frame = self.stats.last_progress_monotonic = time.monotonic()
            elif sink.is_eos():
                time.sleep(0.005)  # the bus carries the EOS message in a moment
            outcome = self._read_bus(bus, graph)
            if outcome is not None:
                outcome.streamed = outcome.streamed or last_frame is not None
                return outcome
            if last_frame is None and now - start > self._policy.connect_timeout_s:
                return Outcome(f"no first frame within {self._policy.connect_timeout_s:g} s")
            if last_frame is not None and now - last_frame > self._policy.stall_timeout_s:
                self.stats.stalls += 1
                return Outcome(f"stalled: no frame for {self._policy.stall_timeout_s:g} s", streamed=True)
        return Outcome(finished=True, streamed=last_frame is not None)

    def _log_streaming(self, sample: Any, after: float, down_since: Optional[float]) -> None:
        s = sample.get_caps().get_structure(0)
        size = f"{s.get_int('width')[1]}x{s.get_int('height')[1]}"
        if down_since is None:
            log.info("camera %s (%s): streaming %s, first frame %.2f s after start", self.name, self.where, size, after)
        else:
            log.info(
                "camera %s (%s): streaming %s again after %.1f s down (%d reconnects so far)",
                self.name,
                self.where,
                size,
                time.monotonic() - down_since,
                self.stats.reconnects,
            )

    def _read_bus(self, bus: Any, graph: Graph) -> Optional[Outcome]:
        """Handle pending bus messages; an Outcome when the attempt is over."""
        Gst = gst_modules().Gst
        types = Gst.MessageType
        mask = reduce(operator.or_, (types.ERROR, types.EOS, types.WARNING, types.APPLICATION))
        while True:
            msg = bus.pop_filtered(mask)
            if msg is None:
                return None
            if msg.type == Gst.MessageType.ERROR:
                err, debug = msg.parse_error()
                log.debug("camera %s: error from %s: %s", self.name, msg.src.get_name(), self._redact(debug or ""))
                return Outcome(self._redact(explain(err.message, debug or "", msg.src.get_name())))
            if msg.type == Gst.MessageType.WARNING:
                warn, debug = msg.parse_warning()
                log.info(
                    "camera %s (%s): GStreamer warning from %s: %s",
                    self.name,
                    self.where,
                    msg.src.get_name(),
                    self._redact(warn.message),
                )
            elif msg.type == Gst.MessageType.APPLICATION:
                s = msg.get_structure()
                if s is not None and s.get_name() == ERROR_MESSAGE:
                    return Outcome(self._redact(s.get_string("reason") or "source error"))
            elif msg.type == Gst.MessageType.EOS:
                if graph.live:
                    return Outcome("end of stream from a live source (disconnected)")
                if not graph.loop:
                    log.info("camera %s (%s): end of file", self.name, self.where)
                    return Outcome(finished=True)
                flags = reduce(operator.or_, (Gst.SeekFlags.FLUSH, Gst.SeekFlags.KEY_UNIT))
                if not graph.pipeline.seek_simple(Gst.Format.TIME, flags, 0):
                    return Outcome("end of file and seeking back failed: reopening", retry_now=True)
                self.stats.loops += 1

    def _on_sample(self, sample: Any, now: float) -> None:
        buffer = sample.get_buffer()
        ptr = buffer_pointer(buffer)
        layout = buffer_layout(ptr, self._caps_layout(sample.get_caps()))
        mapped = MappedBuffer(ptr)
        timestamp = time.time()
        try:
            view: Optional[np.ndarray] = bgr_view(mapped, layout) if layout.format == "BGR" else None
            shape = (layout.height, layout.width, 3)
            if view is not None and self._ring is None:
                image, release = view, mapped.release  # zero copy: unmapped when the frame is released
            else:
                slot = (self._ring or self._convert_ring).acquire(shape)
                if slot is None:  # inference holds every buffer: skip this frame
                    self.stats.dropped += 1
                    mapped.release()
                    return
                image, release = slot
                # The one host copy, into the ring's (pinned) memory; YUV is converted on the way.
                if view is not None:
                    np.copyto(image, view)
                else:
                    yuv_to_bgr(mapped, layout, image)
                mapped.release()
        except SourceError:
            mapped.release()
            raise
        self._seq += 1
        frame = Frame(self.name, self._seq, image, timestamp=timestamp, monotonic=now, _release=release)
        self.stats.frames += 1
        self.stats.last_frame_monotonic = now
        try:
            self._deliver(frame)
        except BaseException:
            frame.release()
            raise

    def _caps_layout(self, caps: Any) -> Layout:
        # Keyed by the caps' address; holding the caps keeps that address from being reused.
        cached = self._layout
        if cached is not None and buffer_pointer(cached[0]) == buffer_pointer(caps):
            return cached[1]
        layout = caps_layout(caps)
        self._layout = (caps, layout)
        return layout

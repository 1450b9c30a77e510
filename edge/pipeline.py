"""The processing threads: preprocess → infer → postprocess and publish.

    sources ──put──▶ FrameMailbox ──take (round robin)──▶ [prep] ──▶ [infer] ──▶ [publish] ──▶ sinks
                     (newest frame per camera)              tokens bound the batches in flight

Each stage is one thread, so throughput is set by the slowest stage, not by the sum.
The preprocessor owns ``buffers`` reusable input batches; a token per buffer (taken by
prep, returned by infer) guarantees a buffer is never rewritten while it is inferring.
Items carry the :class:`Engine` they were made with, so a reload can swap engines
without mixing the geometry of one model with another.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

import numpy as np

from edge.frames import Frame, FrameMailbox
from edge.health.heartbeat import Heartbeats
from edge.health.timing import LatencyWindow, RateMeter
from edge.infer.base import Backend
from edge.postprocess.pipeline import Filters, PostProcessor
from edge.postprocess.types import FrameResult
from edge.preprocess.base import InputGeometry, Preprocessor
from edge.preprocess.geometry import Placement
from edge.publish.base import Sink
from edge.publish.payload import PayloadContext, build_payload
from edge.threads import name_native_thread

log = logging.getLogger(__name__)

_STOP = object()


@dataclass
class Engine:
    """Everything that depends on the model and backend; replaced as a whole on reload."""

    backend: Backend
    pre: Preprocessor
    post: PostProcessor
    geometry: InputGeometry
    labels: List[str]

    def close(self) -> None:
        self.pre.close()
        self.backend.close()


@dataclass(frozen=True)
class CameraPolicy:
    filters: Filters
    min_interval_s: float = 0.0  # from detect_fps


@dataclass
class _Batch:
    engine: Engine
    frames: List[Frame]
    tensor: Any
    placements: List[Placement]
    prep_ms: float
    start: float
    outputs: Optional[Dict[str, np.ndarray]] = None
    infer_ms: float = 0.0
    snapshots: Dict[str, np.ndarray] = field(default_factory=dict)


class Pipeline:
    def __init__(
        self,
        mailbox: FrameMailbox,
        engine: Engine,
        policies: Dict[str, CameraPolicy],
        sinks: List[Sink],
        ctx: PayloadContext,
        heartbeats: Heartbeats,
        on_snapshot: Optional[Callable[[str, np.ndarray, FrameResult, List[str]], Optional[bytes]]] = None,
    ) -> None:
        self.mailbox = mailbox
        self._engine = engine
        self.policies = dict(policies)
        self.sinks = list(sinks)
        self.ctx = ctx
        self._tokens = threading.Semaphore(engine.pre.buffers)
        self._to_infer: "queue.Queue[Any]" = queue.Queue()
        self._to_publish: "queue.Queue[Any]" = queue.Queue(maxsize=64)
        self._hb_prep = heartbeats.register("preprocess")
        self._hb_infer = heartbeats.register("inference")
        self._hb_publish = heartbeats.register("publisher")
        self._stop = threading.Event()
        self._snapshot_wanted: Set[str] = set()
        self._on_snapshot = on_snapshot
        self._last_taken: Dict[str, float] = {}
        self._threads: List[threading.Thread] = []
        self._hang_after = int(os.environ.get("EDGE_TEST_HANG_INFER_AFTER", "0") or 0)  # tests only
        self.first_inference = threading.Event()
        self.failed = threading.Event()
        self.failure = ""
        self.latency = LatencyWindow()
        self.processed = RateMeter()
        self.skipped: Dict[str, int] = {}
        self.published = 0
        self.published_by_camera: Dict[str, int] = {}
        # Called on the publisher thread after the last result, before the sinks close.
        self.on_drained: Optional[Callable[[List[Sink]], None]] = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        for name, fn in (("preprocess", self._prep_loop), ("inference", self._infer_loop),
                         ("publisher", self._publish_loop)):
            t = threading.Thread(target=self._guard, args=(name, fn), name=f"edge-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def engine(self) -> Engine:
        return self._engine

    def swap_engine(self, engine: Engine) -> None:
        """Use ``engine`` for every batch prepared from now on; the old one closes once drained."""
        self._engine = engine

    def request_snapshot(self, camera: str) -> None:
        self._snapshot_wanted.add(camera)

    def control(self, fn: Callable[[List[Sink]], None]) -> None:
        """Run ``fn(sinks)`` on the publisher thread, in order with the results before it."""
        self._to_publish.put(fn)

    def stop(self, timeout: float = 10.0) -> bool:
        """Drain: finish every frame already taken, publish it, close the sinks. True if in time."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self.mailbox.close()
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.error("shutdown: %s did not finish within %.0f s", ", ".join(alive), timeout)
        return not alive

    # ------------------------------------------------------------------ threads
    def _guard(self, name: str, fn: Callable[[], None]) -> None:
        name_native_thread()
        try:
            fn()
        except BaseException as exc:
            log.exception("%s thread failed", name)
            self.failure = f"{name}: {type(exc).__name__}: {exc}"
            self.failed.set()
            if name != "publisher":
                self._to_publish.put(_STOP)
            if name == "preprocess":
                self._to_infer.put(_STOP)

    def _admit(self, frame: Frame) -> bool:
        policy = self.policies.get(frame.camera)
        if policy is None:
            return False
        if policy.min_interval_s > 0:
            last = self._last_taken.get(frame.camera)
            if last is not None and frame.monotonic - last < policy.min_interval_s:
                self.skipped[frame.camera] = self.skipped.get(frame.camera, 0) + 1
                return False
            self._last_taken[frame.camera] = frame.monotonic
        return True

    def _prep_loop(self) -> None:
        current: Optional[Engine] = None
        try:
            while True:
                self._hb_prep.beat()
                # Take a free buffer first, then the newest frames: a frame never ages
                # while waiting for the batch before it to finish.
                if not self._tokens.acquire(timeout=0.5):
                    continue
                engine = self._engine
                frames = self.mailbox.take(engine.geometry.batch, timeout=0.5)
                admitted = []
                for f in frames:
                    if self._admit(f):
                        admitted.append(f)
                    else:
                        f.release()
                if not admitted:
                    self._tokens.release()
                    if not frames and self._stop.is_set():
                        break
                    continue
                if engine is not current:
                    if current is not None:
                        current.backend.deactivate()
                    engine.backend.activate()
                    current = engine
                start = time.monotonic()
                tensor, placements = engine.pre([f.image for f in admitted])
                prep_ms = (time.monotonic() - start) * 1000
                self._to_infer.put(_Batch(engine, admitted, tensor, placements, prep_ms, start))
        finally:
            if current is not None:
                current.backend.deactivate()
            self._to_infer.put(_STOP)

    def _infer_loop(self) -> None:
        current: Optional[Engine] = None
        count = 0
        try:
            while True:
                try:
                    item = self._to_infer.get(timeout=0.5)
                except queue.Empty:
                    self._hb_infer.beat()
                    continue
                if item is _STOP:
                    break
                self._hb_infer.beat()
                if item.engine is not current:
                    if current is not None:
                        current.backend.deactivate()
                        current.close()  # every batch of the old engine is done
                    item.engine.backend.activate()
                    current = item.engine
                start = time.monotonic()
                item.outputs = item.engine.backend.infer(item.tensor)
                item.infer_ms = (time.monotonic() - start) * 1000
                count += 1
                if self._hang_after and count >= self._hang_after:
                    log.warning("EDGE_TEST_HANG_INFER_AFTER reached: inference thread hangs on purpose")
                    threading.Event().wait()
                self._tokens.release()
                for f in item.frames:
                    if f.camera in self._snapshot_wanted:
                        self._snapshot_wanted.discard(f.camera)
                        item.snapshots[f.camera] = f.image.copy()
                    f.release()
                item.tensor = None
                self.first_inference.set()
                self._to_publish.put(item)
        finally:
            if current is not None:
                current.backend.deactivate()
            self._to_publish.put(_STOP)

    def _publish_loop(self) -> None:
        try:
            while True:
                try:
                    item = self._to_publish.get(timeout=0.2)
                except queue.Empty:
                    self._hb_publish.beat()
                    for sink in self.sinks:
                        sink.poll()
                    continue
                self._hb_publish.beat()
                if item is _STOP:
                    break
                if callable(item):
                    item(self.sinks)
                    continue
                self._publish_batch(item)
        finally:
            if self.on_drained is not None and not self.failed.is_set():
                self.on_drained(self.sinks)
            for sink in self.sinks:
                sink.close()

    def _publish_batch(self, item: _Batch) -> None:
        engine = item.engine
        outputs = item.outputs or {}
        for i, frame in enumerate(item.frames):
            policy = self.policies.get(frame.camera)
            if policy is None:
                continue
            t0 = time.monotonic()
            det = engine.post(outputs, i, item.placements[i], policy.filters)
            post_ms = (time.monotonic() - t0) * 1000
            now = time.monotonic()
            latency = {
                "queue": (item.start - frame.monotonic) * 1000,
                "preprocess": item.prep_ms,
                "infer": item.infer_ms,
                "postprocess": post_ms,
                "total": (now - frame.monotonic) * 1000,
            }
            result = FrameResult(frame.camera, frame.seq, frame.timestamp, frame.monotonic,
                                 frame.width, frame.height, det, latency)
            payload = build_payload(result, self.ctx)
            for sink in self.sinks:
                sink.publish(result, payload)
            self.published += 1
            self.published_by_camera[frame.camera] = self.published_by_camera.get(frame.camera, 0) + 1
            self.latency.add(latency)
            self.processed.mark(frame.camera, now)
            snap = item.snapshots.get(frame.camera)
            if snap is not None and self._on_snapshot is not None:
                jpeg = self._on_snapshot(frame.camera, snap, result, engine.labels)
                if jpeg:
                    for sink in self.sinks:
                        sink.publish_snapshot(frame.camera, jpeg)
        for sink in self.sinks:
            sink.poll()

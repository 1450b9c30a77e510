"""The daemon: builds the pipeline from the config, runs it, reloads it, shuts it down.

One main thread owns every change of state. Signal handlers and remote commands only
queue a request; the main loop (woken at least 4× a second) carries it out, feeds the
systemd watchdog, updates STATUS= and publishes stats. SIGTERM and SIGINT share one
shutdown path: stop capture, drain the frames in flight, flush and close the sinks.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from edge import report
from edge.config.model import CameraConfig, Config, FileSource
from edge.errors import EdgeError
from edge.frames import Frame, FrameMailbox, FrameRing
from edge.health.heartbeat import Heartbeats
from edge.pipeline import CameraPolicy, Engine, Pipeline
from edge.postprocess.pipeline import Filters
from edge.publish.base import Sink
from edge.publish.payload import PayloadContext

log = logging.getLogger(__name__)

RING_SLOTS = 4  # per camera: one being written, one waiting, up to two in flight


def camera_policy(cfg: Config, cam: CameraConfig) -> CameraPolicy:
    d = cfg.detect
    classes = cam.classes if cam.classes is not None else d.classes
    filters = Filters(
        score_threshold=d.score_threshold if cam.score_threshold is None else cam.score_threshold,
        class_thresholds=tuple(sorted(d.class_thresholds.items())) or None,
        classes=tuple(classes) if classes is not None else None,
        iou_threshold=d.iou_threshold,
        class_agnostic=d.class_agnostic_nms,
        max_detections=d.max_detections,
    )
    return CameraPolicy(filters, 1.0 / cam.detect_fps if cam.detect_fps else 0.0)


CommandHandler = Callable[[Dict[str, Any]], Dict[str, Any]]


def make_sinks(cfg: Config, session: str, on_command: Optional[CommandHandler] = None) -> List[Sink]:
    sinks: List[Sink] = []
    for name in cfg.sinks:
        if name == "stdout":
            from edge.publish.sinks import StdoutSink

            sinks.append(StdoutSink())
        elif name == "mqtt":
            from edge.publish.mqtt import MqttSink

            sinks.append(MqttSink(cfg.mqtt, cfg.device, cfg.state_dir, on_command=on_command, session=session))
    return sinks


class Daemon:
    def __init__(self, cfg: Config, config_path: Optional[Path] = None,
                 notifier: Optional[Any] = None, sinks_overridden: bool = False) -> None:
        self.cfg = cfg
        self.sinks_overridden = sinks_overridden
        self.config_path = config_path
        self.heartbeats = Heartbeats()
        self.notifier = notifier or _make_notifier(cfg, self.heartbeats)
        self.mailbox = FrameMailbox()
        self.sources: Dict[str, Any] = {}
        self.stopped_sources: Dict[str, Any] = {}  # during shutdown, for the final stats
        self.pipeline: Optional[Pipeline] = None
        self._wake = threading.Event()
        self._requests: "queue.Queue[Tuple[str, Any]]" = queue.Queue()
        self._stop_signal = ""
        self.started = time.time()
        self._sources_started = 0.0
        self.ready = False
        self.exit_code = 0

    @property
    def running(self) -> Pipeline:
        """The pipeline of a started daemon."""
        if self.pipeline is None:
            raise RuntimeError("the daemon's pipeline has not been started")
        return self.pipeline

    # ------------------------------------------------------------------ requests (any thread)
    def request(self, kind: str, arg: Any = None) -> None:
        self._requests.put((kind, arg))
        self._wake.set()

    def on_command(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        """Run a validated remote command on the main thread and return its answer."""
        done = threading.Event()
        box: List[Any] = []

        def reply(result: Any) -> None:
            box.append(result)
            done.set()

        self.request("command", (cmd, reply))
        if not done.wait(15.0):
            raise EdgeError("the daemon did not carry out the command within 15 s", "try again")
        if isinstance(box[0], EdgeError):
            raise box[0]
        result: Dict[str, Any] = box[0]
        return result

    def _on_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        self.request("reload" if signum == signal.SIGHUP else "stop", name)

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or a fatal fault). Returns the process exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.notifier.status("loading model")
        engine = self.open_engine(self.cfg)
        try:
            self._start(engine)
        except BaseException:
            engine.close()
            raise
        try:
            self._loop()
        finally:
            self._shutdown()
        return self.exit_code

    def open_engine(self, cfg: Config) -> Engine:
        from edge.engine import open_engine

        def progress(message: str, fraction: Optional[float]) -> None:
            pct = "" if fraction is None else f" {fraction * 100:.0f}%"
            self.notifier.extend_timeout(60.0, f"{message}{pct}")

        return open_engine(cfg, progress)

    def _start(self, engine: Engine) -> None:
        cfg = self.cfg
        ctx = PayloadContext(cfg.device, cfg.model.display_name, engine.backend.info.precision,
                             engine.backend.info.name, engine.labels)
        sinks = make_sinks(cfg, ctx.session, self.on_command)
        for sink in sinks:
            sink.start()
        policies = {c.name: camera_policy(cfg, c) for c in cfg.cameras if c.enabled}
        self.pipeline = Pipeline(self.mailbox, engine, policies, sinks, ctx, self.heartbeats,
                                 on_snapshot=_snapshot_renderer())
        self.pipeline.on_drained = each_sink(lambda k: k.publish_stats(self.stats(final=True)))
        self.pipeline.start()
        for cam in cfg.cameras:
            if cam.enabled:
                self._start_source(cam)
        self._sources_started = time.monotonic()
        self.pipeline.control(each_sink(lambda k: k.publish_status(self.status_payload())))
        log.info("running: %d camera(s), sinks %s", len(self.sources), ", ".join(cfg.sinks))

    def _start_source(self, cam: CameraConfig) -> None:
        from edge.capture import open_source

        self.mailbox.add_camera(cam.name)
        alloc = self.running.engine.backend.frame_allocator()
        ring = FrameRing(RING_SLOTS, alloc) if alloc is not None else None
        src = open_source(cam, self._deliver_for(cam), ring)
        self.sources[cam.name] = src
        stall_s = self.cfg.health.worker_stall_s
        self.heartbeats.add_probe(f"capture:{cam.name}", partial(_source_alive, src, stall_s))
        src.start()

    def _deliver_for(self, cam: CameraConfig) -> Callable[[Frame], None]:
        """Live sources replace their unread frame; a file not played in real time waits for
        inference instead, so every frame is detected and the decoder never races ahead."""
        if isinstance(cam.source, FileSource) and not cam.source.realtime:
            return self.mailbox.put_paced
        return self.mailbox.put

    def _stop_source(self, name: str, keep_slot: bool = False) -> None:
        src = self.sources.pop(name, None)
        self.heartbeats.remove(f"capture:{name}")
        if src is not None:
            src.stop()
        if not keep_slot:  # at shutdown the last frame stays to be drained
            self.mailbox.remove_camera(name)

    def _loop(self) -> None:
        pipeline = self.running
        next_status = next_stats = time.monotonic()
        while True:
            self._wake.wait(0.25)
            self._wake.clear()
            while not self._requests.empty():
                kind, arg = self._requests.get_nowait()
                if kind == "stop":
                    log.info("%s: shutting down", arg)
                    return
                self._handle(kind, arg)
            if pipeline.failed.is_set():
                log.error("stopping after a worker fault: %s", pipeline.failure)
                self.exit_code = 1
                return
            now = time.monotonic()
            if not self.ready:
                self._check_ready(now)
            self.notifier.tick()
            if now >= next_status:
                next_status = now + self.cfg.health.status_interval_s
                self.notifier.status(self.status_line())
            if now >= next_stats:
                next_stats = now + self.cfg.mqtt.stats_interval_s
                pipeline.control(each_sink(partial(_publish_stats, stats=self.stats())))

    def _check_ready(self, now: float) -> None:
        if self.running.first_inference.is_set():
            self.ready = True
            self.notifier.ready(self.status_line())
            log.info("ready: first frame inferred")
        elif now - self._sources_started > self.cfg.health.ready_timeout_s:
            self.ready = True
            waiting = [n for n, s in self.sources.items() if s.stats.state.value != "streaming"]
            self.notifier.ready(f"ready, cameras still connecting: {', '.join(waiting) or 'none'}")
            log.warning("ready after %.0f s without a first frame; still connecting: %s",
                        self.cfg.health.ready_timeout_s, ", ".join(waiting) or "none")

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self.stopped_sources = dict(self.sources)
        for name in list(self.sources):
            try:
                self._stop_source(name, keep_slot=True)
            except EdgeError as exc:
                log.warning("stopping camera %s: %s", name, exc)
        if self.pipeline is not None:
            if not self.pipeline.stop(timeout=max(1.0, self.cfg.health.worker_stall_s)):
                self.exit_code = self.exit_code or 1
            self.pipeline.engine.close()
            log.info("stopped: published %d results", self.pipeline.published)
        else:
            log.info("stopped")

    # ------------------------------------------------------------------ requests (main thread)
    def _handle(self, kind: str, arg: Any) -> None:
        from edge.reload import apply_command, reload_config

        if kind == "reload":
            reload_config(self, arg)
        elif kind == "command":
            cmd, reply = arg
            try:
                reply(apply_command(self, cmd))
            except EdgeError as exc:
                reply(exc)

    def apply_config(self, new: Config, engine: Optional[Engine]) -> None:
        """Switch to ``new`` (already validated); ``engine`` replaces the engine when given."""
        pipeline = self.running
        old = self.cfg
        if engine is not None:
            pipeline.swap_engine(engine)
        wanted = {c.name: c for c in new.cameras if c.enabled}
        before = {c.name: c for c in old.cameras if c.enabled}
        for name in list(self.sources):
            if name not in wanted or wanted[name] != before.get(name) or engine is not None:
                self._stop_source(name)
        self.cfg = new
        pipeline.policies = {n: camera_policy(new, c) for n, c in wanted.items()}
        for name, cam in wanted.items():
            if name not in self.sources:
                self._start_source(cam)
        sinks_changed = (new.sinks, new.mqtt, new.device) != (old.sinks, old.mqtt, old.device)
        if sinks_changed or engine is not None:
            info = pipeline.engine.backend.info
            ctx = PayloadContext(new.device, new.model.display_name, info.precision, info.name,
                                 pipeline.engine.labels, session=pipeline.ctx.session)
            sinks = make_sinks(new, ctx.session, self.on_command) if sinks_changed else None
            pipeline.control(partial(_swap_sinks, pipeline, new=sinks, ctx=ctx))
        pipeline.control(each_sink(lambda k: k.publish_status(self.status_payload())))

    # ------------------------------------------------------------------ reporting
    def status_line(self) -> str:
        return report.status_line(self)

    def status_payload(self) -> Dict[str, Any]:
        return report.status_payload(self)

    def stats(self, final: bool = False) -> Dict[str, Any]:
        return report.stats(self, final)


def each_sink(fn: Callable[[Sink], None]) -> Callable[[List[Sink]], None]:
    """A publisher-thread control item that calls ``fn`` on every sink."""

    def run(sinks: List[Sink]) -> None:
        for sink in sinks:
            fn(sink)

    return run


def _source_alive(src: Any, stall_s: float, now: float) -> bool:
    return bool(src.alive(now, stall_s))


def _publish_stats(sink: Sink, stats: Dict[str, Any]) -> None:
    sink.publish_stats(stats)


def _swap_sinks(pipeline: Pipeline, current: List[Sink], new: Optional[List[Sink]], ctx: PayloadContext) -> None:
    """On the publisher thread: close the old sinks, start the new ones, switch payload context."""
    pipeline.ctx = ctx
    if new is None:
        return
    for s in current:
        s.close()
    for s in new:
        s.start()
    current[:] = new


def _snapshot_renderer() -> Optional[Callable[..., Optional[bytes]]]:
    from edge.publish.snapshot import render_snapshot

    return render_snapshot


def _make_notifier(cfg: Config, heartbeats: Heartbeats) -> Any:
    from edge.health.systemd import Notifier

    return Notifier(heartbeats, cfg.health.worker_stall_s, cfg.health.status_interval_s)


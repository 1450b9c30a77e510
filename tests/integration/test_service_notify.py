"""The real daemon speaking sd_notify to a socket this test binds, as systemd does.

``edge-detector run`` is started with ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` set, on the
shared video and the real model (ONNX Runtime on the CPU). The test checks what systemd would
see: READY only after the first inference, STATUS lines, WATCHDOG pings that stop when a
worker hangs (``EDGE_TEST_HANG_INFER_AFTER``, a testing hook) but not while a camera is only
reconnecting, RELOADING/READY around SIGHUP with a valid and an invalid config, and
STOPPING then exit 0 within the unit's TimeoutStopSec on SIGTERM.

Bounds on time are the unit's own (watchdog interval, stop timeout) with slack for a loaded
machine; everything else is asserted on order and content.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from daemon_helpers import ROOT, DaemonProcess, demo_config, write_config
from edge_testkit import free_port

Message = Tuple[float, Dict[str, str]]


def unit_seconds(key: str) -> float:
    """A time setting (``45s``, ``2min``) of the shipped unit, so tests hold the unit to its word."""
    text = (ROOT / "systemd" / "edge-detector.service").read_text()
    m = re.search(rf"^{key}=(\d+)(s|min)$", text, re.M)
    assert m, f"{key} not found in the unit"
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


class NotifySocket:
    """systemd's side of sd_notify: a bound datagram socket recording (monotonic time, message)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="edge-notify-")  # short: AF_UNIX paths max 108 bytes
        self.path = str(Path(self.dir) / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: List[Message] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def snapshot(self) -> List[Message]:
        with self._lock:
            return list(self.messages)

    def having(self, key: str, value: Optional[str] = None) -> List[Message]:
        return [(t, m) for t, m in self.snapshot() if key in m and (value is None or m[key] == value)]

    def wait_for(
        self, key: str, value: Optional[str], daemon: DaemonProcess, timeout: float, after: float = 0.0
    ) -> Message:
        found: List[Message] = []

        def seen() -> bool:
            found[:] = [(t, m) for t, m in self.having(key, value) if t >= after]
            return bool(found)

        daemon.wait_for(seen, timeout, f"{key}={value or '*'} on the notify socket")
        return found[0]

    def env(self, watchdog_s: float) -> Dict[str, str]:
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(int(watchdog_s * 1_000_000))}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    n = NotifySocket()
    yield n
    n.close()


def lifecycle(messages: List[Message]) -> List[str]:
    """The state changes systemd acts on, in order."""
    out: List[str] = []
    for _, m in messages:
        for key in ("READY", "RELOADING", "STOPPING"):
            if key in m:
                out.append(key)
    return out


def base_config(assets: Any, tmp: Path, **health: Any) -> Dict[str, Any]:
    cfg = demo_config(assets, tmp, 1)  # --sink stdout: no broker needed
    cfg["health"] = {"status_interval_s": 1.0, "worker_stall_s": 5.0, **health}
    return cfg


def test_ready_status_watchdog_reload_and_stop(assets: Any, tmp_path: Path, notify: NotifySocket) -> None:
    watchdog_s = 4.0
    cfg = base_config(assets, tmp_path)
    path = write_config(tmp_path, cfg)
    daemon = DaemonProcess(path, "--sink", "stdout", env=notify.env(watchdog_s))
    try:
        t_ready, ready = notify.wait_for("READY", "1", daemon, 90)
        # READY only once the first frame went through the model: results are already out.
        assert daemon.json_lines(), "READY=1 before any frame was inferred"
        assert ready["STATUS"].startswith("running: street "), ready
        first_status = notify.having("STATUS")[0][1]["STATUS"]
        assert first_status == "loading model"

        # STATUS= refreshed every status_interval_s (1 s) with the frame rate per camera.
        daemon.wait_for(lambda: len([1 for t, _ in notify.having("STATUS") if t > t_ready]) >= 3, 20, "STATUS")
        status = [m["STATUS"] for t, m in notify.having("STATUS") if t > t_ready][-1]
        assert re.match(r"running: street \d+\.\d fps", status), status

        # Watchdog pings: steady, well inside the interval systemd was given.
        daemon.wait_for(lambda: len(notify.having("WATCHDOG")) >= 8, 30, "watchdog pings")
        pings = [t for t, _ in notify.having("WATCHDOG")]
        assert max(b - a for a, b in zip(pings, pings[1:])) < watchdog_s / 2

        # SIGHUP with a valid change of thresholds and classes: applied without a new engine.
        cfg["detect"] = {"score_threshold": 0.6, "classes": ["person"]}
        write_config(tmp_path, cfg)
        t_hup = time.monotonic()
        daemon.proc.send_signal(signal.SIGHUP)
        t_rel, reloading = notify.wait_for("RELOADING", "1", daemon, 30, after=t_hup)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        notify.wait_for("READY", "1", daemon, 60, after=t_rel)
        daemon.wait_for(lambda: daemon.log_has("new configuration in force"), 10, "reload log line")
        assert not daemon.log_has("opening the new engine"), "a threshold change must not reload the engine"
        n_before = len(daemon.json_lines())
        daemon.wait_for(lambda: len(daemon.json_lines()) >= n_before + 15, 30, "results after the reload")
        after = daemon.json_lines()[n_before + 5 :]  # skip frames that were in flight
        dets = [d for line in after for d in line["detections"]]
        assert dets, "the video shows people: detections expected"
        assert all(d["label"] == "person" and d["score"] >= 0.6 for d in dets)

        # SIGHUP with an invalid config: rejected in one log line, the old one stays in force.
        path.write_text(path.read_text().replace("score_threshold: 0.6", "score_threshold: 7"))
        t_hup = time.monotonic()
        daemon.proc.send_signal(signal.SIGHUP)
        t_rel, _ = notify.wait_for("RELOADING", "1", daemon, 30, after=t_hup)
        notify.wait_for("READY", "1", daemon, 30, after=t_rel)
        daemon.wait_for(lambda: daemon.log_has("rejected, keeping the old one"), 10, "rejection log line")
        rejected = [line for line in daemon.stderr if "rejected, keeping the old one" in line]
        assert len(rejected) == 1 and "score_threshold" in rejected[0]
        n_before = len(daemon.json_lines())
        daemon.wait_for(lambda: len(daemon.json_lines()) >= n_before + 10, 30, "detection goes on")
        assert all(d["score"] >= 0.6 for line in daemon.json_lines()[n_before:] for d in line["detections"])

        # SIGTERM: STOPPING=1, drain, exit 0 within the unit's TimeoutStopSec.
        took = daemon.terminate(timeout=unit_seconds("TimeoutStopSec") + 15)
    finally:
        daemon.kill()
    assert daemon.proc.returncode == 0, "\n".join(daemon.stderr[-20:])
    assert took < unit_seconds("TimeoutStopSec"), f"stop took {took:.1f} s"
    assert lifecycle(notify.snapshot()) == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]
    assert daemon.log_has("stopped")


def test_hung_inference_stops_the_watchdog(assets: Any, tmp_path: Path, notify: NotifySocket) -> None:
    stall_s, watchdog_s = 2.0, 2.0
    path = write_config(tmp_path, base_config(assets, tmp_path, worker_stall_s=stall_s))
    env = dict(notify.env(watchdog_s), EDGE_TEST_HANG_INFER_AFTER="25")
    daemon = DaemonProcess(path, "--sink", "stdout", env=env)
    try:
        notify.wait_for("READY", "1", daemon, 90)
        hang_line = "inference thread hangs on purpose"
        daemon.wait_for(lambda: daemon.log_has(hang_line), 60, "the inference hang")
        t_hang = time.monotonic()  # within a poll (50 ms) of the log line
        t_stall, _ = notify.wait_for("STATUS", "stalled: inference", daemon, stall_s + 10)
        time.sleep(3 * watchdog_s)  # systemd would have killed us by now: no ping may come
        pings = [t for t, _ in notify.having("WATCHDOG")]
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(30)  # a wedged thread must not keep the process from exiting
        finally:
            daemon.kill()

    assert pings and pings[0] < t_hang, "the watchdog was fed before the hang"
    assert pings[-1] < t_stall, "a WATCHDOG=1 came after the stall was detected"
    # The pings stop no later than worker_stall_s after the last progress (+ slack for load),
    # so a unit with WatchdogSec=W restarts a hung daemon within worker_stall_s + W.
    assert pings[-1] - t_hang < stall_s + 1.5, f"pings went on {pings[-1] - t_hang:.1f} s after the hang"
    stall_lines = [line for line in daemon.stderr if "no progress for" in line]
    assert len(stall_lines) == 1 and "inference" in stall_lines[0], stall_lines


def test_reconnecting_camera_keeps_the_watchdog_fed(assets: Any, tmp_path: Path, notify: NotifySocket) -> None:
    """No frame ever arrives (nothing listens on the RTSP port): READY after ready_timeout_s,
    saying so in STATUS=, and the pings go on far beyond worker_stall_s."""
    cfg = base_config(assets, tmp_path, worker_stall_s=2.0, ready_timeout_s=2.0)
    url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    cfg["cameras"] = [{"name": "door", "source": {"kind": "rtsp", "url": url, "tcp_timeout_s": 1.0}}]
    daemon = DaemonProcess(write_config(tmp_path, cfg), "--sink", "stdout", env=notify.env(2.0))
    try:
        t_ready, ready = notify.wait_for("READY", "1", daemon, 90)
        assert "still connecting: door" in ready["STATUS"], ready
        time.sleep(6.0)  # three times worker_stall_s
        pings = [t for t, _ in notify.having("WATCHDOG") if t > t_ready]
        stalled = notify.having("STATUS", "stalled: capture:door")
        took = daemon.terminate(timeout=unit_seconds("TimeoutStopSec") + 15)
    finally:
        daemon.kill()
    assert not stalled, "a reconnecting camera is not a stalled worker"
    assert len(pings) >= 6, f"only {len(pings)} pings in 6 s"
    assert max(b - a for a, b in zip(pings, pings[1:])) < 1.0
    assert daemon.proc.returncode == 0 and took < unit_seconds("TimeoutStopSec")
    assert lifecycle(notify.snapshot()) == ["READY", "STOPPING"]

"""Notifier against a real unix datagram socket, as systemd's $NOTIFY_SOCKET is.

Both transports are covered: systemd-python's ``notify`` and the module's own datagrams.
Liveness checks pass explicit monotonic times, so nothing here depends on the machine's speed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from edge.health import systemd as sd
from edge.health.heartbeat import Heartbeats
from edge.health.systemd import Notifier


class Listener:
    """The systemd side: a bound datagram socket that parses ``KEY=value`` messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)

    def recv(self, timeout: float = 5.0) -> Dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def pending(self) -> List[Dict[str, str]]:
        """Every message already queued (non-blocking)."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(65536).decode()
                out.append(dict(line.split("=", 1) for line in data.split("\n") if line))
        except BlockingIOError:
            return out
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    lst = Listener(str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


@pytest.fixture(params=["own", "library"])
def make_notifier(request: pytest.FixtureRequest, listener: Listener, monkeypatch: pytest.MonkeyPatch):
    """Build a Notifier talking to ``listener`` through one transport or the other."""
    path = listener.sock.getsockname()
    created: List[Notifier] = []

    def make(hb: Optional[Heartbeats] = None, watchdog_usec: Optional[int] = None, stall_s: float = 10.0) -> Notifier:
        env = {"NOTIFY_SOCKET": path}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
            env["WATCHDOG_PID"] = str(os.getpid())
        if request.param == "library":
            if not sd.library_available():
                pytest.skip("systemd-python is not installed (pip install '.[systemd]')")
            for k, v in env.items():
                monkeypatch.setenv(k, v)
            n = Notifier(hb or Heartbeats(), stall_s, 5.0)
            assert n.via_library
        else:
            n = Notifier(hb or Heartbeats(), stall_s, 5.0, env=env, use_library=False)
            assert not n.via_library
        created.append(n)
        return n

    yield make
    for n in created:
        n.close()


def test_lifecycle_messages_in_order(make_notifier, listener: Listener) -> None:
    n = make_notifier()
    assert n.enabled
    n.extend_timeout(90, "building engine fp16 40%")
    n.ready("running: front 29.8 fps | outbox 0")
    n.status("running:\nfront 30.0 fps")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.ready("running again")
    n.stopping()

    got = [listener.recv() for _ in range(6)]
    assert got[0] == {"EXTEND_TIMEOUT_USEC": "90000000", "STATUS": "building engine fp16 40%"}
    assert got[1] == {"READY": "1", "STATUS": "running: front 29.8 fps | outbox 0"}
    assert got[2] == {"STATUS": "running: front 30.0 fps"}  # one line, always
    assert got[3]["RELOADING"] == "1"
    assert before <= int(got[3]["MONOTONIC_USEC"]) <= after
    assert got[4] == {"READY": "1", "STATUS": "running again"}
    assert got[5]["STOPPING"] == "1"
    assert listener.pending() == []


def test_abstract_socket_address() -> None:
    name = f"edge-test-{uuid.uuid4().hex}"
    lst = Listener("\0" + name)
    try:
        with Notifier(Heartbeats(), 10.0, 5.0, env={"NOTIFY_SOCKET": "@" + name}, use_library=False) as n:
            n.ready("up")
            assert lst.recv() == {"READY": "1", "STATUS": "up"}
    finally:
        lst.close()


def test_without_systemd_every_call_is_a_noop() -> None:
    hb = Heartbeats()
    hb.register("inference")
    n = Notifier(hb, 10.0, 5.0, env={}, use_library=False)
    assert not n.enabled and n.watchdog_s is None
    n.ready("x")
    n.status("x")
    n.extend_timeout(5, "x")
    n.reloading()
    n.stopping()
    n.tick(now=time.monotonic() + 100)  # stalled, but nothing to withhold and nothing raised
    assert n.stalled == ["inference"]


def test_unusable_notify_socket_value_disables(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        n = Notifier(Heartbeats(), 10.0, 5.0, env={"NOTIFY_SOCKET": "vsock:2:1234"}, use_library=False)
    assert not n.enabled
    assert "vsock:2:1234" in caplog.text


def test_watchdog_interval_only_for_this_pid(listener: Listener) -> None:
    path = listener.sock.getsockname()
    mine = Notifier(Heartbeats(), 10.0, 5.0, use_library=False,
                    env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    other = Notifier(Heartbeats(), 10.0, 5.0, use_library=False,
                     env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    unset_pid = Notifier(Heartbeats(), 10.0, 5.0, use_library=False,
                         env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "500000"})
    try:
        assert mine.watchdog_s == 2.0
        assert other.watchdog_s is None
        assert unset_pid.watchdog_s == 0.5
        other.tick()
        assert listener.pending() == []  # no watchdog meant for this process: no pings
        mine.tick()
        assert listener.recv() == {"WATCHDOG": "1"}
    finally:
        for n in (mine, other, unset_pid):
            n.close()


def test_watchdog_fed_only_while_every_worker_progresses(
    make_notifier, listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    hb = Heartbeats()
    infer = hb.register("inference")
    publisher = hb.register("publisher")
    reconnecting = {"alive": True}
    hb.add_probe("capture:front", lambda now: reconnecting["alive"])
    n = make_notifier(hb, watchdog_usec=2_000_000, stall_s=3.0)
    t0 = time.monotonic()
    infer.last = publisher.last = t0

    n.tick(now=t0 + 0.5)
    assert listener.recv() == {"WATCHDOG": "1"}
    n.tick(now=t0 + 0.5)  # checked at most every interval/4: a second call at once sends nothing
    assert listener.pending() == []

    publisher.last = t0 + 10.0  # the publisher keeps going, inference hangs from t0 on
    with caplog.at_level(logging.ERROR, logger="edge.health.systemd"):
        n.tick(now=t0 + 10.0)
        n.tick(now=t0 + 11.0)
        n.tick(now=t0 + 12.0)
    msgs = listener.pending()
    assert msgs == [{"STATUS": "stalled: inference"}]  # no WATCHDOG=1 while stalled
    stall_logs = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(stall_logs) == 1, "a stall is logged once, not at every tick"
    assert "inference" in stall_logs[0].getMessage() and "publisher" not in stall_logs[0].getMessage()
    assert getattr(stall_logs[0], "error_kind", None) == "stall"
    assert n.stalled == ["inference"]

    infer.last = publisher.last = t0 + 13.0  # it recovers
    with caplog.at_level(logging.WARNING, logger="edge.health.systemd"):
        n.tick(now=t0 + 13.5)
    assert listener.recv() == {"WATCHDOG": "1"}
    assert "progress again: inference" in caplog.text
    assert n.stalled == []

    reconnecting["alive"] = False  # a probe (a wedged capture thread) stops the pings too
    n.tick(now=t0 + 14.0)
    assert listener.pending() == [{"STATUS": "stalled: capture:front"}]


def test_reconnecting_camera_keeps_the_watchdog_fed(listener: Listener) -> None:
    """A probe that reports alive (a source busy reconnecting) never withholds the pings."""
    hb = Heartbeats()
    hb.add_probe("capture:door", lambda now: True)
    env = {"NOTIFY_SOCKET": listener.sock.getsockname(), "WATCHDOG_USEC": "1000000"}
    with Notifier(hb, 1.0, 5.0, env=env, use_library=False) as n:
        t0 = time.monotonic()
        for i in range(5):
            n.tick(now=t0 + i)
        assert listener.pending() == [{"WATCHDOG": "1"}] * 5


def test_status_due_follows_interval(listener: Listener) -> None:
    env = {"NOTIFY_SOCKET": listener.sock.getsockname()}
    with Notifier(Heartbeats(), 10.0, 5.0, env=env, use_library=False) as n:
        assert n.status_due()
        n.status("starting")
        now = time.monotonic()
        assert not n.status_due(now)
        assert n.status_due(now + 5.1)


def test_lost_socket_is_logged_once_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "1000000"}
    with caplog.at_level(logging.ERROR, logger="edge.health.systemd"), Notifier(
        Heartbeats(), 10.0, 5.0, env=env, use_library=False
    ) as n:
        n.ready("up")
        n.status("up")
        n.tick()
        n.stopping()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot notify systemd (READY)" in errors[0].getMessage()


def test_engine_build_progress_feeds_the_watchdog(make_notifier, listener: Listener) -> None:
    """A reload that rebuilds the engine blocks the main loop; its progress reports keep the pings."""
    hb = Heartbeats()
    infer = hb.register("inference")
    n = make_notifier(hb, watchdog_usec=2_000_000, stall_s=3.0)
    n.extend_timeout(60, "building engine (1m05s elapsed)")
    assert listener.recv() == {"EXTEND_TIMEOUT_USEC": "60000000", "STATUS": "building engine (1m05s elapsed)"}
    assert listener.recv() == {"WATCHDOG": "1"}
    infer.last -= 100  # ...but only while the running pipeline still makes progress
    n._last_check = float("-inf")
    n.extend_timeout(60, "building engine (1m10s elapsed)")
    assert listener.recv()["EXTEND_TIMEOUT_USEC"] == "60000000"
    assert listener.pending() == [{"STATUS": "stalled: inference"}]

"""Durability: broker outages and restarts, a SIGKILLed publisher, outbox limits, a disk that fails.

The subscriber uses a persistent session on a broker with persistence on, as the IoT side
must (docs/mqtt.md), so what the broker accepted while it was away is kept for it.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

import pytest
from mqtt_helpers import Collector, context, feed, wait_until

from edge.config.model import MqttConfig
from edge.publish.mqtt import MqttSink

HERE = Path(__file__).parent


def archive(port: int, name: str = "archive") -> Collector:
    """A subscriber with a persistent session, saved by the broker before the test goes on."""
    c = Collector(port, "edge/+/+/detections", client_id=name, persistent=True)
    time.sleep(1.2)  # autosave_interval is 1 s: the session now survives a SIGKILLed broker
    return c


def by_camera(c: Collector, session: str) -> Dict[str, List[int]]:
    out: Dict[str, List[int]] = {}
    for p in c.json("/detections"):
        if p["session"] == session:
            out.setdefault(p["camera"], []).append(p["seq"])
    return out


class Driver:
    """tests/integration/mqtt_driver.py in a subprocess, its JSON lines read as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "mqtt_driver.py"), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: List[Dict[str, Any]] = []
        self.stderr: List[str] = []
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def last(self, event: str) -> Dict[str, Any]:
        found = [e for e in self.events if e["event"] == event]
        return found[-1] if found else {}

    def finish(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return rc


def test_a_long_outage_with_small_limits_drops_the_oldest(mosquitto: Any, tmp_path: Path) -> None:
    sub = archive(mosquitto.port)
    mosquitto.stop()
    ctx = context()
    cfg = MqttConfig(port=mosquitto.port, reconnect_min_s=0.2, reconnect_max_s=0.5, outbox={"max_messages": 100})
    sink = MqttSink(cfg, "dev", tmp_path / "state", session=ctx.session)
    sink.start()
    try:
        for start in range(0, 1000, 100):
            feed(sink, ctx, "door", 100, start=start)
            time.sleep(0.06)
        assert wait_until(lambda: sink.stats()["dropped"] == 900 and sink.stats()["outbox_depth"] == 100)
        sink.poll()  # the process is healthy
        mosquitto.start()
        assert sub.wait(lambda: len(by_camera(sub, ctx.session).get("door", [])) >= 100, timeout=30)
        assert wait_until(lambda: sink.stats()["outbox_depth"] == 0)
    finally:
        sink.close()
        sub.close()
    assert sorted(set(by_camera(sub, ctx.session)["door"])) == list(range(901, 1001))


def test_sigkill_mid_run_loses_nothing_that_was_committed(mosquitto: Any, tmp_path: Path) -> None:
    sub = archive(mosquitto.port)
    state = tmp_path / "state"
    first = Driver("--port", str(mosquitto.port), "--state", str(state), "--rate", "40")
    try:
        assert wait_until(lambda: first.last("durable").get("seq", 0) >= 20)
        mosquitto.stop(kill=True)  # the broker goes away: the backlog builds up on disk
        time.sleep(1.5)
        durable = first.last("durable")["seq"]
        rc = first.finish(signal.SIGKILL)
        session = first.last("start")["session"]
    finally:
        first.finish(signal.SIGKILL)
    assert rc == -signal.SIGKILL and durable > 40
    mosquitto.start()
    second = Driver("--port", str(mosquitto.port), "--state", str(state), "--rate", "10", "--count", "5",
                    "--linger", "3")
    try:
        got = lambda: set(by_camera(sub, session).get("cam", []))  # noqa: E731
        assert sub.wait(lambda: set(range(1, durable + 1)) <= got(), timeout=40), sorted(
            set(range(1, durable + 1)) - got())[:20]
    finally:
        assert second.finish() == 0
        sub.close()
    after = sorted(got() - set(range(1, durable + 1)))
    print(f"\nSIGKILL: {durable} messages durable at the kill, all arrived; {len(after)} more arrived too")


def test_a_disk_that_cannot_be_written_is_reported_and_delivery_goes_on(mosquitto: Any, tmp_path: Path) -> None:
    sub = archive(mosquitto.port)
    mosquitto.stop()
    drv = Driver("--port", str(mosquitto.port), "--state", str(tmp_path / "state"), "--rate", "200",
                 "--count", "1200", "--linger", "30", "--fsize-limit", "150000")
    try:
        assert wait_until(lambda: any("cannot write" in line for line in drv.stderr), timeout=30)
        mosquitto.start()
        session = drv.last("start")["session"]
        assert sub.wait(lambda: len(set(by_camera(sub, session).get("cam", []))) == 1200, timeout=60)
    finally:
        assert drv.finish() == 0
        sub.close()
    errors = [line for line in drv.stderr if " ERROR " in line]
    assert len([e for e in errors if "cannot write" in e]) == 1, errors  # one clear line, not one per commit
    assert "detection goes on" in errors[0]


@pytest.mark.slow
def test_broker_killed_and_restarted_for_two_minutes_at_30_per_second(mosquitto: Any, tmp_path: Path) -> None:
    sub = archive(mosquitto.port)
    ctx = context()
    cfg = MqttConfig(port=mosquitto.port, reconnect_min_s=0.2, reconnect_max_s=1.0)
    sink = MqttSink(cfg, "dev", tmp_path / "state", session=ctx.session)
    sink.start()
    per_camera = 1800  # 2 cameras x 15 messages/s x 120 s
    done = threading.Event()

    def feeder() -> None:
        t0 = time.monotonic()
        for i in range(per_camera):
            time.sleep(max(0.0, t0 + i / 15.0 - time.monotonic()))
            feed(sink, ctx, "a", 1, start=i)
            feed(sink, ctx, "b", 1, start=i)
        done.set()

    rng = random.Random(5)
    restarts = Counter()
    thread = threading.Thread(target=feeder, name="feeder", daemon=True)
    thread.start()
    try:
        while not done.wait(rng.uniform(5.0, 9.0)):
            kill = restarts["total"] % 2 == 1
            mosquitto.stop(kill=kill)
            restarts["sigkill" if kill else "sigterm"] += 1
            restarts["total"] += 1
            time.sleep(rng.uniform(0.5, 3.0))
            mosquitto.start()
        thread.join(10)
        expected = set(range(1, per_camera + 1))
        assert sub.wait(lambda: all(set(v) >= expected for v in by_camera(sub, ctx.session).values())
                        and len(by_camera(sub, ctx.session)) == 2, timeout=90)
        sink.poll()
        stats = sink.stats()
    finally:
        sink.close()
        sub.close()
    got = by_camera(sub, ctx.session)
    dups = {cam: len(v) - len(set(v)) for cam, v in got.items()}
    print(f"\nbroker restarts: {restarts['sigterm']} SIGTERM, {restarts['sigkill']} SIGKILL; "
          f"received {sum(map(len, got.values()))} for {2 * per_camera} sent; duplicates {dups}; "
          f"sink reconnects {stats['reconnects']}, dropped {stats['dropped']}")
    assert restarts["total"] >= 10
    assert all(set(v) == expected for v in got.values())
    assert stats["dropped"] == 0


def test_a_sink_replaced_on_reload_hands_its_backlog_over(mosquitto: Any, tmp_path: Path) -> None:
    """The daemon builds the new sink before closing the old one (same outbox file)."""
    sub = archive(mosquitto.port)
    mosquitto.stop()
    ctx = context()
    cfg = MqttConfig(port=mosquitto.port, reconnect_min_s=0.2, reconnect_max_s=0.5)
    old = MqttSink(cfg, "dev", tmp_path / "state", session=ctx.session)
    old.start()
    feed(old, ctx, "door", 50)
    new = MqttSink(cfg, "dev", tmp_path / "state", session=ctx.session)
    old.close()
    new.start()
    try:
        feed(new, ctx, "door", 10, start=50)
        mosquitto.start()
        assert sub.wait(lambda: set(by_camera(sub, ctx.session).get("door", [])) == set(range(1, 61)), timeout=30)
        assert wait_until(lambda: new.stats()["outbox_depth"] == 0)
        assert new.stats()["outbox_error"] is None and old.stats()["outbox_error"] is None
    finally:
        new.close()
        sub.close()

"""Connection behaviour: no CONNACK, a duplicate client id (no flapping), backoff between attempts."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest
from mqtt_helpers import context, feed, wait_until

from edge.config.model import MqttConfig
from edge.publish.connection import Backoff
from edge.publish.mqtt import MqttSink


def test_a_server_that_never_answers_connect_is_not_taken_for_a_broker(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    accepted: List[socket.socket] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        stop = threading.Event()

        def accept() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    accepted.append(server.accept()[0])  # and never answer
                except OSError:
                    continue

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        ctx = context()
        sink = MqttSink(MqttConfig(port=port, connect_timeout_s=1, reconnect_min_s=0.2), "dev", tmp_path,
                        session=ctx.session)
        with caplog.at_level(logging.WARNING):
            sink.start()
            try:
                feed(sink, ctx, "door", 5)
                assert wait_until(lambda: "no CONNACK" in caplog.text, timeout=15)
                assert not sink.stats()["connected"] and sink.stats()["sent"] == 0
                assert wait_until(lambda: sink.stats()["outbox_depth"] == 5)
            finally:
                sink.close()
                stop.set()
                t.join(5)
                for s in accepted:
                    s.close()


def test_a_duplicate_client_id_is_named_and_retried_ever_more_slowly(mosquitto: Any, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """mosquitto 2.0 closes the older connection without a reason code: the daemon sees short
    connections in a row, backs off further each time and names the likely cause."""
    cfg = MqttConfig(port=mosquitto.port, client_id="same-id", reconnect_min_s=0.1, reconnect_max_s=30)
    first = MqttSink(cfg, "dev", tmp_path / "a")
    second = MqttSink(cfg, "dev", tmp_path / "b")
    log = mosquitto.workdir / "mosquitto.log"
    with caplog.at_level(logging.WARNING):
        first.start()
        try:
            assert wait_until(lambda: first.stats()["connected"])
            second.start()
            assert wait_until(lambda: "another client using the client id 'same-id'" in caplog.text, timeout=20)
            before = log.read_text().count("New client connected")
            time.sleep(4.0)
            during = log.read_text().count("New client connected") - before
        finally:
            second.close()
            first.close()
    # Without the growing backoff two clients 0.1 s apart would connect ~80 times in 4 s.
    assert during <= 8, during
    assert sum("another client using" in r.getMessage() for r in caplog.records) == 2  # once per sink


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(0.5, 4.0, 0.2, random.Random(1))
    delays = [b.next() for _ in range(6)]
    for d, base in zip(delays, [0.5, 1, 2, 4, 4, 4]):
        assert base * 0.8 <= d <= base * 1.2
    assert len({round(d, 6) for d in delays[3:]}) == 3  # spread, not in step
    b.reset()
    assert b.next() <= 0.6

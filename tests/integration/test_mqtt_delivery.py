"""MqttSink against a real mosquitto: payloads, topics, availability, status, stats, snapshots, QoS 0."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from mqtt_helpers import Collector, context, feed, seqs, wait_until

from edge.config.model import MqttConfig
from edge.publish.mqtt import MqttSink

HERE = Path(__file__).parent


def config(port: int, **kw: Any) -> MqttConfig:
    return MqttConfig(port=port, reconnect_min_s=0.1, reconnect_max_s=0.5, **kw)


@pytest.fixture
def collector(mosquitto: Any) -> Iterator[Collector]:
    c = Collector(mosquitto.port, "edge/#")
    yield c
    c.close()


def test_detections_arrive_in_order_with_every_payload_field(mosquitto: Any, collector: Collector,
                                                              tmp_path: Path) -> None:
    ctx = context()
    sink = MqttSink(config(mosquitto.port), "dev", tmp_path, session=ctx.session)
    sink.start()
    try:
        feed(sink, ctx, "door", 40)
        feed(sink, ctx, "yard", 10)
        assert collector.wait(lambda: len(collector.on("/detections")) == 50)
    finally:
        sink.close()
    assert seqs(collector, "edge/dev/door/detections") == list(range(1, 41))
    assert seqs(collector, "edge/dev/yard/detections") == list(range(1, 11))
    p = collector.json("edge/dev/door/detections")[3]
    assert p["v"] == 1 and p["device"] == "dev" and p["camera"] == "door" and p["session"] == ctx.session
    assert p["frame"] == 3 and p["source"] == {"width": 640, "height": 480}
    assert p["model"] == {"name": "nanodet", "precision": "fp32", "backend": "onnxruntime"}
    assert set(p["latency_ms"]) == {"preprocess", "infer", "postprocess"} and p["ts"] > 1.6e9
    assert p["detections"][1] == {"label": "person", "class_id": 0, "score": 0.9, "box": [11.0, 20.0, 111.0, 220.0]}
    st = sink.stats()
    assert st["sent"] == 50 and st["acked"] == 50 and st["outbox_depth"] == 0 and st["dropped"] == 0
    with sqlite3.connect(str(tmp_path / "outbox.sqlite")) as db:  # acknowledged in time: never written
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_availability_status_and_clean_stop(mosquitto: Any, collector: Collector, tmp_path: Path) -> None:
    sink = MqttSink(config(mosquitto.port), "dev", tmp_path)
    sink.start()
    sink.publish_status({"version": "1.2", "model": "nanodet", "cameras": ["door"], "started": 1.5})
    assert collector.wait(lambda: len(collector.on("/status")) == 1)
    assert wait_until(lambda: sink.stats()["connected"])
    sink.close()
    assert collector.wait(lambda: [m[1] for m in collector.on("/availability")] == [b"online", b"stopped"])
    late = Collector(mosquitto.port, "edge/#", client_id="late")  # retained values, as a new dashboard sees them
    try:
        assert late.wait(lambda: len(late.messages) >= 2)
        retained = {m[0]: m[1] for m in late.messages if m[2]}
    finally:
        late.close()
    assert retained["edge/dev/availability"] == b"stopped"
    status = json.loads(retained["edge/dev/status"])
    assert status["version"] == "1.2" and status["device"] == "dev" and status["session"] == sink.session


def test_last_will_says_offline_when_the_process_dies(mosquitto: Any, collector: Collector, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(HERE / "mqtt_driver.py"), "--port", str(mosquitto.port),
                             "--state", str(tmp_path), "--device", "drv", "--rate", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert collector.wait(lambda: len(collector.on("drv/cam/detections")) >= 5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert collector.wait(lambda: [m[1] for m in collector.on("drv/availability")][-1:] == [b"offline"])
    assert [m[1] for m in collector.on("drv/availability")] == [b"online", b"offline"]


def test_an_unreachable_broker_at_start_is_retried_and_nothing_is_lost(mosquitto: Any, tmp_path: Path) -> None:
    collector = Collector(mosquitto.port, "edge/#", client_id="archive", persistent=True)
    mosquitto.stop()  # a clean stop saves the subscriber's session: it gets what arrives while it reconnects
    ctx = context()
    sink = MqttSink(config(mosquitto.port), "dev", tmp_path, session=ctx.session)
    sink.start()
    try:
        feed(sink, ctx, "door", 100)
        assert wait_until(lambda: sink.stats()["outbox_durable"] == 100)  # all on disk
        st = sink.stats()
        assert st["connected"] is False and st["outbox_depth"] == 100 and st["sent"] == 0
        sink.poll()  # healthy: no fault to raise
        mosquitto.start()
        assert collector.wait(lambda: len(collector.on("/detections")) >= 100, timeout=30)
        assert sorted(set(seqs(collector))) == list(range(1, 101))
        assert wait_until(lambda: sink.stats()["outbox_depth"] == 0)
        assert sink.stats()["connected"] is True
    finally:
        sink.close()
        collector.close()


def test_mqtt_311_and_stats(mosquitto: Any, collector: Collector, tmp_path: Path) -> None:
    ctx = context()
    sink = MqttSink(config(mosquitto.port, protocol="3.1.1"), "dev", tmp_path, session=ctx.session)
    sink.start()
    try:
        feed(sink, ctx, "door", 5)
        sink.publish_stats({"cameras": {"door": {"fps": 12.5, "dropped": 3}}, "bad": float("nan")})
        sink.publish_stats({"cameras": {}})
        assert collector.wait(lambda: len(collector.on("/stats")) == 2 and len(collector.on("/detections")) == 5)
    finally:
        sink.close()
    first, second = collector.json("edge/dev/stats")
    assert first["cameras"]["door"]["fps"] == 12.5 and first["bad"] is None
    assert (first["seq"], second["seq"]) == (1, 2) and first["session"] == ctx.session


def test_qos0_bypasses_the_outbox(mosquitto: Any, collector: Collector, tmp_path: Path) -> None:
    ctx = context()
    sink = MqttSink(config(mosquitto.port, qos=0), "dev", tmp_path, session=ctx.session)
    sink.start()
    try:
        assert wait_until(lambda: sink.stats()["connected"])
        feed(sink, ctx, "door", 20)
        assert collector.wait(lambda: len(collector.on("/detections")) == 20)
        mosquitto.stop()
        assert wait_until(lambda: not sink.stats()["connected"])
        feed(sink, ctx, "door", 7, start=20)
        assert wait_until(lambda: sink.stats()["dropped"] == 7)  # QoS 0 while away: dropped and counted
        assert sink.stats()["outbox_depth"] == 0
    finally:
        sink.close()
    with sqlite3.connect(str(tmp_path / "outbox.sqlite")) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_snapshots_are_rate_limited(mosquitto: Any, collector: Collector, tmp_path: Path) -> None:
    sink = MqttSink(config(mosquitto.port, snapshot_min_interval_s=60), "dev", tmp_path)
    sink.start()
    try:
        assert wait_until(lambda: sink.stats()["connected"])
        sink.publish_snapshot("door", b"\xff\xd8first")
        sink.publish_snapshot("door", b"\xff\xd8second")
        sink.publish_snapshot("yard", b"\xff\xd8yard")
        assert collector.wait(lambda: len(collector.on("/snapshot")) == 2)
    finally:
        sink.close()
    got = {m[0]: m for m in collector.on("/snapshot")}
    assert got["edge/dev/door/snapshot"][1] == b"\xff\xd8first"
    assert got["edge/dev/door/snapshot"][3].ContentType == "image/jpeg"
    assert sink.stats()["snapshots_limited"] == 1

"""Commands over a real broker: MQTT 5 response topic + correlation data, ids, errors, fuzzing."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import paho.mqtt.client as paho
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import Collector, context, feed, seqs, wait_until
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config.model import MqttConfig
from edge.errors import EdgeError
from edge.publish.mqtt import MqttSink


def send(client: paho.Client, topic: str, payload: bytes, response_topic: str = "", corr: bytes = b"",
         retain: bool = False) -> None:
    props = None
    if response_topic or corr:
        props = Properties(PacketTypes.PUBLISH)
        if response_topic:
            props.ResponseTopic = response_topic
        if corr:
            props.CorrelationData = corr
    client.publish(topic, payload, qos=1, retain=retain, properties=props).wait_for_publish(5)


class Handler:
    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        with self.lock:
            self.calls.append(cmd)
        if cmd.get("camera") == "nope":
            raise EdgeError("unknown camera 'nope'", "cameras: door")
        return {"applied": cmd["command"]}


def start_sink(port: int, tmp_path: Path, handler: Handler, **kw: Any) -> MqttSink:
    sink = MqttSink(MqttConfig(port=port, reconnect_min_s=0.1, **kw), "dev", tmp_path, on_command=handler)
    sink.start()
    assert wait_until(lambda: sink.stats()["connected"])
    return sink


def test_mqtt5_answers_go_to_the_response_topic_with_the_correlation_data(mosquitto: Any, tmp_path: Path) -> None:
    handler = Handler()
    sink = start_sink(mosquitto.port, tmp_path, handler)
    replies = Collector(mosquitto.port, "replies/#", client_id="requester")
    try:
        cmd = {"command": "set_threshold", "value": 0.6, "camera": "door", "id": "r1"}
        send(replies.client, "edge/dev/command", json.dumps(cmd).encode(), "replies/me", b"\x01corr")
        assert replies.wait(lambda: len(replies.on("replies/me")) == 1)
        _, payload, _, props = replies.on("replies/me")[0]
        assert props.CorrelationData == b"\x01corr"
        body = json.loads(payload)
        assert body["ok"] is True and body["id"] == "r1" and body["applied"] == "set_threshold"
        assert handler.calls == [{"command": "set_threshold", "value": 0.6, "camera": "door"}]
    finally:
        replies.close()
        sink.close()


def test_errors_are_answered_on_the_response_topic_and_detection_goes_on(mosquitto: Any, tmp_path: Path) -> None:
    handler = Handler()
    ctx = context()
    sink = start_sink(mosquitto.port, tmp_path, handler, protocol="3.1.1")
    watch = Collector(mosquitto.port, "edge/#", client_id="watch", v5=False)
    try:
        payloads = [b"not json", b'{"command": "snapshot", "camera": "nope", "id": 2}', b'{"command": "explode"}',
                    b'{"command": "reload", "id": 3}']
        for i, p in enumerate(payloads):
            feed(sink, ctx, "door", 10, start=10 * i)
            send(watch.client, "edge/dev/command", p)
        assert watch.wait(lambda: len(watch.on("command/response")) == 4)
        assert watch.wait(lambda: len(watch.on("/detections")) == 40)
        answers = watch.json("edge/dev/command/response")
        assert [a["ok"] for a in answers] == [False, False, False, True]
        assert "not valid JSON" in answers[0]["error"]
        assert answers[1]["id"] == 2 and answers[1]["error"] == "unknown camera 'nope'"
        assert "unknown command 'explode'" in answers[2]["error"]
        assert seqs(watch) == list(range(1, 41))
        # A retained command runs once when sent, but is refused when the broker replays it on subscribe.
        send(watch.client, "edge/dev/command", b'{"command": "reload", "id": "kept"}', retain=True)
        assert watch.wait(lambda: len(watch.on("command/response")) == 5)
        sink.close()
        sink = start_sink(mosquitto.port, tmp_path, handler, protocol="3.1.1")
        assert watch.wait(lambda: len(watch.on("command/response")) == 6)
        replayed = watch.json("command/response")[5]
        assert replayed["ok"] is False and "retained" in replayed["error"] and replayed["id"] == "kept"
        send(watch.client, "edge/dev/command", b"", retain=True)  # clear the retained command
    finally:
        watch.close()
        sink.close()
    assert [c["command"] for c in handler.calls] == ["snapshot", "reload", "reload"]


def test_fuzzed_commands_are_all_answered(mosquitto: Any, tmp_path: Path) -> None:
    handler = Handler()
    sink = start_sink(mosquitto.port, tmp_path, handler)
    replies = Collector(mosquitto.port, "#", client_id="fuzzer")
    sent = {"n": 0}
    try:
        json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
        commandish = st.fixed_dictionaries(
            {"command": st.sampled_from(["set_threshold", "enable_camera", "snapshot", "reload", "ping", "bad"])},
            optional={"value": json_leaf, "camera": json_leaf, "id": json_leaf, "zzz": json_leaf},
        ).map(lambda d: json.dumps(d).encode())

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.one_of(st.binary(max_size=300), commandish), st.booleans())
        def one(payload: bytes, with_response_topic: bool) -> None:
            sent["n"] += 1
            corr = str(sent["n"]).encode()
            topic = "fuzz/answers" if with_response_topic else ""
            send(replies.client, "edge/dev/command", payload, topic, corr)
            if with_response_topic:
                assert replies.wait(lambda: any(m[3].CorrelationData == corr for m in replies.on("fuzz/answers")),
                                    timeout=10), payload

        one()
        # Every message answered exactly once: on its own response topic or on the device's.
        assert replies.wait(lambda: len(replies.on("fuzz/answers") + replies.on("command/response")) >= sent["n"])
        time.sleep(0.5)
        assert len(replies.on("fuzz/answers") + replies.on("command/response")) == sent["n"]
        assert sink.stats()["commands"] == sent["n"] and sink.stats()["connected"]
        sink.poll()
    finally:
        replies.close()
        sink.close()

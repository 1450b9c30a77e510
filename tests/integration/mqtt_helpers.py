"""Helpers for the MQTT tests: a real paho subscriber that records what arrives, and frame results."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.postprocess.types import Detections, FrameResult
from edge.publish.payload import PayloadContext, build_payload


class Collector:
    """Subscribes (QoS 1) and records (topic, payload, retain, properties); reconnects by itself.

    ``persistent`` uses a persistent session (MQTT 3.1.1, clean_session false), so messages
    published while it is away are queued for it by the broker.
    """

    def __init__(self, port: int, topics: str = "#", client_id: str = "collector", persistent: bool = False,
                 v5: bool = True) -> None:
        self.messages: List[Tuple[str, bytes, bool, Any]] = []
        self._cond = threading.Condition()
        self.topics = topics
        self.subscribed = threading.Event()
        if persistent or not v5:
            self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311,
                                      clean_session=not persistent)
        else:
            self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(0.1, 1.0)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("collector did not subscribe")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topics, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), msg.properties))
            self._cond.notify_all()

    def on(self, suffix: str) -> List[Tuple[str, bytes, bool, Any]]:
        with self._cond:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def json(self, suffix: str) -> List[Dict[str, Any]]:
        return [json.loads(m[1]) for m in self.on(suffix)]

    def wait(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def frame_result(camera: str, i: int, n_dets: int = 2) -> FrameResult:
    boxes = np.array([[10 + k, 20, 110 + k, 220] for k in range(n_dets)], np.float32).reshape(-1, 4)
    dets = Detections(boxes, np.full(n_dets, 0.9, np.float32), np.zeros(n_dets, np.int32))
    return FrameResult(camera, i, time.time(), time.monotonic(), 640, 480, dets,
                       {"preprocess": 1.0, "infer": 5.0, "postprocess": 0.5})


def feed(sink: Any, ctx: PayloadContext, camera: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        r = frame_result(camera, i)
        sink.publish(r, build_payload(r, ctx))


def context(device: str = "dev") -> PayloadContext:
    return PayloadContext(device, "nanodet", "fp32", "onnxruntime", ["person", "bicycle"])


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def seqs(collector: Collector, suffix: str = "/detections", session: Optional[str] = None) -> List[int]:
    return [p["seq"] for p in collector.json(suffix) if session is None or p["session"] == session]

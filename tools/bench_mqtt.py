#!/usr/bin/env python3
"""Benchmark MQTT publishing through the durable outbox against plain paho, on loopback.

    python tools/bench_mqtt.py                    start a private mosquitto and run everything
    python tools/bench_mqtt.py --port 1883        use a broker that is already running
    python tools/bench_mqtt.py --count 20000 --rate 300 --seconds 10

Prints, side by side with plain paho-mqtt (QoS 1, no outbox):
  1. sustained rate: N detection messages published and acknowledged (goal >= 5,000/s),
     also with write-through commits (commit_interval_ms 0) and draining a backlog from disk;
  2. latency from the capture timestamp to a subscriber in another process at a fixed rate
     (goal p99 <= 20 ms at 300 messages/s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge.config.model import MqttConfig  # noqa: E402
from edge.postprocess.types import Detections, FrameResult  # noqa: E402
from edge.publish.mqtt import MqttSink  # noqa: E402
from edge.publish.payload import PayloadContext, build_payload, encode  # noqa: E402

TOPIC = "bench/dev/cam/detections"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        conf = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "max_queued_messages 0",
                 "max_inflight_messages 0", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.conf = conf
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def make_result(i: int) -> FrameResult:
    boxes = np.array([[100, 120, 180, 300], [400, 50, 470, 260]], np.float32)
    dets = Detections(boxes, np.array([0.91, 0.55], np.float32), np.array([0, 2], np.int32))
    return FrameResult("cam", i, time.time(), time.monotonic(), 1280, 720, dets,
                       {"queue": 0.4, "preprocess": 1.2, "infer": 8.0, "postprocess": 0.6, "total": 10.2})


def context() -> PayloadContext:
    return PayloadContext("dev", "nanodet_g_416", "fp16", "tensorrt", ["person", "bicycle", "car"])


def wait(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.002)
    return pred()


# --------------------------------------------------------------------------- rate
def rate_sink(port: int, count: int, state: Path, commit_ms: int = 100) -> float:
    cfg = MqttConfig(port=port, topic_prefix="bench", commands=False, outbox={"commit_interval_ms": commit_ms})
    sink = MqttSink(cfg, "dev", state)
    sink.start()
    ctx = context()
    wait(lambda: sink.stats()["connected"], 10)
    results = [make_result(i) for i in range(count)]
    t0 = time.perf_counter()
    for r in results:
        sink.publish(r, build_payload(r, ctx))
    ok = wait(lambda: sink.stats()["acked"] >= count, 120)
    dt = time.perf_counter() - t0
    sink.close()
    if not ok:
        raise SystemExit(f"only {sink.stats()['acked']} of {count} acknowledged")
    return count / dt


def rate_backlog(broker: Broker, count: int, state: Path) -> float:
    """Messages appended while the broker is down (on disk), then drained once it is back."""
    broker.stop()
    cfg = MqttConfig(port=broker.port, topic_prefix="bench", commands=False, reconnect_min_s=0.05,
                     reconnect_max_s=0.05)
    sink = MqttSink(cfg, "dev", state)
    sink.start()
    ctx = context()
    for i in range(count):
        r = make_result(i)
        sink.publish(r, build_payload(r, ctx))
    wait(lambda: sink.stats()["outbox_durable"] >= count, 60)
    broker.start()
    wait(lambda: sink.stats()["connected"], 10)
    t0 = time.perf_counter()
    ok = wait(lambda: sink.stats()["acked"] >= count, 120)
    dt = time.perf_counter() - t0
    sink.close()
    if not ok:
        raise SystemExit(f"backlog: only {sink.stats()['acked']} of {count} acknowledged")
    return count / dt


def rate_paho(port: int, count: int) -> float:
    acked = {"n": 0}
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(0)
    c.on_publish = lambda *a: acked.__setitem__("n", acked["n"] + 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ctx = context()
    payloads = [encode(build_payload(make_result(i), ctx)) for i in range(count)]
    t0 = time.perf_counter()
    for p in payloads:
        c.publish(TOPIC, p, qos=1)
    ok = wait(lambda: acked["n"] >= count, 120)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    if not ok:
        raise SystemExit("paho: not all acknowledged")
    return count / dt


# --------------------------------------------------------------------------- latency
def subscriber_main(port: int, out: Path, seconds: float, expect: int) -> None:
    """Runs in its own process: records (receive time - capture time) per message."""
    lat: List[float] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}", protocol=paho.MQTTv5)
    c.on_message = lambda cl, u, m: lat.append(time.time() - json.loads(m.payload)["ts"])
    c.connect("127.0.0.1", port)
    c.subscribe("bench/+/+/detections", qos=1)
    c.loop_start()
    Path(str(out) + ".ready").write_text("1")
    wait(lambda: len(lat) >= expect, seconds)
    c.disconnect()
    c.loop_stop()
    out.write_text(json.dumps(lat))


def latency(port: int, rate: float, seconds: float, publish: Callable[[FrameResult], None], tmp: Path,
            name: str) -> Dict[str, float]:
    out = tmp / f"lat-{name}-{time.monotonic_ns()}.json"
    n = int(rate * seconds)
    sub = subprocess.Popen([sys.executable, __file__, "--subscriber", str(out), "--port", str(port),
                            "--seconds", str(seconds * 3 + 10), "--count", str(n)])
    wait(lambda: Path(str(out) + ".ready").exists(), 20)
    time.sleep(0.3)
    t0 = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        publish(make_result(i))
    sub.wait(seconds * 3 + 30)
    lat = np.array(json.loads(out.read_text())) * 1000
    return {"n": len(lat), "sent": n, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "max": float(lat.max())}


def latency_sink(port: int, rate: float, seconds: float, tmp: Path) -> Dict[str, float]:
    cfg = MqttConfig(port=port, topic_prefix="bench", commands=False)
    sink = MqttSink(cfg, "dev", tmp / "lat-state")
    sink.start()
    wait(lambda: sink.stats()["connected"], 10)
    ctx = context()
    try:
        return latency(port, rate, seconds, lambda r: sink.publish(r, build_payload(r, ctx)), tmp, "sink")
    finally:
        sink.close()


def latency_paho(port: int, rate: float, seconds: float, tmp: Path) -> Dict[str, float]:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho-lat", protocol=paho.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ctx = context()
    try:
        return latency(port, rate, seconds, lambda r: c.publish(TOPIC, encode(build_payload(r, ctx)), qos=1),
                       tmp, "paho")
    finally:
        c.disconnect()
        c.loop_stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="use this broker on 127.0.0.1 (default: start one)")
    ap.add_argument("--count", type=int, default=20000, help="messages for the rate test")
    ap.add_argument("--rate", type=float, default=300.0, help="messages/s for the latency test")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the latency test")
    ap.add_argument("--repeat", type=int, default=1, help="run the latency test this many times")
    ap.add_argument("--subscriber", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.subscriber:
        subscriber_main(args.port, args.subscriber, args.seconds, args.count)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as d:
        tmp = Path(d)
        broker = Broker(tmp)
        port = args.port or broker.port
        if not args.port:
            broker.start()
        try:
            print(f"MQTT benchmark on 127.0.0.1:{port}, {args.count} messages of "
                  f"{len(encode(build_payload(make_result(0), context())))} bytes, QoS 1")
            paho_rate = rate_paho(port, args.count)
            sink_rate = rate_sink(port, args.count, tmp / "s1")
            wt_rate = rate_sink(port, args.count, tmp / "s2", commit_ms=0)
            print(f"{'sustained rate (msg/s)':40s} {'paho':>10s} {'edge':>10s} {'edge/paho':>10s}")
            print(f"{'  publish + ack':40s} {paho_rate:10.0f} {sink_rate:10.0f} {sink_rate / paho_rate:10.2f}")
            print(f"{'  write-through outbox (commit 0 ms)':40s} {paho_rate:10.0f} {wt_rate:10.0f} "
                  f"{wt_rate / paho_rate:10.2f}")
            if not args.port:
                bl_rate = rate_backlog(broker, args.count, tmp / "s3")
                print(f"{'  backlog drained from disk':40s} {paho_rate:10.0f} {bl_rate:10.0f} "
                      f"{bl_rate / paho_rate:10.2f}")
            for run in range(args.repeat):
                lp = latency_paho(port, args.rate, args.seconds, tmp)
                ls = latency_sink(port, args.rate, args.seconds, tmp)
                print(f"latency capture -> subscriber at {args.rate:g} msg/s for {args.seconds:g} s (ms)"
                      + (f", run {run + 1}" if args.repeat > 1 else ""))
                for k in ("p50", "p99", "max"):
                    print(f"  {k:38s} {lp[k]:10.2f} {ls[k]:10.2f} {ls[k] / max(lp[k], 1e-9):10.2f}")
                print(f"  {'received/sent':38s} {lp['n']:5d}/{lp['sent']:<4d} {ls['n']:5d}/{ls['sent']:<4d}")
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The demo: a broker (reused or started), the daemon on the shared video, a subscriber.

    python tools/demo.py [--seconds 30]     (0 = until Ctrl-C)

Uses the broker on 127.0.0.1:1883 when one answers; otherwise starts a private mosquitto
on a free port for the duration of the demo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_broker(workdir: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        sys.exit("demo: mosquitto is not installed (run tools/setup.sh)")
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not _listening("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit("demo: could not start mosquitto")
        time.sleep(0.05)
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to run (0 = until Ctrl-C)")
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "demo.yaml")
    args = ap.parse_args()

    import paho.mqtt.client as mqtt

    with tempfile.TemporaryDirectory(prefix="edge-demo-") as tmp:
        broker = None
        port = 1883
        if _listening("127.0.0.1", port):
            print(f"demo: using the MQTT broker on 127.0.0.1:{port}")
        else:
            broker, port = _start_broker(Path(tmp))
            print(f"demo: started a private mosquitto on 127.0.0.1:{port}")

        counts = {"messages": 0, "detections": 0}

        def on_message(_c, _u, msg):  # type: ignore[no-untyped-def]
            if not msg.topic.endswith("/detections"):
                print(f"  [{msg.topic}] {msg.payload[:160].decode(errors='replace')}")
                return
            p = json.loads(msg.payload)
            counts["messages"] += 1
            counts["detections"] += len(p["detections"])
            labels = {}
            for d in p["detections"]:
                labels[d["label"]] = labels.get(d["label"], 0) + 1
            what = ", ".join(f"{n} {k}" for k, n in sorted(labels.items())) or "nothing"
            lat = p["latency_ms"].get("total", 0.0)
            print(f"{p['camera']} frame {p['frame']:>5}: {what:<28} ({lat:.0f} ms from capture)")

        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-demo-sub-{os.getpid()}")
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("edge/demo/#", qos=1)
        sub.loop_start()

        env = dict(os.environ, EDGE_MQTT_PORT=str(port))
        exe = Path(sys.executable).with_name("edge-detector")
        cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "edge"])]
        daemon = subprocess.Popen([*cmd, "run", "-c", str(args.config)], env=env)
        print(f"demo: edge-detector running (pid {daemon.pid}); detections arrive below")
        try:
            deadline = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
            while time.monotonic() < deadline and daemon.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            rc = daemon.wait(30)
            time.sleep(0.5)
            sub.loop_stop()
            sub.disconnect()
            if broker is not None:
                broker.terminate()
                broker.wait(5)
        print(f"demo: {counts['messages']} messages, {counts['detections']} detections; daemon exit code {rc}")
        return 0 if rc == 0 and counts["messages"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Helpers to run the real daemon as a subprocess and watch what it publishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]

NANODET_INPUT = {
    "color": "bgr",
    "mean": [103.53, 116.28, 123.675],
    "std": [57.375, 57.12, 58.395],
}


def write_config(tmp: Path, data: Dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def demo_config(assets: Any, tmp: Path, port: int, **over: Any) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {
        "device": "testdev",
        "log_level": "info",
        "state_dir": str(tmp / "state"),
        "sinks": ["mqtt"],
        "cameras": [
            {"name": "street", "source": {"kind": "file", "path": str(assets.video), "loop": True, "realtime": True}}
        ],
        "model": {"path": str(assets.model), "name": "nanodet-g", "input": dict(NANODET_INPUT)},
        "backend": {"kind": "onnxruntime", "precision": "best"},
        "mqtt": {"host": "127.0.0.1", "port": port, "stats_interval_s": 2},
    }
    cfg.update(over)
    return cfg


class DaemonProcess:
    """``edge-detector run`` in a subprocess, its stderr collected line by line."""

    def __init__(self, config: Path, *extra: str, env: Optional[Dict[str, str]] = None) -> None:
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "-c", str(config), *extra],
            cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.stderr: List[str] = []
        self.stdout: List[bytes] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream: Any, into: List[Any], text: bool) -> None:
        for line in iter(stream.readline, b""):
            into.append(line.decode(errors="replace").rstrip("\n") if text else line)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for {what}:\n"
                                     + "\n".join(self.stderr[-30:]))
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(self.stderr[-30:]))

    def log_has(self, text: str) -> bool:
        return any(text in line for line in self.stderr)

    def terminate(self, timeout: float = 15.0) -> float:
        """SIGTERM; returns seconds until exit."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        for t in self._threads:
            t.join(2)
        return time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for t in self._threads:
            t.join(2)

    def json_lines(self) -> List[Dict[str, Any]]:
        return [json.loads(b) for b in list(self.stdout) if b.strip().startswith(b"{")]


class Subscriber:
    """A real MQTT subscriber collecting JSON payloads by topic."""

    def __init__(self, port: int, topic: str = "#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: List[Any] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{os.getpid()}-{id(self)}")
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise AssertionError("subscription not acknowledged")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def payloads(self, suffix: str) -> List[Dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix)]

    def raw(self, suffix: str) -> List[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

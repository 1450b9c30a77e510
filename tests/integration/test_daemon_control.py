"""Remote commands and SIGHUP reloads against the running daemon (real broker, model, video)."""

from __future__ import annotations

import json
import signal
import time

import yaml
from daemon_helpers import DaemonProcess, Subscriber, demo_config, write_config


def _send(port: int, payload: dict) -> None:
    import paho.mqtt.publish as publish

    publish.single("edge/testdev/command", json.dumps(payload), qos=1, hostname="127.0.0.1", port=port)


def _answer(sub: Subscriber, cid: str, daemon: DaemonProcess) -> dict:
    def found() -> bool:
        return any(a.get("id") == cid for a in sub.payloads("/response"))

    daemon.wait_for(found, 20, f"answer to {cid}")
    return next(a for a in sub.payloads("/response") if a.get("id") == cid)


def test_commands_change_detection_without_restart(assets, mosquitto, tmp_path) -> None:
    sub = Subscriber(mosquitto.port, "edge/testdev/#")
    cfg = demo_config(assets, tmp_path, mosquitto.port)
    cfg["cameras"].append({"name": "second", "source": {"kind": "test", "pattern": "ball", "fps": 5}})
    daemon = DaemonProcess(write_config(tmp_path, cfg))
    try:
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= 5, 90, "detections")

        # A higher threshold applies to every later frame of that camera.
        _send(mosquitto.port, {"command": "set_threshold", "value": 0.7, "camera": "street", "id": "t1"})
        assert _answer(sub, "t1", daemon)["ok"] is True
        mark = len(sub.payloads("/detections"))
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= mark + 20, 60, "more detections")
        later = [m for m in sub.payloads("/detections")[mark + 5:] if m["camera"] == "street"]
        assert later and all(d["score"] >= 0.7 for m in later for d in m["detections"])

        # A snapshot arrives as a JPEG on the camera's snapshot topic.
        _send(mosquitto.port, {"command": "snapshot", "camera": "street", "id": "s1"})
        assert _answer(sub, "s1", daemon)["ok"] is True
        daemon.wait_for(lambda: sub.raw("street/snapshot"), 20, "snapshot")
        assert sub.raw("street/snapshot")[-1][:3] == b"\xff\xd8\xff"

        # Disabling a camera stops its detections; the other camera keeps going.
        _send(mosquitto.port, {"command": "disable_camera", "camera": "second", "id": "d1"})
        assert _answer(sub, "d1", daemon)["ok"] is True
        time.sleep(1.0)
        mark = len(sub.payloads("/detections"))
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= mark + 15, 60, "detections after disable")
        cams = {m["camera"] for m in sub.payloads("/detections")[mark:]}
        assert cams == {"street"}

        # Errors are answered, and detection goes on.
        _send(mosquitto.port, {"command": "snapshot", "camera": "nope", "id": "e1"})
        bad = _answer(sub, "e1", daemon)
        assert bad["ok"] is False and "nope" in bad["error"]
        mark = len(sub.payloads("/detections"))
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= mark + 5, 30, "detections after an error")
        daemon.terminate()
    finally:
        daemon.kill()
        sub.close()
    assert daemon.proc.returncode == 0


def test_sighup_applies_a_valid_config_and_rejects_an_invalid_one(assets, mosquitto, tmp_path) -> None:
    sub = Subscriber(mosquitto.port, "edge/testdev/#")
    data = demo_config(assets, tmp_path, mosquitto.port)
    path = write_config(tmp_path, data)
    daemon = DaemonProcess(path)
    try:
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= 5, 90, "detections")
        session = sub.payloads("/detections")[-1]["session"]

        # Invalid: rejected with one line, detection continues with the old config.
        path.write_text(path.read_text() + "\nbogus_key: 1\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda: daemon.log_has("new configuration rejected"), 20, "rejection")
        line = next(x for x in daemon.stderr if "new configuration rejected" in x)
        assert "bogus_key" in line and "unknown key" in line
        mark = len(sub.payloads("/detections"))
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= mark + 5, 30, "detections after rejection")

        # Valid: only persons with a high score from now on; same engine, same session.
        data["detect"] = {"classes": ["person"], "score_threshold": 0.6}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda: daemon.log_has("new configuration in force"), 20, "reload")
        mark = len(sub.payloads("/detections"))
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= mark + 15, 60, "detections after reload")
        later = sub.payloads("/detections")[mark + 5:]
        assert all(d["label"] == "person" and d["score"] >= 0.6 for m in later for d in m["detections"])
        assert {m["session"] for m in later} == {session}
        assert not daemon.log_has("opening the new engine")

        # The reload command answers with the problem of an invalid file, and applies a valid one.
        path.write_text(path.read_text() + "\nbogus_key: 1\n")
        _send(mosquitto.port, {"command": "reload", "id": "r1"})
        bad = _answer(sub, "r1", daemon)
        assert bad["ok"] is False and "bogus_key" in bad["error"]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        _send(mosquitto.port, {"command": "reload", "id": "r2"})
        assert _answer(sub, "r2", daemon)["ok"] is True
        daemon.wait_for(lambda: sum("new configuration in force" in x for x in daemon.stderr) >= 2, 20, "reload")
        daemon.terminate()
    finally:
        daemon.kill()
        sub.close()
    assert daemon.proc.returncode == 0

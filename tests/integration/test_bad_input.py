"""Bad input at start-up: one clear line and a documented exit code, or a documented retry.

Every case runs the real `edge-detector` command; none may print a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_helpers import ROOT, DaemonProcess, Subscriber, demo_config, write_config
from edge_testkit import Mosquitto, free_port, load_make_models


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return load_make_models().write_all(tmp_path_factory.mktemp("models"))


def test_unparsable_yaml(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("cameras: [\n  - name: a\n")
    proc = _run("run", "-c", str(path))
    assert proc.returncode == 3
    assert "not valid YAML" in _one_error_line(proc)


def test_check_config_lists_every_problem_with_lines(assets, tmp_path) -> None:
    cfg = demo_config(assets, tmp_path, 1883)
    cfg["detect"] = {"score_threshold": 3}
    cfg["cameras"][0]["source"]["loops"] = True
    proc = _run("check-config", str(write_config(tmp_path, cfg)))
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert "cameras[0].source.loops: unknown key" in proc.stderr
    assert "detect.score_threshold" in proc.stderr
    assert proc.stderr.count("config.yaml:") == 2
    ok = _run("check-config", str(write_config(tmp_path, demo_config(assets, tmp_path, 1883), "ok.yaml")))
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_missing_model(assets, tmp_path) -> None:
    cfg = demo_config(assets, tmp_path, 1883)
    cfg["model"]["path"] = str(tmp_path / "nope.onnx")
    proc = _run("run", "-c", str(write_config(tmp_path, cfg)))
    assert proc.returncode == 3
    assert "model.path" in _one_error_line(proc) and "not found" in proc.stderr


def test_unreadable_model(assets, tmp_path) -> None:
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    cfg = demo_config(assets, tmp_path, 1883)
    cfg["model"]["path"] = str(bad)
    proc = _run("run", "-c", str(write_config(tmp_path, cfg)))
    assert proc.returncode == 4
    assert "garbage.onnx" in _one_error_line(proc)


def test_model_whose_input_is_not_an_image(assets, tmp_path, tiny_models) -> None:
    cfg = demo_config(assets, tmp_path, 1883)
    cfg["model"] = {"path": str(tiny_models["not_image"])}
    proc = _run("run", "-c", str(write_config(tmp_path, cfg)))
    assert proc.returncode == 4
    assert "not an image tensor" in _one_error_line(proc)


def test_video_file_that_does_not_exist(assets, tmp_path) -> None:
    cfg = demo_config(assets, tmp_path, 1883)
    cfg["cameras"][0]["source"]["path"] = str(tmp_path / "missing.avi")
    proc = _run("run", "-c", str(write_config(tmp_path, cfg)))
    assert proc.returncode == 3
    line = _one_error_line(proc)
    assert "cameras[0].source.path" in line and "missing.avi" in line


def test_fp16_on_onnxruntime_is_refused_not_downgraded(assets, tmp_path) -> None:
    cfg = demo_config(assets, tmp_path, 1883)
    cfg["backend"] = {"kind": "onnxruntime", "precision": "fp16"}
    proc = _run("run", "-c", str(write_config(tmp_path, cfg)))
    assert proc.returncode == 6
    assert "fp16" in _one_error_line(proc)


def test_tensorrt_asked_for_where_absent(assets, tmp_path) -> None:
    cfg = demo_config(assets, tmp_path, 1883)
    cfg["backend"] = {"kind": "tensorrt"}
    proc = _run("run", "-c", str(write_config(tmp_path, cfg)))
    assert proc.returncode == 6
    assert "TensorRT" in _one_error_line(proc)


def test_unreachable_broker_is_retried_and_nothing_is_lost(assets, tmp_path) -> None:
    """No broker at start-up: the daemon keeps detecting, retries, and delivers once one appears."""
    port = free_port()
    cfg = demo_config(assets, tmp_path, port)
    cfg["mqtt"]["reconnect_min_s"] = 0.2
    cfg["mqtt"]["reconnect_max_s"] = 1.0
    daemon = DaemonProcess(write_config(tmp_path, cfg))
    broker = Mosquitto(tmp_path, port=port)
    try:
        time.sleep(4)
        assert daemon.proc.poll() is None, "\n".join(daemon.stderr)
        assert "Traceback" not in "\n".join(daemon.stderr)
        assert any("MQTT" in ln and ("retry" in ln or "connect" in ln) for ln in daemon.stderr), daemon.stderr
        broker.start()
        sub = Subscriber(port, "edge/testdev/+/detections")
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= 40, 60, "backlog and live detections")
        daemon.terminate()
        time.sleep(0.5)
        seqs = sorted({m["seq"] for m in sub.payloads("/detections")})
        sub.close()
        # Detections made while the broker was away arrive too: sequence numbers start at 1.
        assert seqs[0] == 1 and seqs == list(range(1, len(seqs) + 1))
    finally:
        daemon.kill()
        broker.stop(kill=True)
    assert daemon.proc.returncode == 0


def test_camera_that_cannot_be_opened_is_retried(assets, tmp_path) -> None:
    assert not Path("/dev/video97").exists(), "the test needs a device node that does not exist"
    cfg = demo_config(assets, tmp_path, 1)
    cfg["cameras"] = [{"name": "usb", "source": {"kind": "v4l2", "device": "/dev/video97"}},
                      cfg["cameras"][0]]
    cfg["cameras"][1]["source"]["realtime"] = False
    daemon = DaemonProcess(write_config(tmp_path, cfg), "--sink", "stdout")
    try:
        daemon.wait_for(lambda: len(daemon.stdout) >= 10, 60, "detections from the other camera")
        daemon.wait_for(lambda: sum("/dev/video97" in ln for ln in daemon.stderr) >= 2, 30, "retries")
        assert daemon.proc.poll() is None
        daemon.terminate()
    finally:
        daemon.kill()
    assert "Traceback" not in "\n".join(daemon.stderr)
    assert daemon.proc.returncode == 0

"""The whole daemon on the real video and model, publishing to a real mosquitto."""

from __future__ import annotations

import re
import time

from daemon_helpers import DaemonProcess, Subscriber, demo_config, write_config

VIDEO_W, VIDEO_H = 768, 576


def test_daemon_publishes_a_message_for_every_frame_with_persons(assets, mosquitto, tmp_path) -> None:
    sub = Subscriber(mosquitto.port, "edge/testdev/#")
    data = demo_config(assets, tmp_path, mosquitto.port)
    # Not real time: the file is read frame by frame at the speed of inference, so every
    # frame must produce exactly one message, whatever the machine's load.
    data["cameras"][0]["source"]["realtime"] = False
    daemon = DaemonProcess(write_config(tmp_path, data))
    try:
        daemon.wait_for(lambda: len(sub.payloads("/detections")) >= 80, 90, "80 detection messages")
        took = daemon.terminate()
    finally:
        daemon.kill()
    assert daemon.proc.returncode == 0, "\n".join(daemon.stderr[-20:])
    assert took < 10, f"SIGTERM took {took:.1f} s"
    time.sleep(0.5)  # let the subscriber's client take the last acknowledged messages
    msgs = sub.payloads("/detections")

    # The daemon says how many results it published; every one of them reached the broker.
    published = [int(m.group(1)) for line in daemon.stderr if (m := re.search(r"published (\d+) results", line))]
    assert published, "\n".join(daemon.stderr[-20:])
    assert len({(m["session"], m["seq"]) for m in msgs}) == published[-1]
    seqs = sorted(m["seq"] for m in msgs)
    assert seqs == list(range(1, len(seqs) + 1))

    # Every captured frame is accounted for: published, or dropped/skipped and counted.
    final = [s for s in sub.payloads("/stats") if s.get("final")]
    assert final, "no final stats at shutdown"
    cam = final[-1]["cameras"]["street"]
    assert cam["published"] == len(msgs)
    assert cam["frames"] == cam["published"] + cam["dropped_unread"] + cam["skipped"], cam
    frames = sorted(m["frame"] for m in msgs)
    assert frames == list(range(1, len(frames) + 1)), "a frame produced no message"
    assert cam["dropped"] == 0 and cam["skipped"] == 0, cam

    sub.close()
    counts = []
    for m in msgs:
        assert m["v"] == 1 and m["device"] == "testdev" and m["camera"] == "street"
        assert m["source"] == {"width": VIDEO_W, "height": VIDEO_H}
        assert m["model"] == {"name": "nanodet-g", "precision": "fp32", "backend": "onnxruntime"}
        assert set(m["latency_ms"]) >= {"preprocess", "infer", "postprocess", "total"}
        persons = [d for d in m["detections"] if d["label"] == "person"]
        counts.append(len(persons))
        for d in m["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= VIDEO_W and 0 <= y1 < y2 <= VIDEO_H, d
            assert 0.35 <= d["score"] <= 1.0
    # The video shows 3-11 pedestrians per frame; allow a little slack for partly hidden ones.
    in_range = sum(2 <= c <= 12 for c in counts) / len(counts)
    assert in_range >= 0.9, counts


def test_availability_and_status_are_retained(assets, mosquitto, tmp_path) -> None:
    cfg = write_config(tmp_path, demo_config(assets, tmp_path, mosquitto.port))
    daemon = DaemonProcess(cfg)
    try:
        probe = Subscriber(mosquitto.port, "edge/testdev/#")
        daemon.wait_for(lambda: len(probe.payloads("/detections")) >= 3, 90, "detections")
        probe.close()
        # A subscriber arriving later still gets the retained state.
        late = Subscriber(mosquitto.port, "edge/testdev/#")
        daemon.wait_for(lambda: late.raw("/availability") and late.payloads("/status"), 10, "retained topics")
        assert late.raw("/availability")[-1] == b"online"
        status = late.payloads("/status")[-1]
        assert status["model"] == "nanodet-g" and status["backend"] == "onnxruntime"
        assert status["cameras"] == ["street"]
        daemon.terminate()
        daemon.wait_for(lambda: late.raw("/availability")[-1] == b"stopped", 10, "availability stopped")
        late.close()
    finally:
        daemon.kill()
    assert daemon.proc.returncode == 0


def test_stdout_sink_override(assets, tmp_path) -> None:
    cfg = demo_config(assets, tmp_path, 1)  # no broker: --sink stdout must not need one
    cfg["cameras"][0]["source"]["realtime"] = False
    daemon = DaemonProcess(write_config(tmp_path, cfg), "--sink", "stdout")
    try:
        daemon.wait_for(lambda: len(daemon.stdout) >= 20, 60, "20 JSON lines on stdout")
        daemon.terminate()
    finally:
        daemon.kill()
    lines = daemon.json_lines()
    assert len(lines) >= 20
    assert all(line["camera"] == "street" and "detections" in line for line in lines)
    assert daemon.proc.returncode == 0

"""The real daemon with five cameras: four RTSP servers and one file, one server killed.

``edge-detector run --sink stdout`` prints one JSON line per processed frame. Every
camera produces detections; killing one RTSP server leaves the other cameras' rate of
results unchanged (each is limited to ``detect_fps`` so the rate is set by the camera
policy, not by how the shared inference is split), and the daemon keeps running.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from daemon_helpers import DaemonProcess, demo_config, write_config
from edge_testkit import free_port
from rtsp_server import RtspServer, encoded_media

pytest.importorskip("gi")

DETECT_FPS = 2.0
WINDOW_S = 10.0


@pytest.fixture(scope="module")
def h264(assets, tmp_path_factory) -> Path:
    # One encode per test session, shared by every RTSP test module.
    return encoded_media(assets.video, tmp_path_factory.getbasetemp() / "vtest_h264.mp4")


@pytest.fixture
def four_servers(h264, tmp_path) -> Iterator[List[RtspServer]]:
    servers = [RtspServer(h264, free_port(), log=tmp_path / f"rtsp{i}.log") for i in range(4)]
    try:
        for srv in servers:
            srv.start()
        yield servers
    finally:
        for srv in servers:
            srv.close()


def rates(daemon: DaemonProcess, start: int, seconds: float) -> Dict[str, float]:
    """Results per second per camera over the next ``seconds``, from line ``start`` on."""
    time.sleep(seconds)
    lines = daemon.json_lines()[start:]
    return {cam: n / seconds for cam, n in Counter(line["camera"] for line in lines).items()}


@pytest.mark.slow
def test_four_rtsp_cameras_and_a_file_and_one_server_killed(assets, four_servers, tmp_path):
    cfg = demo_config(assets, tmp_path, 1)
    reconnect = {"backoff_initial_s": 0.2, "backoff_max_s": 1.0}
    cams = [
        {
            "name": f"rtsp{i}",
            "source": {"kind": "rtsp", "url": srv.url()},
            "detect_fps": DETECT_FPS,
            "reconnect": reconnect,
        }
        for i, srv in enumerate(four_servers)
    ]
    cams.append(
        {
            "name": "file",
            "source": {"kind": "file", "path": str(assets.video), "realtime": True},
            "detect_fps": DETECT_FPS,
        }
    )
    cfg["cameras"] = cams
    names = [c["name"] for c in cams]
    daemon = DaemonProcess(write_config(tmp_path, cfg), "--sink", "stdout")
    try:

        def all_detecting() -> bool:
            seen = {line["camera"] for line in daemon.json_lines() if line["detections"]}
            return seen == set(names)

        daemon.wait_for(all_detecting, 120, "detections from all five cameras")
        before = rates(daemon, len(daemon.json_lines()), WINDOW_S)
        four_servers[0].kill()
        daemon.wait_for(lambda: daemon.log_has("camera rtsp0 ("), 15, "rtsp0's disconnect in the log")
        after = rates(daemon, len(daemon.json_lines()), WINDOW_S)
        assert daemon.proc.poll() is None, "the daemon died with a camera"
        daemon.terminate()
    finally:
        daemon.kill()
    print(f"results/s before the kill: {before}\nresults/s after the kill:  {after}")
    for name in names:
        assert before.get(name, 0) >= DETECT_FPS * 0.6, (name, before)
    assert after.get("rtsp0", 0) <= 0.2  # at most a frame or two still in flight
    for name in names[1:]:
        # Within noise of its own earlier rate, which the camera's detect_fps sets.
        assert after.get(name, 0) >= before[name] * 0.75, (name, before, after)
    assert any("rtsp0" in line and "reconnecting in" in line for line in daemon.stderr)
    assert daemon.proc.returncode == 0

"""RTSP capture against a real GstRtspServer on loopback (tests/rtsp_server.py, a subprocess).

The server serves an H.264 (or H.265) encode of the shared video; tests kill, freeze and
restart it and check that the source recovers on its own, that other cameras never wait
on a failing one, and that credentials never reach a log line.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterator, List
from urllib.parse import quote

import pytest
from capture_helpers import (
    Collector,
    camera,
    capture_frames,
    native_threads,
    python_threads,
    rss_mb,
    stopped,
    wait_until,
)
from edge_testkit import free_port
from rtsp_server import RtspServer, encoded_media

from edge.capture import SourceState, open_source

pytest.importorskip("gi")

USER = "cam user@site"
PASSWORD = "p@ss w:rd!'\"/#?&"  # every character that breaks a naively pasted URL or pipeline


@pytest.fixture(scope="session")
def h264(assets, tmp_path_factory) -> Path:
    # One encode per test session, shared by every RTSP test module.
    return encoded_media(assets.video, tmp_path_factory.getbasetemp() / "vtest_h264.mp4")


@pytest.fixture
def servers(tmp_path) -> Iterator[Callable[..., RtspServer]]:
    started: List[RtspServer] = []

    def start(media: Path, **kw) -> RtspServer:
        srv = RtspServer(media, free_port(), log=tmp_path / f"rtsp{len(started)}.log", **kw)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.close()


def rtsp(url: str, **kw) -> dict:
    return {"kind": "rtsp", "url": url, **kw}


def streaming(src) -> bool:
    return src.stats.state == SourceState.STREAMING


def secret_free(texts: List[str]) -> None:
    for text in texts:
        for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)):
            assert form not in text, f"password leaked: {text!r}"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_delivers_frames(servers, h264, transport):
    srv = servers(h264)
    seen, src = capture_frames(camera("cam", rtsp(srv.url(), transport=transport)), 5, timeout=30)
    assert seen.seen[0].shape == (576, 768, 3)
    assert src.stats.reconnects == 0


def test_rtsp_h265(servers, assets, tmp_path_factory):
    media = encoded_media(assets.video, tmp_path_factory.mktemp("h265") / "vtest_h265.mp4", "h265", frames=60)
    srv = servers(media)
    seen, _ = capture_frames(camera("hevc", rtsp(srv.url(), codec="h265")), 5, timeout=30)
    assert seen.seen[0].shape == (576, 768, 3)


def test_credentials_with_special_characters_work_and_never_reach_a_log(servers, h264, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    srv = servers(h264, mount="/live/ch-1", user=USER, password=PASSWORD)
    in_url = camera("url", rtsp(srv.url(USER, PASSWORD, query="?channel=1&subtype=0")))
    monkeypatch.setenv("EDGE_TEST_RTSP_PASSWORD", PASSWORD)
    from_secret = camera("sec", rtsp(srv.url(), username=USER, password={"env": "EDGE_TEST_RTSP_PASSWORD"}))
    seen = {"url": Collector(), "sec": Collector()}
    sources = [open_source(cam, seen[cam.name]) for cam in (in_url, from_secret)]
    for src in sources:
        src.start()
    try:
        for src in sources:
            assert seen[src.name].wait_for(3, 30), src.stats.as_dict()
    finally:
        for src in sources:
            stopped(src)
    assert sources[0].where == f"rtsp://***@127.0.0.1:{srv.port}/live/ch-1?channel=1&subtype=0"
    secret_free([r.getMessage() for r in caplog.records])


def test_wrong_password_backs_off_with_a_clear_message(servers, h264, caplog):
    caplog.set_level(logging.DEBUG)
    srv = servers(h264, user=USER, password=PASSWORD)
    wrong = PASSWORD + "x"
    src = open_source(camera("auth", rtsp(srv.url(USER, wrong))), Collector())
    src.start()
    try:
        assert wait_until(lambda: src.stats.reconnects >= 2, 30), src.stats.as_dict()
        assert src.stats.state in (SourceState.BACKOFF, SourceState.CONNECTING)
    finally:
        stopped(src)
    assert "401 Unauthorized" in src.stats.last_error and "check the user name and password" in src.stats.last_error
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "camera auth" in r.getMessage()
    ]
    assert warnings and "reconnecting in" in warnings[0]
    secret_free([r.getMessage() for r in caplog.records] + [src.stats.last_error])
    for text in [r.getMessage() for r in caplog.records]:
        assert quote(wrong, safe="") not in text and wrong not in text


def test_nonexistent_host_backs_off(caplog):
    caplog.set_level(logging.INFO)
    src = open_source(camera("nohost", rtsp("rtsp://no-such-camera.invalid:554/stream")), Collector())
    src.start()
    try:
        assert wait_until(lambda: src.stats.reconnects >= 1, 40), src.stats.as_dict()
    finally:
        stopped(src)
    assert "cannot connect" in src.stats.last_error and "check host and port" in src.stats.last_error
    assert any("camera nohost (rtsp://no-such-camera.invalid:554/stream)" in r.getMessage() for r in caplog.records)


def test_url_with_pipeline_syntax_is_only_a_url(servers, h264):
    srv = servers(h264)
    url = srv.url() + " ! fakesink name=pwned"
    src = open_source(camera("inject", rtsp(url)), Collector())
    graph = src._builder.build()
    try:
        assert graph.pipeline.get_by_name("pwned") is None
        rtspsrc = [e for e in graph.pipeline.children if e.get_factory().get_name() == "rtspsrc"]
        assert len(rtspsrc) == 1
    finally:
        graph.close()
    src.start()
    try:
        assert wait_until(lambda: src.stats.reconnects >= 1, 30), src.stats.as_dict()
    finally:
        stopped(src)
    assert src.stats.frames == 0 and "not RTSP" in src.stats.last_error


@pytest.mark.slow
def test_server_killed_and_restarted_ten_times(servers, h264):
    srv = servers(h264)
    seen = Collector()
    policy = {"stall_timeout_s": 2.0, "backoff_initial_s": 0.2, "backoff_max_s": 0.5, "jitter": 0.2}
    src = open_source(camera("flaky", rtsp(srv.url()), reconnect=policy), seen)
    src.start()
    recovery: List[float] = []
    try:
        assert wait_until(lambda: streaming(src), 30), src.stats.as_dict()
        py_threads = python_threads()
        for i in range(10):
            assert seen.wait_for(seen.count + 5, 30)
            srv.kill()
            assert wait_until(lambda: not streaming(src), 10), f"kill {i} not noticed"
            time.sleep(0.7)  # down long enough for failed attempts and a backoff
            srv.start()
            back = time.monotonic()
            before = seen.count
            assert wait_until(lambda b=before: streaming(src) and seen.count > b, 30), src.stats.as_dict()
            recovery.append(seen.seen[before].monotonic - back)
            if i == 1:
                threads_base, rss_base = native_threads(), rss_mb()
        threads_end, rss_end = native_threads(), rss_mb()
        assert python_threads() == py_threads
    finally:
        stopped(src)
    print(f"recovery after the server returned (s): {[round(r, 2) for r in recovery]}")
    print(f"native threads {threads_base} -> {threads_end}, RSS {rss_base:.1f} -> {rss_end:.1f} MB")
    assert max(recovery) < 2.0, recovery
    assert src.stats.reconnects >= 10
    assert threads_end <= threads_base + 2
    assert rss_end - rss_base < 25


@pytest.mark.slow
def test_frozen_server_is_a_stall_and_other_cameras_do_not_wait(servers, h264):
    frozen, healthy = servers(h264), servers(h264)
    policy = {"stall_timeout_s": 2.0, "backoff_initial_s": 0.2, "backoff_max_s": 1.0}
    seen = {"frozen": Collector(), "healthy": Collector()}
    a = open_source(camera("frozen", rtsp(frozen.url(), latency_ms=100), reconnect=policy), seen["frozen"])
    b = open_source(camera("healthy", rtsp(healthy.url(), latency_ms=100), reconnect=policy), seen["healthy"])
    for src in (a, b):
        src.start()
    try:
        assert wait_until(lambda: streaming(a) and streaming(b), 30)
        assert seen["frozen"].wait_for(10, 30)
        frozen.freeze()
        t0 = time.monotonic()
        assert wait_until(lambda: not streaming(a), 15)
        detected = time.monotonic() - t0
        assert a.stats.stalls == 1 and "stalled" in a.stats.last_error
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t0)))
        during = [s.monotonic for s in seen["healthy"].seen if t0 <= s.monotonic]
        frozen.resume()
        resumed, n = time.monotonic(), seen["frozen"].count
        assert wait_until(lambda: streaming(a) and seen["frozen"].count > n, 20), a.stats.as_dict()
        recovered = time.monotonic() - resumed
    finally:
        for src in (a, b):
            stopped(src)
    gaps = [y - x for x, y in zip(during, during[1:])]
    print(
        f"stall detected after {detected:.2f} s, recovered {recovered:.2f} s after resume; "
        f"healthy camera: {len(during)} frames during the freeze, largest gap {max(gaps):.2f} s"
    )
    assert detected < 2.0 + 0.1 + 1.5  # stall time + jitter-buffer latency + scheduling margin
    assert len(during) >= 50  # ~10 s at 10 fps
    assert max(gaps) < 1.5  # never waited on the frozen camera's 2 s stall or 3 s connect timeouts
    assert b.stats.reconnects == 0

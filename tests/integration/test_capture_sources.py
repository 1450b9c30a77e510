"""Capture sources on real GStreamer pipelines: the shared video, videotestsrc, V4L2, overrides.

Frames reach Python without an extra copy (the ndarray lies on the mapped GStreamer
memory, or on the ring slot that is the one copy), maps and unmaps balance, and user
values can neither break nor extend a pipeline.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from capture_helpers import Collector, camera, capture_frames, rss_mb, stopped, wait_until

from edge.capture import SourceState, open_source
from edge.errors import HardwareError, SourceError
from edge.frames import FrameRing

gst_mod = pytest.importorskip("edge.capture.gst")


@pytest.fixture(scope="module")
def Gst():
    return gst_mod.gst_modules().Gst


# --------------------------------------------------------------------------- the map itself
def test_map_honours_row_stride_and_does_not_copy(Gst):
    # 5x3 BGR: 15 bytes a row, padded to a stride of 16 with 0xEE bytes.
    width, height, stride = 5, 3, 16
    pixels = np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)
    raw = np.full((height, stride), 0xEE, np.uint8)
    raw[:, : width * 3] = pixels.reshape(height, -1)
    buf = Gst.Buffer.new_wrapped(raw.tobytes())
    before = gst_mod.MAP_COUNTS.outstanding
    mapped = gst_mod.MappedBuffer(gst_mod.buffer_pointer(buf))
    view = gst_mod.bgr_view(mapped, gst_mod.Layout(width, height, stride))
    assert view.__array_interface__["data"][0] == mapped.address  # a view, not a copy
    assert view.strides == (stride, 3, 1)
    np.testing.assert_array_equal(view, pixels)
    assert not view.flags.writeable
    assert gst_mod.MAP_COUNTS.outstanding == before + 1
    mapped.release()
    mapped.release()  # idempotent
    assert gst_mod.MAP_COUNTS.outstanding == before


def test_map_refuses_a_buffer_too_small_for_the_layout(Gst):
    buf = Gst.Buffer.new_wrapped(bytes(40))
    mapped = gst_mod.MappedBuffer(gst_mod.buffer_pointer(buf))
    try:
        with pytest.raises(SourceError, match="does not hold"):
            gst_mod.bgr_view(mapped, gst_mod.Layout(5, 3, 16))
    finally:
        mapped.release()


# --------------------------------------------------------------------------- test source
def test_odd_width_frames_are_zero_copy_views_of_mapped_memory():
    cam = camera("odd", {"kind": "test", "pattern": "smpte", "width": 150, "height": 20, "fps": 30})
    seen, _ = capture_frames(cam, 5, keep=1)
    first = seen.seen[0]
    assert first.shape == (20, 150, 3) and not first.writeable
    assert [s.seq for s in seen.seen] == list(range(1, len(seen.seen) + 1))
    img = seen.images[0]
    # SMPTE bars in BGR order: white, yellow, cyan, green, magenta, red, blue. Rows of the
    # top part are identical, which a wrong row stride would shear.
    bars = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0), (255, 0, 255), (0, 0, 255), (255, 0, 0)]
    np.testing.assert_array_equal(img[0, ::22], np.array(bars, np.uint8))
    np.testing.assert_array_equal(img[10], img[0])


def test_frame_pointer_is_the_mapped_address_and_release_unmaps():
    frames = []
    cam = camera("zc", {"kind": "test", "width": 150, "height": 20, "fps": 30})
    src = open_source(cam, frames.append)
    src.start()
    try:
        assert wait_until(lambda: len(frames) >= 3, 20)
    finally:
        stopped(src)
    outstanding = gst_mod.MAP_COUNTS.outstanding
    for frame in frames:
        mapped = frame._release.__self__  # the MappedBuffer that unmaps this frame
        assert isinstance(mapped, gst_mod.MappedBuffer)
        assert frame.image.__array_interface__["data"][0] == mapped.address
        assert frame.image.strides[0] == 452  # 150*3 rounded up to 4 bytes
    for frame in frames:
        frame.release()
    assert gst_mod.MAP_COUNTS.outstanding == outstanding - len(frames)


def test_ring_slot_is_the_one_copy_and_exhaustion_is_counted():
    outstanding = gst_mod.MAP_COUNTS.outstanding
    ring = FrameRing(3)
    seen = Collector(hold=True)
    src = open_source(camera("ring", {"kind": "test", "width": 64, "height": 48, "fps": 100}), seen, ring)
    src.start()
    try:
        assert wait_until(lambda: src.stats.dropped >= 5, 20), src.stats.as_dict()
        assert seen.count == 3  # every slot is held: the rest were dropped, not queued
        slots = {f.image.__array_interface__["data"][0] for f in seen.held}
        assert len(slots) == 3 and all(f.image.flags.writeable for f in seen.held)
        seen.release_all()  # slots come back: frames flow again, into the same three buffers
        assert seen.wait_for(6, 20)
        assert {s.address for s in seen.seen[3:6]} <= slots
    finally:
        stopped(src)
        seen.release_all()
    assert gst_mod.MAP_COUNTS.outstanding == outstanding  # each map was undone right after the copy


@pytest.mark.slow
def test_maps_and_unmaps_balance_over_thousands_of_frames():
    seen = Collector()
    src = open_source(camera("many", {"kind": "test", "pattern": "snow", "width": 96, "height": 64, "fps": 1000}), seen)
    src.start()
    try:
        assert seen.wait_for(500, 60)
        rss_start = rss_mb()
        assert seen.wait_for(5000, 120), src.stats.as_dict()
        grown = rss_mb() - rss_start
    finally:
        stopped(src)
    assert gst_mod.MAP_COUNTS.outstanding == 0
    assert gst_mod.MAP_COUNTS.mapped >= 5000
    assert grown < 15, f"RSS grew by {grown:.1f} MB over 4500 frames"


def test_frame_size_scales_in_the_pipeline():
    cam = camera("small", {"kind": "test", "width": 640, "height": 480}, frame_size=(320, 200))
    seen, _ = capture_frames(cam, 2, timeout=20)
    assert seen.seen[0].shape == (200, 320, 3)


# --------------------------------------------------------------------------- files
def test_file_without_loop_delivers_every_frame_then_stops(assets, video_frames):
    seen = Collector(keep=3)
    src = open_source(camera("once", {"kind": "file", "path": str(assets.video), "loop": False}), seen)
    src.start()
    try:
        assert wait_until(lambda: src.stats.state == SourceState.STOPPED, 120), src.stats.as_dict()
    finally:
        stopped(src)
    assert [s.seq for s in seen.seen] == list(range(1, 796))  # vtest.avi has 795 frames
    assert seen.seen[0].shape == (576, 768, 3)
    for ours, cv in zip(seen.images, video_frames):  # same frames as OpenCV's decoder, in BGR order
        assert np.abs(ours.astype(int) - cv.astype(int)).mean() < 4
    assert src.alive()  # a finished file is not a stalled worker


def test_looping_file_starts_again_seamlessly(assets):
    seen = Collector()
    src = open_source(camera("loop", {"kind": "file", "path": str(assets.video), "loop": True}), seen, FrameRing(4))
    src.start()
    try:
        assert wait_until(lambda: src.stats.loops >= 1 and seen.count > 900, 120), src.stats.as_dict()
    finally:
        stopped(src)
    assert src.stats.reconnects == 0  # seeked back, not rebuilt
    assert [s.seq for s in seen.seen] == list(range(1, seen.count + 1))


def test_realtime_file_is_paced_like_a_camera(assets):
    seen = Collector()
    cam = camera("rt", {"kind": "file", "path": str(assets.video), "realtime": True})
    src = open_source(cam, seen)
    src.start()
    try:
        assert seen.wait_for(1, 20)
        start = seen.seen[0].monotonic
        assert seen.wait_for(11, 30)
    finally:
        stopped(src)
    # 10 frames at 10 fps take about a second; unpaced decoding takes a few milliseconds.
    assert seen.seen[10].monotonic - start > 0.5


def test_path_with_spaces_quotes_and_bang_is_only_a_path(assets, tmp_path):
    weird = tmp_path / 'it\'s a "video" ! identity name=pwned ! fakesink.avi'
    shutil.copy(assets.video, weird)
    seen = Collector()
    cam = camera("weird", {"kind": "file", "path": str(weird), "loop": False})
    src = open_source(cam, seen)
    graph = src._builder.build()  # the graph a real attempt uses
    try:
        assert graph.pipeline.get_by_name("pwned") is None
        filesrcs = [e for e in graph.pipeline.children if e.get_factory().get_name() == "filesrc"]
        assert [e.get_property("location") for e in filesrcs] == [str(weird)]
    finally:
        graph.close()
    src.start()
    try:
        assert seen.wait_for(20, 30), src.stats.as_dict()
    finally:
        stopped(src)


# --------------------------------------------------------------------------- never give up
def test_missing_v4l2_device_is_retried_with_a_clear_message(caplog):
    caplog.set_level(logging.DEBUG, logger="edge.capture")
    src = open_source(camera("usb", {"kind": "v4l2", "device": "/dev/video99"}), Collector())
    src.start()
    try:
        assert wait_until(lambda: src.stats.reconnects >= 3, 30), src.stats.as_dict()
        assert src.stats.state in (SourceState.BACKOFF, SourceState.CONNECTING)
        assert src.alive()
    finally:
        stopped(src)
    assert "/dev/video99 does not exist" in src.stats.last_error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("camera usb (V4L2 device /dev/video99)" in m and "reconnecting in" in m for m in warnings)


def test_missing_file_at_run_time_is_retried(assets, tmp_path):
    path = tmp_path / "later.avi"
    shutil.copy(assets.video, path)
    seen = Collector()
    src = open_source(camera("later", {"kind": "file", "path": str(path), "loop": False}), seen)
    path.unlink()  # validated at load time, gone when capture starts
    src.start()
    try:
        assert wait_until(lambda: src.stats.reconnects >= 1, 20)
        assert "does not exist" in src.stats.last_error
        shutil.copy(assets.video, path)  # it comes back: capture picks it up
        assert seen.wait_for(10, 30), src.stats.as_dict()
    finally:
        stopped(src)


def test_pipeline_override_runs_and_bad_ones_fail_at_start():
    description = "videotestsrc is-live=true ! capsfilter caps=video/x-raw,width=64,height=48"
    good = {"kind": "pipeline", "description": description}
    seen, _ = capture_frames(camera("custom", good), 3, timeout=20)
    assert seen.seen[0].shape == (48, 64, 3)
    with pytest.raises(SourceError, match="does not parse"):
        open_source(camera("bad", {"kind": "pipeline", "description": "videotestsrc ! ! nosuchelement"}), seen)
    with pytest.raises(SourceError, match="no unconnected video output"):
        open_source(camera("closed", {"kind": "pipeline", "description": "videotestsrc ! fakesink"}), seen)


def test_hardware_only_requests_fail_clearly_without_jetson_elements():
    if gst_mod.gst_modules().Gst.ElementFactory.find("nvv4l2decoder") is not None:
        pytest.skip("this machine has the Jetson multimedia elements")
    with pytest.raises(HardwareError, match="nvv4l2decoder"):
        open_source(camera("hw", {"kind": "test"}, decoder="hardware"), Collector())
    with pytest.raises(HardwareError, match="nvarguscamerasrc"):
        open_source(camera("csi", {"kind": "csi"}), Collector())


def test_stop_is_idempotent_and_joins_the_thread():
    src = open_source(camera("st", {"kind": "test"}), Collector())
    src.stop()  # never started
    src.start()
    src.start()  # a second start is a no-op
    thread = src._thread
    src.stop()
    src.stop()
    assert thread is not None and not thread.is_alive()
    assert src.stats.state == SourceState.STOPPED


def test_missing_file_path_is_rejected_by_config(tmp_path: Path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="file not found"):
        camera("nofile", {"kind": "file", "path": str(tmp_path / "nope.avi")})


@pytest.mark.parametrize(
    ("fmt", "media", "decoder"),
    [("mjpeg", "image/jpeg", "jpegdec"), ("yuyv", "video/x-raw", None), ("auto", "image/jpeg", "decodebin")],
)
def test_v4l2_graph_asks_for_the_configured_format(tmp_path, fmt, media, decoder):
    # No camera here: a plain file stands in for the device node, so only the graph is checked.
    device = tmp_path / "video0"
    device.touch()
    cfg = {"kind": "v4l2", "device": str(device), "format": fmt, "width": 640, "height": 480, "fps": 30}
    src = open_source(camera("usb", cfg), Collector())
    graph = src._builder.build()
    try:
        by_factory = {e.get_factory().get_name(): e for e in graph.pipeline.children}
        assert by_factory["v4l2src"].get_property("device") == str(device)
        filters = [
            e.get_property("caps").to_string()
            for e in graph.pipeline.children
            if e.get_factory().get_name() == "capsfilter"
        ]
        wanted = [c for c in filters if media in c]
        assert wanted and "width=(int)640" in wanted[0] and "framerate=(fraction)30/1" in wanted[0]
        if fmt == "yuyv":
            assert "format=(string)YUY2" in wanted[0]
        if decoder is not None:
            assert decoder in by_factory
    finally:
        graph.close()


@pytest.mark.parametrize("fmt", ["I420", "NV12"])
@pytest.mark.parametrize(("w", "h"), [(160, 24), (151, 21)])
def test_yuv_frames_are_converted_once_into_the_ring(fmt: str, w: int, h: int) -> None:
    """A decoder's YUV output becomes BGR on the way into the ring slot (no videoconvert to BGR)."""
    frames = {}
    for kind in ("BGR", fmt):
        caps = f"video/x-raw,format={kind},width={w},height={h}"
        desc = f"videotestsrc is-live=true pattern=smpte ! capsfilter caps={caps}"
        cam = camera(f"yuv{kind}", {"kind": "pipeline", "description": desc})
        seen, _ = capture_frames(cam, 3, ring=FrameRing(3), keep=1)
        frames[kind] = seen.images[0]
        assert seen.images[0].shape == (h, w, 3)
    # The seven top bars, sampled at their centres (bar edges blur with 4:2:0 chroma).
    centres = [int((i + 0.5) * w / 7) for i in range(7)]
    yuv, bgr = frames[fmt][2, centres].astype(int), frames["BGR"][2, centres].astype(int)
    assert np.abs(yuv - bgr).max() <= 4, (yuv.tolist(), bgr.tolist())

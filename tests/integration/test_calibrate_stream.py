"""Calibration frames recorded through the daemon's own GStreamer capture (real pipeline, real video)."""

from __future__ import annotations

from pathlib import Path

import cv2

from edge.calibrate.sampling import sample_source
from edge.calibrate.stream import record_stream
from edge.config.model import CameraConfig, FileSource


def test_frames_recorded_at_a_stride_then_sampled_like_a_folder(tmp_path: Path, assets) -> None:
    camera = CameraConfig(name="cam", source=FileSource(kind="file", path=assets.video, loop=False))
    ticks = []
    folder = record_stream(camera, 6, 5, tmp_path, ticks.append, timeout_s=60)
    files = sorted(folder.glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(6)] and sum(ticks) == 6
    first = cv2.imread(str(files[0]))
    assert first.shape == (576, 768, 3)  # lossless, full size: preprocessing sees what the camera sent
    cap = cv2.VideoCapture(str(assets.video))
    ok, frame0 = cap.read()
    cap.release()
    assert ok and cv2.absdiff(first, frame0).mean() < 8  # frame 0 of the video (decoders may differ slightly)
    sets = sample_source(str(folder), 4, 2, seed=1)
    assert len(sets.calibration) == 4 and len(sets.evaluation) == 2
    assert not set(sets.calibration.keys) & set(sets.evaluation.keys)

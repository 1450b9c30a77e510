"""Deterministic, spread, disjoint sampling of calibration and evaluation frames."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.calibrate.sampling import sample_source, split_indices, stratified
from edge.errors import EdgeError, SourceError


def test_stratified_draws_one_frame_per_span() -> None:
    picks = stratified(795, 50, random.Random(3))
    assert len(picks) == 50 and picks == sorted(set(picks))
    for i, p in enumerate(picks):
        assert i * 795 // 50 <= p < (i + 1) * 795 // 50  # spread over the whole video, never a run
    assert stratified(10, 20, random.Random(0)) == list(range(10))
    assert stratified(10, 0, random.Random(0)) == []


def test_split_is_deterministic_disjoint_and_seeded() -> None:
    a = split_indices(795, 500, 100, seed=0)
    assert a == split_indices(795, 500, 100, seed=0)
    calib, evals = a
    assert len(calib) == 500 and len(evals) == 100 and not set(calib) & set(evals)
    assert max(evals) - min(evals) > 700 and max(calib) - min(calib) > 700  # both cover the video
    assert split_indices(795, 500, 100, seed=1) != a
    with pytest.raises(EdgeError, match="only 795"):
        split_indices(795, 700, 100, seed=0)


def test_video_frames_are_the_frames_at_those_indices(assets) -> None:
    sets = sample_source(str(assets.video), 6, 3, seed=5)
    assert sets.total == 795
    calib, evals = split_indices(795, 6, 3, seed=5)
    assert sets.calibration.keys == [f"frame:{i}" for i in calib]
    assert sets.evaluation.keys == [f"frame:{i}" for i in evals]
    got = list(sets.evaluation)
    cap = cv2.VideoCapture(str(assets.video))
    want = []
    for i in range(max(evals) + 1):
        ok, img = cap.read()
        assert ok
        if i in evals:
            want.append(img)
    cap.release()
    assert len(got) == 3 and all(np.array_equal(g, w) for g, w in zip(got, want))
    assert [k for k in sample_source(str(assets.video), 6, 3, seed=5).calibration.keys] == sets.calibration.keys


def test_image_folders_sample_by_sorted_relative_path(tmp_path: Path) -> None:
    for i in range(12):
        sub = tmp_path / ("b" if i % 2 else "a")
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"{i:02d}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    sets = sample_source(str(tmp_path), 6, 4, seed=2)
    assert sets.total == 12
    assert not set(sets.calibration.keys) & set(sets.evaluation.keys)
    imgs = list(sets.evaluation)
    assert [int(img[0, 0, 0]) for img in imgs] == [int(Path(k).stem) for k in sets.evaluation.keys]


def test_missing_or_empty_sources_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="video file not found"):
        sample_source(str(tmp_path / "nope.avi"), 1, 1)
    with pytest.raises(SourceError, match="no images"):
        sample_source(str(tmp_path), 1, 1)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video")
    with pytest.raises(SourceError):
        sample_source(str(junk), 1, 1)

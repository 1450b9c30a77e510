"""Shared fixtures: the real demo assets, and real mosquitto brokers (see edge_testkit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import pytest
from edge_testkit import Assets, Mosquitto, assets_dir


@pytest.fixture(scope="session")
def assets() -> Assets:
    a = Assets(assets_dir())
    missing = [p for p in (a.model, a.video) if not p.is_file()]
    if missing:
        pytest.fail(
            f"demo assets missing: {', '.join(map(str, missing))} - run `tools/setup.sh` "
            "(or `python tools/assets.py ensure`) with EDGE_ASSETS set",
            pytrace=False,
        )
    return a


@pytest.fixture(scope="session")
def video_frames(assets: Assets) -> List["object"]:
    """The first 40 frames of the shared video (BGR), read with OpenCV."""
    import cv2

    cap = cv2.VideoCapture(str(assets.video))
    frames = []
    while len(frames) < 40:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    assert len(frames) == 40, "could not read the shared video with OpenCV"
    return frames


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop(kill=True)


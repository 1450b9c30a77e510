"""Deterministic, diverse frame sampling for calibration and evaluation.

Frames are picked by stratified sampling: the source is cut into as many equal spans as
frames are wanted and one frame is drawn (seeded) from each span, so a sample covers the
whole video instead of a run of near-identical consecutive frames. Calibration and
evaluation sets drawn together never share a frame.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError, SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
Tick = Callable[[int], None]


def stratified(total: int, count: int, rng: random.Random) -> List[int]:
    """``count`` sorted distinct indices in ``[0, total)``, one drawn from each equal span."""
    if count <= 0 or total <= 0:
        return []
    if count >= total:
        return list(range(total))
    out = []
    for i in range(count):
        lo = (i * total) // count
        hi = ((i + 1) * total) // count  # exclusive, > lo because count < total
        out.append(rng.randrange(lo, hi))
    return out


def split_indices(total: int, n_calib: int, n_eval: int, seed: int) -> Tuple[List[int], List[int]]:
    """Disjoint calibration and evaluation indices, both spread over ``[0, total)``.

    One frame per span for ``n_calib + n_eval`` spans; evenly spaced spans go to the
    evaluation set, the rest to calibration. The same arguments give the same sets.
    """
    if n_calib < 0 or n_eval < 0:
        raise ValueError("counts must not be negative")
    wanted = n_calib + n_eval
    if wanted > total:
        raise EdgeError(
            f"{wanted} frames were asked for ({n_calib} calibration + {n_eval} evaluation) "
            f"but the source has only {total}",
            "lower --count / --eval-count or use a longer video",
        )
    rng = random.Random(seed)
    picks = stratified(total, wanted, rng)
    eval_slots = {(i * wanted) // n_eval + (wanted // n_eval) // 2 for i in range(n_eval)} if n_eval else set()
    calib = [p for i, p in enumerate(picks) if i not in eval_slots]
    evals = [p for i, p in enumerate(picks) if i in eval_slots]
    return calib, evals


# ------------------------------------------------------------------- video files
def video_frame_count(path: Path) -> int:
    """Frames in a video file, counted by decoding (container headers are often wrong)."""
    cap = _open_video(path)
    try:
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise SourceError(f"no frame could be decoded from {path}", "is it a video OpenCV/FFmpeg can read?")
    return n


def iter_video_frames(path: Path, indices: Sequence[int]) -> Iterator[np.ndarray]:
    """Decode the video once, front to back, yielding the frames at ``indices`` (ascending)."""
    wanted = sorted(set(indices))
    if list(indices) != wanted:
        raise ValueError("indices must be ascending and distinct")
    if not wanted:
        return
    cap = _open_video(path)
    try:
        target = iter(wanted)
        nxt: Optional[int] = next(target)
        i = 0
        while nxt is not None and cap.grab():
            if i == nxt:
                ok, img = cap.retrieve()
                if not ok:
                    raise SourceError(f"cannot decode frame {i} of {path}", "re-encode the video")
                yield img
                nxt = next(target, None)
            i += 1
    finally:
        cap.release()
    if nxt is not None:
        raise SourceError(f"{path} ended before frame {nxt}", "the video is shorter than it said")


def _open_video(path: Path) -> Any:
    import cv2

    if not Path(path).is_file():
        raise SourceError(f"video file not found: {path}", "check the path given to --source")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open video {path}", "is it a video OpenCV/FFmpeg can read?")
    return cap


# ------------------------------------------------------------------- image folders
def list_images(folder: Path) -> List[Path]:
    """Image files under ``folder`` (recursive), sorted by relative path for determinism."""
    if not folder.is_dir():
        raise SourceError(f"image folder not found: {folder}", "give a folder of .jpg/.png files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SourceError(f"no images in {folder}", f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
    return files


def read_image(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"cannot read image {path}", "is it a valid image file?")
    return img


# ------------------------------------------------------------------- the entry point
class FrameSet:
    """Frames named by ``keys``, decoded again on every iteration (memory stays flat).

    A calibration set of 500 full-HD frames would hold 3 GB if kept; re-reading a video
    in one sequential pass or a folder of images costs far less than the inference on them.
    """

    def __init__(self, keys: Sequence[str], load: Callable[[], Iterator[np.ndarray]]) -> None:
        self.keys = list(keys)
        self._load = load

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[np.ndarray]:
        n = 0
        for img in self._load():
            n += 1
            yield img
        if n != len(self.keys):
            raise SourceError(f"expected {len(self.keys)} frames, read {n}", "the source changed while in use")

    def first(self) -> np.ndarray:
        for img in self._load():
            return img
        raise SourceError("the frame set is empty", "give a source with frames")


def video_set(path: Path, indices: Sequence[int]) -> FrameSet:
    idx = sorted(indices)
    return FrameSet([f"frame:{i}" for i in idx], lambda: iter_video_frames(path, idx))


def image_set(files: Sequence[Path], root: Path) -> FrameSet:
    files = list(files)
    return FrameSet([f.relative_to(root).as_posix() for f in files], lambda: (read_image(f) for f in files))


@dataclass
class SampleSets:
    calibration: FrameSet
    evaluation: FrameSet
    source: str
    total: int  # frames or images available in the source


def is_stream(source: str) -> bool:
    return source.startswith(("rtsp://", "rtsps://"))


def sample_source(
    source: str,
    n_calib: int,
    n_eval: int,
    seed: int = 0,
    stream_stride: int = 10,
    spool: Optional[Path] = None,
    tick: Optional[Tick] = None,
) -> SampleSets:
    """Disjoint, spread, seeded calibration and evaluation sets from a video, folder or RTSP URL.

    A stream is recorded first (one frame every ``stream_stride``) as PNG files into ``spool``.
    """
    if is_stream(source):
        from edge.calibrate.stream import record_stream

        if spool is None:
            raise EdgeError("sampling a stream needs a folder to record frames into", "pass --out")
        folder = record_stream(source, n_calib + n_eval, stream_stride, spool, tick)
        return sample_source(str(folder), n_calib, n_eval, seed)
    path = Path(source).expanduser()
    if path.is_dir():
        files = list_images(path)
        calib_i, eval_i = split_indices(len(files), n_calib, n_eval, seed)
        return SampleSets(image_set([files[i] for i in calib_i], path), image_set([files[i] for i in eval_i], path),
                          str(path), len(files))
    total = video_frame_count(path)
    calib_i, eval_i = split_indices(total, n_calib, n_eval, seed)
    return SampleSets(video_set(path, calib_i), video_set(path, eval_i), str(path), total)

"""``edge-detector bench``: the backend alone vs the whole pipeline, side by side in one run.

(a) backend only: the model on pre-made input tensors (real frames, preprocessed once);
(b) full pipeline: capture → preprocess → infer → postprocess → sinks, on the config's
    first camera played as fast as it decodes (``realtime`` off, looping).
It prints frames per second of both, their ratio, and per-stage milliseconds (median, p99).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edge.config.model import Config, FileSource
from edge.engine import open_engine
from edge.errors import EdgeError
from edge.frames import FrameMailbox, FrameRing
from edge.health.heartbeat import Heartbeats
from edge.health.timing import percentiles
from edge.pipeline import Pipeline
from edge.publish.base import Sink
from edge.publish.payload import PayloadContext

log = logging.getLogger(__name__)


def _sample_frames(cfg: Config, n: int) -> List[np.ndarray]:
    """Up to ``n`` frames of the first camera (a file), spread over the video."""
    import cv2

    src = cfg.cameras[0].source
    if not isinstance(src, FileSource):
        return []
    cap = cv2.VideoCapture(str(src.path))
    frames: List[np.ndarray] = []
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


def bench_backend(cfg: Config, frames: int) -> Dict[str, Any]:
    engine = open_engine(cfg)
    try:
        engine.backend.activate()
        g = engine.geometry
        images = _sample_frames(cfg, 16) or [np.full((720, 1280, 3), 114, np.uint8)]
        tensors = []
        for img in images:
            t, _ = engine.pre([img] * g.batch)
            tensors.append(np.array(t, copy=True) if isinstance(t, np.ndarray) else t)
        for t in tensors[:3]:
            engine.backend.infer(t)  # warm up
        times = []
        cpu0 = _cpu_s()
        start = time.perf_counter()
        for i in range(frames):
            t0 = time.perf_counter()
            engine.backend.infer(tensors[i % len(tensors)])
            times.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - start
        cpu = _cpu_s() - cpu0
        engine.backend.deactivate()
    finally:
        engine.close()
    p50, p99 = percentiles(times)
    return {"fps": frames * g.batch / wall, "cpu_ms_per_frame": cpu * 1000 / (frames * g.batch),
            "infer_ms": {"p50": p50, "p99": p99}, "frames": frames}


def _cpu_s() -> float:
    """CPU seconds used by this process so far (every thread, user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _CountingSink(Sink):
    """Counts results and records when chosen counts were reached (no polling thread)."""

    name = "count"

    def __init__(self, marks: List[int]) -> None:
        self.count = 0
        self.reached: Dict[int, float] = {}
        self.cpu: Dict[int, float] = {}
        self._marks = set(marks)
        self.done = threading.Event()
        self._last = max(marks)

    def publish(self, result: Any, payload: Dict[str, Any]) -> None:
        self.count += 1
        if self.count in self._marks:
            self.reached[self.count] = time.perf_counter()
            self.cpu[self.count] = _cpu_s()
            if self.count == self._last:
                self.done.set()


def bench_pipeline(cfg: Config, frames: int) -> Dict[str, Any]:
    from edge.capture import open_source
    from edge.daemon import RING_SLOTS, camera_policy, make_sinks

    cam = cfg.cameras[0]
    if isinstance(cam.source, FileSource):
        cam = cam.model_copy(update={"source": cam.source.model_copy(update={"realtime": False, "loop": True})})
    engine = open_engine(cfg)
    warm = max(1, min(10, frames // 10))
    counter = _CountingSink([warm, warm + frames])
    ctx = PayloadContext(cfg.device, cfg.model.display_name, engine.backend.info.precision,
                         engine.backend.info.name, engine.labels)
    sinks: List[Sink] = [counter, *make_sinks(cfg, ctx.session)]
    for s in sinks:
        s.start()
    mailbox = FrameMailbox()
    mailbox.add_camera(cam.name)
    pipeline = Pipeline(mailbox, engine, {cam.name: camera_policy(cfg, cam)}, sinks, ctx, Heartbeats())
    alloc = engine.backend.frame_allocator()
    source = open_source(cam, mailbox.put_paced, FrameRing(RING_SLOTS, alloc) if alloc else None)
    pipeline.start()
    source.start()
    try:
        if not counter.done.wait(120):
            raise EdgeError(f"the pipeline published only {counter.count} of {warm + frames} results in 120 s")
        wall = counter.reached[warm + frames] - counter.reached[warm]
        cpu = counter.cpu[warm + frames] - counter.cpu[warm]
        done = frames
        received, dropped = mailbox.counters()[cam.name]
    finally:
        source.stop()
        pipeline.stop()
        engine.close()
    return {
        "fps": done / wall,
        "cpu_ms_per_frame": cpu * 1000 / done,
        "frames": done,
        "stages_ms": pipeline.latency.summary(),
        "captured": received,
        "dropped_unread": dropped,
    }


def run_bench(cfg: Config, frames: int, json_path: Optional[Path] = None, rounds: int = 3) -> int:
    """Alternate backend-only and pipeline runs ``rounds`` times; report the median ratio.

    Alternating in one process cancels out slow drifts of the machine (other load, CPU
    frequency) that would bias two measurements taken minutes apart.
    """
    cores = os.cpu_count()
    print(f"edge-detector bench: model {cfg.model.display_name}, {rounds} rounds of {frames} frames, "
          f"{cores} CPU cores")
    runs: List[Dict[str, Any]] = []
    for r in range(rounds):
        backend = bench_backend(cfg, frames)
        pipeline = bench_pipeline(cfg, frames)
        ratio = pipeline["fps"] / backend["fps"] if backend["fps"] else 0.0
        runs.append({"backend": backend, "pipeline": pipeline, "ratio": ratio})
        print(f"  round {r + 1}: backend only {backend['fps']:6.1f} FPS, full pipeline {pipeline['fps']:6.1f} FPS, "
              f"ratio {ratio:.3f}; CPU {backend['cpu_ms_per_frame']:.1f} / {pipeline['cpu_ms_per_frame']:.1f} core-ms")
    best = sorted(runs, key=lambda x: x["ratio"])[len(runs) // 2]
    backend, pipeline = best["backend"], best["pipeline"]
    print(f"  median round: backend only {backend['fps']:.1f} FPS (infer p50 {backend['infer_ms']['p50']:.2f} ms, "
          f"p99 {backend['infer_ms']['p99']:.2f} ms), full pipeline {pipeline['fps']:.1f} FPS")
    med_backend = sorted(r["backend"]["fps"] for r in runs)[len(runs) // 2]
    med_pipeline = sorted(r["pipeline"]["fps"] for r in runs)[len(runs) // 2]
    print(f"  ratio pipeline/backend: {best['ratio']:.3f} (median of the {rounds} rounds' ratios); "
          f"ratio of the medians {med_pipeline:.1f}/{med_backend:.1f} = {med_pipeline / med_backend:.3f}")
    cpu_b = sorted(r["backend"]["cpu_ms_per_frame"] for r in runs)[len(runs) // 2]
    cpu_p = sorted(r["pipeline"]["cpu_ms_per_frame"] for r in runs)[len(runs) // 2]
    print(f"  CPU per frame (median): backend only {cpu_b:.1f} core-ms, full pipeline {cpu_p:.1f} core-ms; "
          f"CPU-bound ratio {cpu_b / cpu_p:.3f} (what the FPS ratio tends to when the cores are the limit)")
    print("  pipeline per stage (ms)  p50       p99")
    for stage, v in pipeline["stages_ms"].items():
        print(f"    {stage:<19} {v['p50']:8.2f}  {v['p99']:8.2f}")
    if json_path is not None:
        json_path.write_text(json.dumps({"rounds": runs, "median": best, "cpu_cores": cores}, indent=2))
    return 0

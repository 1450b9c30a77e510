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
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edge.config.model import Config, FileSource
from edge.engine import open_engine
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
        start = time.perf_counter()
        for i in range(frames):
            t0 = time.perf_counter()
            engine.backend.infer(tensors[i % len(tensors)])
            times.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - start
        engine.backend.deactivate()
    finally:
        engine.close()
    p50, p99 = percentiles(times)
    return {"fps": frames * g.batch / wall, "infer_ms": {"p50": p50, "p99": p99}, "frames": frames}


class _CountingSink(Sink):
    name = "count"

    def __init__(self) -> None:
        self.count = 0

    def publish(self, result: Any, payload: Dict[str, Any]) -> None:
        self.count += 1


def bench_pipeline(cfg: Config, frames: int) -> Dict[str, Any]:
    from edge.capture import open_source
    from edge.daemon import camera_policy, make_sinks

    cam = cfg.cameras[0]
    if isinstance(cam.source, FileSource):
        cam = cam.model_copy(update={"source": cam.source.model_copy(update={"realtime": False, "loop": True})})
    engine = open_engine(cfg)
    counter = _CountingSink()
    ctx = PayloadContext(cfg.device, cfg.model.display_name, engine.backend.info.precision,
                         engine.backend.info.name, engine.labels)
    sinks: List[Sink] = [counter, *make_sinks(cfg, ctx.session)]
    for s in sinks:
        s.start()
    mailbox = FrameMailbox()
    mailbox.add_camera(cam.name)
    pipeline = Pipeline(mailbox, engine, {cam.name: camera_policy(cfg, cam)}, sinks, ctx, Heartbeats())
    alloc = engine.backend.frame_allocator()
    source = open_source(cam, mailbox.put_paced, FrameRing(4, alloc) if alloc else None)
    pipeline.start()
    source.start()
    try:
        warm = min(10, frames // 10)
        deadline = time.monotonic() + 120
        while counter.count < warm and time.monotonic() < deadline:
            time.sleep(0.005)
        base, start = counter.count, time.perf_counter()
        while counter.count < base + frames and time.monotonic() < deadline:
            time.sleep(0.002)
        wall = time.perf_counter() - start
        done = counter.count - base
        received, dropped = mailbox.counters()[cam.name]
    finally:
        source.stop()
        pipeline.stop()
        engine.close()
    return {
        "fps": done / wall,
        "frames": done,
        "stages_ms": pipeline.latency.summary(),
        "captured": received,
        "dropped_unread": dropped,
    }


def run_bench(cfg: Config, frames: int, json_path: Optional[Path] = None) -> int:
    cores = os.cpu_count()
    print(f"edge-detector bench: model {cfg.model.display_name}, {frames} frames each, {cores} CPU cores")
    backend = bench_backend(cfg, frames)
    pipeline = bench_pipeline(cfg, frames)
    ratio = pipeline["fps"] / backend["fps"] if backend["fps"] else 0.0
    print(f"  backend only : {backend['fps']:7.1f} FPS  (infer p50 {backend['infer_ms']['p50']:.2f} ms, "
          f"p99 {backend['infer_ms']['p99']:.2f} ms)")
    print(f"  full pipeline: {pipeline['fps']:7.1f} FPS  ({pipeline['frames']} frames published)")
    print(f"  ratio pipeline/backend: {ratio:.3f}")
    print("  per stage (ms)      p50       p99")
    for stage, v in pipeline["stages_ms"].items():
        print(f"    {stage:<14} {v['p50']:8.2f}  {v['p99']:8.2f}")
    if json_path is not None:
        json_path.write_text(json.dumps({"backend": backend, "pipeline": pipeline, "ratio": ratio,
                                         "cpu_cores": cores}, indent=2))
    return 0

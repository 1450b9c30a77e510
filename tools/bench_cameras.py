#!/usr/bin/env python3
"""Benchmark: the real daemon with 1, 2 and 4 cameras on this machine.

For each camera count the daemon (``edge-detector run --sink stdout``) runs against that
many RTSP servers on loopback (``tests/rtsp_server.py``, an H.264 encode of the demo
video at 10 fps) or real-time file sources, and the script prints per camera: results
(frames detected on) per second, objects detected per second, and the share of captured
frames that were dropped because inference was busy (gaps in the frame numbers).

    python tools/bench_cameras.py --video VIDEO --model MODEL [--counts 1 2 4] [--seconds 20]

VIDEO and MODEL default to $EDGE_ASSETS/media/vtest.avi and
$EDGE_ASSETS/models/nanodet_g_416_coco.onnx.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from rtsp_server import RtspServer, encoded_media  # noqa: E402

NANODET_INPUT = {"color": "bgr", "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """The daemon in a subprocess; stdout JSON lines are stamped with their arrival time."""

    def __init__(self, config: Path, log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "-c", str(config), "--sink", "stdout"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.lines: List[Dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            if raw.startswith(b"{"):
                line = json.loads(raw)
                line["_t"] = time.monotonic()
                self.lines.append(line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        self._log.close()


def measure(lines: List[Dict[str, Any]], t0: float, t1: float) -> Dict[str, Dict[str, float]]:
    per: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if t0 <= line["_t"] < t1:
            per[line["camera"]].append(line)
    out = {}
    for cam, ls in sorted(per.items()):
        frames = [x["frame"] for x in ls]
        captured = max(frames) - min(frames) + 1
        out[cam] = {
            "results_per_s": len(ls) / (t1 - t0),
            "objects_per_s": sum(len(x["detections"]) for x in ls) / (t1 - t0),
            "dropped_share": 1.0 - len(ls) / captured if captured else 0.0,
        }
    return out


def run(n: int, args: argparse.Namespace, media: Optional[Path], work: Path) -> Dict[str, Dict[str, float]]:
    servers = [RtspServer(media, free_port()) for _ in range(n)] if media else []
    for srv in servers:
        srv.start()
    cams = []
    for i in range(n):
        if servers:
            source: Dict[str, Any] = {"kind": "rtsp", "url": servers[i].url()}
        else:
            source = {"kind": "file", "path": str(args.video), "realtime": True}
        cams.append({"name": f"cam{i}", "source": source})
    cfg = {
        "device": "bench",
        "log_level": "info",
        "state_dir": str(work / "state"),
        "sinks": ["stdout"],
        "cameras": cams,
        "model": {"path": str(args.model), "name": "nanodet-g", "input": NANODET_INPUT},
        "backend": {"kind": args.backend, "precision": "best"},
    }
    path = work / f"bench{n}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    daemon = Daemon(path, work / f"daemon{n}.log")
    try:
        deadline = time.monotonic() + 120
        while len({x["camera"] for x in daemon.lines}) < n:
            if time.monotonic() > deadline or daemon.proc.poll() is not None:
                raise SystemExit(f"the daemon did not start all {n} cameras: see {work}/daemon{n}.log")
            time.sleep(0.1)
        time.sleep(args.warmup)
        t0 = time.monotonic()
        time.sleep(args.seconds)
        return measure(list(daemon.lines), t0, time.monotonic())
    finally:
        daemon.stop()
        for srv in servers:
            srv.close()


def main() -> None:
    assets = Path(os.environ.get("EDGE_ASSETS", Path.home() / ".cache" / "edge-detector" / "assets"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=assets / "media" / "vtest.avi")
    ap.add_argument("--model", type=Path, default=assets / "models" / "nanodet_g_416_coco.onnx")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt"])
    ap.add_argument("--source", default="rtsp", choices=["rtsp", "file"])
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window per camera count")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    for p in (args.video, args.model):
        if not p.is_file():
            raise SystemExit(f"not found: {p} (set EDGE_ASSETS or pass --video/--model)")
    results: Dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-cameras-") as tmp:
        work = Path(tmp)
        media = encoded_media(args.video, work / "video_h264.mp4") if args.source == "rtsp" else None
        for n in args.counts:
            results["runs"][n] = run(n, args, media, work)
    print(f"\n{args.source} sources at 10 fps, {results['cpus']} CPUs, load before {results['load_before']:.1f}")
    print(f"{'cameras':>7} {'camera':>7} {'results/s':>10} {'objects/s':>10} {'dropped':>8}")
    for n, per in results["runs"].items():
        for cam, r in per.items():
            print(f"{n:>7} {cam:>7} {r['results_per_s']:>10.2f} {r['objects_per_s']:>10.1f} {r['dropped_share']:>8.1%}")
        total = sum(r["results_per_s"] for r in per.values())
        print(f"{n:>7} {'all':>7} {total:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

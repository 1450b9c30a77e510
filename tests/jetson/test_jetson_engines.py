"""On a real Jetson: FP16/INT8 engines of the shared model, the cache, zero copy, and the daemon
on the shared video against ONNX Runtime (same persons, IoU >= 0.9 for FP16)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
import yaml

from edge.config.model import BackendConfig, InputConfig, ModelConfig, TensorRtConfig
from edge.frames import FrameRing
from edge.infer.tensorrt import open_tensorrt_backend
from edge.infer.tensorrt.builder import hardware_of
from edge.preprocess.base import InputGeometry
from edge.preprocess.cpu import CpuPreprocessor

pytestmark = pytest.mark.jetson

ROOT = Path(__file__).resolve().parents[2]
NANODET = {"color": "bgr", "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395]}
GEOMETRY = InputGeometry(416, 416, 1, "bgr", "letterbox", True, 114, (103.53, 116.28, 123.675),
                         (57.375, 57.12, 58.395))


def _open(assets: Any, state_dir: Path, precision: str, **trt: Any) -> Any:
    model = ModelConfig(path=assets.model, input=InputConfig(**NANODET))
    progress: List[str] = []
    start = time.monotonic()
    backend = open_tensorrt_backend(model, BackendConfig(kind="tensorrt", precision=precision,
                                                         tensorrt=TensorRtConfig(**trt)),
                                    state_dir, lambda m, f: progress.append(m))
    return backend, progress, time.monotonic() - start


def test_fp16_engine_is_built_once_then_loaded(jetson, assets, state_dir) -> None:
    backend, _, first = _open(assets, state_dir, "fp16")
    assert backend.info.precision == "fp16" and backend.inputs[0].shape == (1, 3, 416, 416)
    backend.close()
    again, progress2, second = _open(assets, state_dir, "fp16")
    again.close()
    assert not any("building" in m for m in progress2), progress2  # loaded from the cache
    sidecars = list((state_dir / "engines").glob("*fp16*.engine.json"))
    key = json.loads(sidecars[0].read_text())["key"]
    assert key["precision"] == "fp16" and key["tensorrt"] == jetson[0].version_text
    print(f"fp16 engine: first open {first:.1f} s, cached open {second:.1f} s")


class _Calibrator:
    """EntropyCalibrator2 over real frames of the shared video (a test helper, not edge-calibrate)."""

    @staticmethod
    def make(compat: Any, device: Any, frames: List[np.ndarray], cache: Path) -> Any:
        base = compat.calibrator_base("entropy2")
        cuda = device.cuda
        batches = [CpuPreprocessor(GEOMETRY)([f])[0].copy() for f in frames]

        class Calibrator(base):  # type: ignore[misc,valid-type]
            def __init__(self) -> None:
                base.__init__(self)
                self.buf = cuda.mem_alloc(batches[0].nbytes)
                self.i = 0

            def get_batch_size(self) -> int:
                return 1

            def get_batch(self, names: List[str]) -> Optional[List[int]]:
                if self.i >= len(batches):
                    return None
                cuda.memcpy_htod(self.buf, batches[self.i])
                self.i += 1
                return [int(self.buf)]

            def read_calibration_cache(self) -> Optional[bytes]:
                return cache.read_bytes() if cache.exists() else None

            def write_calibration_cache(self, data: Any) -> None:
                cache.write_bytes(bytes(data))

        return Calibrator()


def test_int8_engine_from_a_calibration_cache(jetson, assets, video_frames, state_dir, tmp_path) -> None:
    compat, device = jetson
    hw = hardware_of(compat, device)
    if not hw.fast_int8:
        pytest.skip(f"{hw.label} has no fast INT8 (a Jetson Nano): FP16 is the fastest precision there")
    if not compat.has_calibrators:
        pytest.skip(f"TensorRT {compat.version_text} has no calibrators: INT8 needs a Q/DQ model (edge-calibrate)")
    from edge.infer.tensorrt.builder import build_engine

    cache = tmp_path / "nanodet.calib"
    with device.activated():
        calibrator = _Calibrator.make(compat, device, video_frames[:32], cache)
    build_engine(assets.model, "int8", calibrator=calibrator, compat=compat, device=device)
    with device.activated():
        calibrator.buf.free()
    assert cache.read_bytes().startswith(compat.calibration_header().encode())
    backend, _, _ = _open(assets, state_dir, "int8", calibration_cache=cache)
    assert backend.info.precision == "int8"
    batch, _ = CpuPreprocessor(GEOMETRY)([video_frames[10]])
    backend.activate()
    try:
        out = backend.infer(batch)
    finally:
        backend.deactivate()
    backend.close()
    assert max(float(v.max()) for k, v in out.items() if v.shape[-1] == 80) > 0.5  # confident persons remain


def test_dla_core_with_gpu_fallback(jetson, assets, state_dir) -> None:
    compat, device = jetson
    probe = compat.trt.Builder(compat.logger())
    if compat.dla_cores(probe) == 0:
        pytest.skip(f"{device.name} has no DLA (Nano, Orin Nano)")
    backend, _, _ = _open(assets, state_dir, "fp16", dla_core=0)
    assert "DLA 0" in backend.info.detail
    backend.close()


def test_zero_copy_frames_on_the_integrated_gpu(jetson, assets, video_frames, state_dir) -> None:
    device = jetson[1]
    backend, _, _ = _open(assets, state_dir, "fp16")
    try:
        pre = backend.make_preprocessor(GEOMETRY)
        ring = FrameRing(2, backend.frame_allocator())
        buf, release = ring.acquire(video_frames[0].shape)
        buf[:] = video_frames[0]
        backend.activate()
        try:
            batch, _ = pre([buf])
            out = backend.infer(batch)
        finally:
            backend.deactivate()
        release()
        assert (pre.zero_copy == 1) == (device.integrated and device.can_map_host_memory)
        assert set(out) == {o.name for o in backend.outputs}
        pre.close()
    finally:
        backend.close()


def _iou(a: List[float], b: List[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _run_daemon(config: Path, quiet_s: float = 20.0, limit_s: float = 240.0) -> List[Dict[str, Any]]:
    """``edge-detector run --sink stdout`` until the file has played (no line for ``quiet_s``)."""
    import signal
    import subprocess
    import sys
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config), "--sink", "stdout"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: List[bytes] = []
    errors: List[bytes] = []
    readers = [threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True),  # type: ignore[union-attr]
               threading.Thread(target=lambda: errors.extend(iter(proc.stderr.readline, b"")), daemon=True)]  # type: ignore[union-attr]
    for t in readers:
        t.start()
    start = last_change = time.monotonic()
    seen = 0
    while proc.poll() is None and time.monotonic() - start < limit_s:
        if len(lines) != seen:
            seen, last_change = len(lines), time.monotonic()
        elif seen and time.monotonic() - last_change > quiet_s:
            break
        time.sleep(0.5)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    for t in readers:
        t.join(5)
    out = [json.loads(x) for x in lines if x.strip().startswith(b"{")]
    assert out, b"".join(errors[-40:]).decode(errors="replace")
    return out


def test_daemon_fp16_finds_the_same_persons_as_onnxruntime(jetson, assets, state_dir, tmp_path) -> None:
    def run(name: str, backend: Dict[str, Any]) -> Dict[int, List[Dict[str, Any]]]:
        cfg = {
            "device": "jetson-test", "state_dir": str(state_dir), "sinks": ["stdout"],
            "cameras": [{"name": "street", "source": {"kind": "file", "path": str(assets.video), "loop": False,
                                                      "realtime": True}}],
            "model": {"path": str(assets.model), "input": NANODET}, "backend": backend,
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        lines = _run_daemon(path)
        return {x["frame"]: [d for d in x["detections"] if d["label"] == "person"] for x in lines}

    trt = run("trt", {"kind": "tensorrt", "precision": "fp16"})  # engine from the cache of the first test
    ort = run("ort", {"kind": "onnxruntime", "precision": "fp32"})
    common = sorted(set(ort) & set(trt))
    assert len(common) >= 20, f"only {len(common)} frames processed by both"
    same_count = sum(len(ort[f]) == len(trt[f]) for f in common)
    assert same_count >= 0.9 * len(common), f"{same_count} of {len(common)} frames have as many persons"
    for f in common:
        for p in (p for p in ort[f] if p["score"] >= 0.5):  # clear of the threshold: must be found again
            best = max((_iou(p["box"], q["box"]) for q in trt[f]), default=0.0)
            assert best >= 0.9, (f, p, trt[f])
    print(f"daemon: {len(trt)} frames on TensorRT fp16, {len(ort)} on ONNX Runtime, {len(common)} compared")

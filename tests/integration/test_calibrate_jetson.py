"""Hardware suite (marker ``jetson``): a real edge-calibrate sweep with TensorRT on the device.

Run on a Jetson (see docs/calibration.md):
    EDGE_ASSETS=... python -m pytest -m jetson tests/integration/test_calibrate_jetson.py -v -rs
On an x86 host with TensorRT and a GPU, EDGE_JETSON=1 runs it too. Elsewhere it skips, saying why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.jetson


def _skip_reason() -> str:
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        return f"needs a Jetson with TensorRT and pycuda ({', '.join(missing)} not importable here)"
    if not Path("/etc/nv_tegra_release").exists() and os.environ.get("EDGE_JETSON") != "1":
        return "needs a Jetson (/etc/nv_tegra_release not found; EDGE_JETSON=1 forces it on other TensorRT hosts)"
    return ""


@pytest.mark.timeout(3600)
def test_real_sweep_on_the_device(tmp_path: Path, assets) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        f"cameras:\n  - name: cam\n    source: {{kind: file, path: {assets.video}}}\n"
        f"model:\n  path: {assets.model}\n  input: {{color: bgr, mean: [103.53, 116.28, 123.675], "
        "std: [57.375, 57.12, 58.395]}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "backend: {kind: tensorrt, precision: best}\nsinks: [stdout]\n")
    out = tmp_path / "calibration"
    base = [sys.executable, "-m", "edge.cli.calibrate"]
    common = ["-c", str(cfg), "--out", str(out), "--count", "100", "--eval-count", "60", "--quiet"]
    cal = subprocess.run([*base, "calibrate", *common], cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert cal.returncode == 0, cal.stdout + cal.stderr
    record = json.loads((out / "calibration.json").read_text())
    int8 = record["calibration_cache"] is not None
    if int8:  # written by TensorRT's own calibrator, with this TensorRT's header
        assert (out / record["calibration_cache"]).read_text().startswith("TRT-")
    sw = subprocess.run([*base, "sweep", *common, "--runs", "200"], cwd=ROOT, capture_output=True, text=True,
                        timeout=3000)
    assert sw.returncode == 0, sw.stdout + sw.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "tensorrt"
    res = {r["candidate"]["name"]: r for r in report["results"]}
    assert {"trt-fp32", "trt-fp16"} <= set(res)
    for name, r in res.items():
        if name.startswith("trt-"):
            assert r["speed"]["runtime"] == "tensorrt" and r["speed"]["median_ms"] > 0
            assert r["size_bytes"] and r["memory_kind"] == "device memory"
    assert res["trt-fp32"]["drop"] < 0.5 and res["trt-fp16"]["drop"] < 1.0  # FP16 weights: near lossless
    if int8:
        assert "trt-int8-cache" in res and "trt-int8-qdq" in res
    assert report["selected"] is not None and report["selected"].startswith("trt-")
    print(Path(out / "report.md").read_text())

"""edge-calibrate end to end on the shared model and video, with ONNX Runtime (no TensorRT here).

One sweep run through the real CLI: it calibrates (frames sampled from the video through
the daemon's preprocessing), writes the Q/DQ model, measures FP32 and INT8 with agreement
accuracy, and, the budget being set tight, moves a mixed-precision candidate into it.
Sizes are small (60 calibration, 40 evaluation frames) to stay within ~3 minutes on 2 busy
cores; docs/calibration.md has the numbers of a full-size run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from edge.calibrate.qdq import check_qdq, qdq_nodes
from edge.config.load import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_sweep_calibrates_measures_selects_and_repairs_with_mixed_precision(tmp_path: Path, assets) -> None:
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        f"cameras:\n  - name: cam\n    source: {{kind: file, path: {assets.video}}}\n"
        f"model:\n  path: {assets.model}\n  input: {{color: bgr, mean: [103.53, 116.28, 123.675], "
        "std: [57.375, 57.12, 58.395]}\n"
        "backend: {kind: onnxruntime, precision: fp32}\nsinks: [stdout]\n")
    out = tmp_path / "calibration"
    cmd = [sys.executable, "-m", "edge.cli.calibrate", "sweep", "-c", str(cfg), "--out", str(out),
           "--count", "60", "--eval-count", "40", "--probe-frames", "6", "--runs", "15", "--warmup", "2",
           "--threads", "2", "--max-map-drop", "0.5", "--apply", "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    record = json.loads((out / "calibration.json").read_text())
    assert any("folded the -inf Pad" in r for r in record["repairs"])  # the trap of the shared model
    assert len(record["frames"]) == 60 and record["seed"] == 0
    qdq = onnx.load(str(out / record["qdq_model"]))
    assert check_qdq(qdq) > 0 and len(qdq_nodes(qdq)) == 34  # every Conv, finite symmetric scales

    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "agreement" and report["eval_frames"] == 40 and report["calib_frames"] == 60
    res = {r["candidate"]["name"]: r for r in report["results"]}
    assert set(res) == {"ort-fp32", "ort-int8-qdq", "ort-mixed-qdq"}
    assert res["ort-fp32"]["map"] == pytest.approx(1.0) and res["ort-fp32"]["drop"] == pytest.approx(0.0)
    assert res["ort-fp32"]["max_output_error"] == 0.0
    int8, mixed = res["ort-int8-qdq"], res["ort-mixed-qdq"]
    assert 0.5 < int8["drop"] < 50 and not int8["within_budget"]  # INT8 misses the tight budget...
    assert mixed["within_budget"] and mixed["drop"] <= 0.5  # ...and mixed precision moves it in
    kept = report["mixed"]["kept_float"]
    assert kept and mixed["candidate"]["kept_float"] == kept
    assert len(qdq_nodes(onnx.load(mixed["candidate"]["model"]))) == 34 - len(kept)
    for r in res.values():
        s = r["speed"]
        assert s["runtime"] == "onnxruntime" and s["median_ms"] > 0 and s["p99_ms"] >= s["median_ms"]
        assert s["throughput_fps"] > 0 and r["size_bytes"] > 0
    assert res["ort-int8-qdq"]["size_bytes"] < res["ort-fp32"]["size_bytes"] / 3  # INT8 weights

    within = [r for r in res.values() if r["within_budget"]]
    fastest = min(within, key=lambda r: r["speed"]["median_ms"])
    assert report["selected"] == fastest["candidate"]["name"]
    assert f"selected: {report['selected']}" in proc.stdout
    md = (out / "report.md").read_text()
    assert "agreement" in md and "| ort-mixed-qdq" in md and "CPU figure" in md
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    applied = load_config(cfg)  # --apply wrote the choice into the config the daemon reads
    assert applied.backend.precision == ("fp32" if report["selected"] == "ort-fp32" else "int8")
    assert (tmp_path / "edge.yaml.bak").exists()

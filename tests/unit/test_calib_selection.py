"""Selection under an accuracy budget, and writing the choice into the config file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.calibrate.selection import Scored, apply_to_config, backend_settings, select
from edge.config.load import load_config
from edge.errors import ConfigError

R = [
    Scored("ort-fp32", 0.0, 30.0, "onnxruntime"),
    Scored("ort-int8-qdq", 2.8, 60.0, "onnxruntime"),
    Scored("trt-fp16", 0.1, 4.0, "tensorrt"),
    Scored("trt-int8-cache", 3.1, 2.1, "tensorrt"),
    Scored("trt-int8-qdq", 0.9, 2.4, "tensorrt"),
    Scored("trt-mixed-qdq", 0.4, 2.6, "tensorrt"),
]


def test_fastest_within_the_budget_on_the_target() -> None:
    assert select(R, 1.0, "tensorrt")[0].name == "trt-int8-qdq"
    assert select(R, 0.5, "tensorrt")[0].name == "trt-mixed-qdq"
    assert select(R, 0.05, "tensorrt")[0] is None
    assert select(R, 5.0, "tensorrt")[0].name == "trt-int8-cache"
    pick, why = select(R, 1.0, "onnxruntime")
    assert pick.name == "ort-fp32" and "fastest on onnxruntime" in why


def test_never_picks_a_speed_measured_elsewhere() -> None:
    cpu_only = [r for r in R if r.runtime == "onnxruntime"]
    pick, why = select(cpu_only, 10.0, "tensorrt")
    assert pick is None and "no candidate was timed on the target (tensorrt)" in why


def test_unmeasured_accuracy_never_qualifies_and_ties_prefer_accuracy() -> None:
    rows = [Scored("a", None, 1.0, "tensorrt"), Scored("b", 0.6, 2.0, "tensorrt"), Scored("c", 0.2, 2.0, "tensorrt")]
    assert select(rows, 1.0, "tensorrt")[0].name == "c"
    pick, why = select([Scored("a", None, 1.0, "tensorrt"), Scored("b", 3.0, 2.0, "tensorrt")], 1.0, "tensorrt")
    assert pick is None and "b, loses 3.00" in why


CONFIG = """\
# comment that PyYAML drops (the backup keeps it)
cameras:
  - name: cam
    source: {kind: file, path: VIDEO}
model:
  path: MODEL
backend:
  kind: auto
  precision: best
sinks: [stdout]
"""


def _config(tmp_path: Path, assets) -> Path:
    p = tmp_path / "edge.yaml"
    p.write_text(CONFIG.replace("VIDEO", str(assets.video)).replace("MODEL", str(assets.model)))
    return p


def test_apply_writes_a_config_the_daemon_loads(tmp_path: Path, assets) -> None:
    cfg = _config(tmp_path, assets)
    qdq = tmp_path / "calibration" / "m.int8.qdq.onnx"
    qdq.parent.mkdir()
    qdq.write_bytes(b"x")
    backup = apply_to_config(cfg, backend_settings("onnxruntime", "int8", qdq_model=qdq))
    assert backup.read_text().startswith("# comment")
    loaded = load_config(cfg)
    assert loaded.backend.precision == "int8" and loaded.backend.kind == "onnxruntime"
    assert loaded.backend.tensorrt.qdq_model == qdq.resolve()
    assert yaml.safe_load(cfg.read_text())["backend"]["tensorrt"]["qdq_model"] == "calibration/m.int8.qdq.onnx"
    apply_to_config(cfg, backend_settings("tensorrt", "fp16"))
    loaded = load_config(cfg)
    assert loaded.backend.precision == "fp16" and loaded.backend.tensorrt.layer_precisions is None


def test_apply_mixed_precision_layers(tmp_path: Path, assets) -> None:
    cfg = _config(tmp_path, assets)
    cache = tmp_path / "calibration.cache"
    cache.write_text("TRT-8502-EntropyCalibration2\n")
    apply_to_config(cfg, backend_settings("tensorrt", "mixed", calibration_cache=cache,
                                          layer_precisions={"Conv__176": "fp16"}))
    loaded = load_config(cfg)
    assert loaded.backend.precision == "int8"
    assert loaded.backend.tensorrt.layer_precisions == {"Conv__176": "fp16"}


def test_apply_refuses_to_write_a_config_the_daemon_rejects(tmp_path: Path, assets) -> None:
    cfg = _config(tmp_path, assets)
    before = cfg.read_text()
    with pytest.raises(ConfigError):
        apply_to_config(cfg, {"precision": "int4"})
    assert cfg.read_text() == before and not (tmp_path / "edge.yaml.bak").exists()

"""build_engine against the TensorRT contract fakes of each band (tests/fakes: not TensorRT)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from fakes.harness import FakeEnv, fake_env
from fakes.models import broken_model, qdq_model, tiny_detector
from fakes.tensorrt_fake import plan_json

from edge.errors import HardwareError, ModelError
from edge.infer.tensorrt import builder
from edge.infer.tensorrt.builder import build_engine, hardware_of, resolve_precision

BANDS = ["8.0", "8.2", "8.5", "8.6", "10", "11"]


def _build(env: FakeEnv, model: Path, precision: str, **kw: object) -> dict:
    plan = build_engine(model, precision, compat=env.compat, device=env.device, **kw)  # type: ignore[arg-type]
    return plan_json(plan)


def _order(calls: List[tuple], first: str, then: str) -> bool:
    names = [c[0] for c in calls]
    return first in names and then in names and names.index(first) < names.index(then)


@pytest.mark.parametrize("band", ["8.0", "8.2", "8.5", "8.6", "10"])
def test_fp16_build_of_the_shared_model(band: str, assets) -> None:
    env = fake_env(band)
    plan = _build(env, assets.model, "fp16")
    assert "FP16" in plan["flags"] and "INT8" not in plan["flags"]
    assert plan["workspace"] >= 64 << 20
    assert [t["name"] for t in plan["io"] if t["input"]] == ["input_1:0"]
    assert _order(env.calls, "init_libnvinfer_plugins", "OnnxParser")
    assert ("build_engine",) not in env.calls and ("deprecated", "EXPLICIT_BATCH") not in env.calls
    env.close()


def test_band_11_builds_strongly_typed_and_refuses_precision_flags(tmp_path: Path) -> None:
    env = fake_env("11")
    model = tiny_detector(tmp_path / "tiny.onnx")
    assert _build(env, model, "fp32")["flags"] == []
    for precision in ("fp16", "int8"):
        with pytest.raises(HardwareError) as err:
            _build(env, model, precision, calibration_cache=tmp_path / "none.cache")
        assert "TensorRT 11" in str(err.value) and ("Q/DQ" in str(err.value) or "ONNX" in str(err.value))
    plan = _build(env, qdq_model(tmp_path / "q.onnx"), "int8")
    assert plan["qdq"] and plan["flags"] == []  # explicit quantization needs no flags in 11
    env.close()


def test_int8_on_a_nano_is_a_clear_error(tmp_path: Path) -> None:
    env = fake_env("8.2", "nano")
    with pytest.raises(HardwareError) as err:
        _build(env, qdq_model(tmp_path / "q.onnx"), "int8")
    assert "Tegra X1 (sm_53)" in err.value.message and "Nano" in err.value.message
    assert "fp16" in (err.value.hint or "")
    assert ("build_serialized_network",) not in env.calls
    env.close()


def test_int8_never_calibrates_without_data(tmp_path: Path) -> None:
    env = fake_env("8.5", "xavier")
    with pytest.raises(HardwareError, match="calibration"):
        _build(env, tiny_detector(tmp_path / "t.onnx"), "int8")
    env.close()


def test_int8_from_a_calibration_cache(tmp_path: Path) -> None:
    env = fake_env("8.5", "xavier")
    model = tiny_detector(tmp_path / "t.onnx")
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n")
    plan = _build(env, model, "int8", calibration_cache=cache)
    assert plan["calibrated"] and {"INT8", "FP16"} <= set(plan["flags"])
    assert ("calibration from cache",) in env.calls
    cache.write_bytes(b"TRT-8201-EntropyCalibration2\nimages: 3c010a14\n")  # made by TensorRT 8.2.1
    with pytest.raises(ModelError, match="another TensorRT"):
        _build(env, model, "int8", calibration_cache=cache)
    env.close()


def test_int8_with_a_calibrator_object(tmp_path: Path) -> None:
    env = fake_env("10", "orin")
    base = env.compat.calibrator_base("minmax")
    written = []

    class Calib(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.left = 3

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            self.left -= 1
            return [1234] if self.left >= 0 else None

        def read_calibration_cache(self) -> None:
            return None

        def write_calibration_cache(self, cache: memoryview) -> None:
            written.append(bytes(cache))

    plan = _build(env, tiny_detector(tmp_path / "t.onnx"), "int8", calibrator=Calib())
    assert plan["calibrated"] and written and written[0].startswith(b"TRT-100300-MinMaxCalibration")
    env.close()


def test_dla_rules(tmp_path: Path) -> None:
    model = tiny_detector(tmp_path / "t.onnx")
    env = fake_env("10", "orin-nano")
    with pytest.raises(HardwareError, match="has no DLA") as err:
        _build(env, model, "fp16", dla_core=0)
    assert "Orin Nano" in (err.value.hint or "")
    env = fake_env("8.5", "xavier")
    plan = _build(env, model, "fp16", dla_core=1)
    assert plan["dla"] == 1 and "GPU_FALLBACK" in plan["flags"]
    with pytest.raises(HardwareError, match="FP16 and INT8 only"):
        _build(env, model, "fp32", dla_core=0)
    with pytest.raises(HardwareError, match="has 2 DLA cores"):
        _build(env, model, "fp16", dla_core=2)


@pytest.mark.parametrize(("band", "machine", "source", "expected"), [
    ("8.5", "xavier", "cache", "int8"), ("8.5", "xavier", None, "fp16"), ("8.2", "nano", "qdq", "fp16"),
    ("11", "h200", None, "fp32"), ("11", "h200", "qdq", "int8"), ("11", "h200", "cache", "fp32"),
])
def test_best_policy(band: str, machine: str, source: Optional[str], expected: str) -> None:
    env = fake_env(band, machine)
    hw = hardware_of(env.compat, env.device)
    assert resolve_precision("best", hw, env.compat, int8_source=source) == expected
    env.close()


@pytest.mark.parametrize("band", ["8.2", "10"])
def test_every_parser_error_names_its_node(band: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = fake_env(band)
    with pytest.raises(ModelError) as err:
        _build(env, broken_model(tmp_path / "b.onnx"), "fp16")
    text = str(err.value)
    assert "node 1" in text and "NotARealOp" in text
    if band == "10":
        assert "'mystery_1' (NotARealOp)" in text
    assert "opset <= 13" in (err.value.hint or "") if band == "8.2" else "opset <= 20" in (err.value.hint or "")
    assert any("mystery" in r.getMessage() or "NotARealOp" in r.getMessage() for r in caplog.records)
    env.close()


def test_opset_above_the_parser_ceiling(tmp_path: Path) -> None:
    env = fake_env("8.2")
    with pytest.raises(ModelError, match="opset 17"):
        _build(env, tiny_detector(tmp_path / "t.onnx", opset=17), "fp16")
    env.close()


def test_dynamic_batch_gets_a_profile_and_fixed_batch_must_match(tmp_path: Path) -> None:
    env = fake_env("8.6")
    plan = _build(env, tiny_detector(tmp_path / "dyn.onnx", batch="N"), "fp16", batch=4)
    assert plan["profile"]["images"] == [[1, 3, 32, 32], [4, 3, 32, 32], [4, 3, 32, 32]]
    with pytest.raises(ModelError, match="fixed batch of 1"):
        _build(env, tiny_detector(tmp_path / "fixed.onnx"), "fp16", batch=2)
    env.close()


def test_layer_precisions(tmp_path: Path) -> None:
    model = tiny_detector(tmp_path / "t.onnx")
    for band, flag in (("8.0", "STRICT_TYPES"), ("8.5", "OBEY_PRECISION_CONSTRAINTS")):
        env = fake_env(band)
        plan = _build(env, model, "fp16", layer_precisions={"sigmoid": "fp32"})
        assert plan["layer_precisions"] == {"sigmoid": "FLOAT"} and flag in plan["flags"]
        with pytest.raises(ModelError, match="nope"):
            _build(env, model, "fp16", layer_precisions={"nope": "fp32"})
    with pytest.raises(HardwareError, match="strongly typed"):
        _build(fake_env("11"), model, "fp32", layer_precisions={"sigmoid": "fp32"})


def test_timing_cache_is_kept_and_merged(tmp_path: Path) -> None:
    env = fake_env("8.6")
    cache = tmp_path / "timing.cache"
    _build(env, tiny_detector(tmp_path / "a.onnx"), "fp16", timing_cache_path=cache)
    first = cache.read_bytes()
    assert b"tactics:a.onnx" in first
    # another process added its entries meanwhile: both survive the next save
    cache.write_bytes(first + b"\ntactics:other-process")
    _build(env, tiny_detector(tmp_path / "b.onnx"), "fp32", timing_cache_path=cache)
    text = cache.read_bytes()
    assert b"tactics:a.onnx" in text and b"tactics:b.onnx" in text and b"other-process" in text
    env.close()


def test_progress_ticks_while_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fake_env("10")
    slow = env.trt.Builder  # type: ignore[attr-defined]
    seen: List[Tuple[str, Optional[float]]] = []

    def slow_builder(logger: object) -> object:
        b = slow(logger)
        real = b.build_serialized_network

        def build(network: object, config: object) -> object:
            import time

            time.sleep(0.6)
            return real(network, config)

        object.__setattr__(b, "build_serialized_network", build)
        return b

    monkeypatch.setattr(env.trt, "Builder", slow_builder)
    monkeypatch.setattr(builder, "PROGRESS_INTERVAL_S", 0.02)
    _build(env, tiny_detector(tmp_path / "t.onnx"), "fp16", progress=lambda m, f: seen.append((m, f)))
    messages = [m for m, _ in seen]
    assert messages[0].startswith("parsing t.onnx")
    assert any("elapsed" in m for m in messages)  # the ticker kept systemd informed
    assert seen[-1] == ("engine built", 1.0)
    env.close()


def test_workspace_policy() -> None:
    mib = 1 << 20
    assert builder.workspace_bytes(2048 * mib, integrated=True) == 256 * mib  # a Nano with 2 GiB free
    assert builder.workspace_bytes(100 * mib, integrated=True) == 64 * mib
    assert builder.workspace_bytes(100_000 * mib, integrated=False) == 4096 * mib
    assert builder.workspace_bytes(100_000 * mib, integrated=False, cap_mb=512) == 512 * mib

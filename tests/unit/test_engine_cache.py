"""The engine cache (real files, real flock, real processes) and the open/rebuild flow on the
TensorRT contract fakes (tests/fakes: not TensorRT)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, List

import pytest
from fakes.harness import fake_env
from fakes.models import tiny_detector

from edge.config.model import BackendConfig, ModelConfig, TensorRtConfig
from edge.errors import HardwareError
from edge.infer.tensorrt.backend import open_backend
from edge.infer.tensorrt.cache import EngineCache, engine_key

ROOT = Path(__file__).resolve().parents[2]


def _key(model: Path, **kw: Any) -> Any:
    args = dict(batch=1, shapes="batch=1;hw=model", tensorrt="8.6.1", gpu="Orin", compute_capability=(8, 7))
    args.update(kw)
    precision = args.pop("precision", "fp16")
    return engine_key(model, precision, **args)  # type: ignore[arg-type]


def test_key_covers_everything_an_engine_depends_on(tmp_path: Path) -> None:
    model = tiny_detector(tmp_path / "m.onnx")
    calib = tmp_path / "c.cache"
    calib.write_bytes(b"TRT-8601-EntropyCalibration2\n")
    base = _key(model)
    variants = [_key(model, precision="int8", calibration_cache=calib), _key(model, batch=2),
                _key(model, shapes="batch=1;hw=640x640"), _key(model, dla_core=0), _key(model, tensorrt="8.6.2"),
                _key(model, gpu="Xavier"), _key(model, compute_capability=(7, 2)),
                _key(model, layer_precisions={"conv": "fp32"})]
    digests = {base.digest} | {v.digest for v in variants}
    assert len(digests) == len(variants) + 1
    calib.write_bytes(b"TRT-8601-EntropyCalibration2\nx: 1\n")  # new calibration → new engine
    assert _key(model, precision="int8", calibration_cache=calib).digest != variants[0].digest
    model.write_bytes(model.read_bytes() + b"\0")  # changed model file → new engine
    assert _key(model).digest != base.digest


def test_build_once_then_load(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    key = _key(tiny_detector(tmp_path / "m.onnx"))
    builds: List[int] = []
    first = cache.get_or_build(key, lambda: builds.append(1) or b"ENGINE-1", settings={"workspace_mb": 64})
    again = cache.get_or_build(key, lambda: builds.append(1) or b"ENGINE-2")
    assert first.built and not again.built and again.data == b"ENGINE-1" and builds == [1]
    assert '"workspace_mb": 64' in EngineCache.sidecar(first.path).read_text()


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda p: p.write_bytes(p.read_bytes()[:5]), "truncated"),
    (lambda p: p.write_bytes(b"X" + p.read_bytes()[1:]), "corrupt"),
    (lambda p: EngineCache.sidecar(p).unlink(), "no sidecar"),
    (lambda p: p.unlink(), "is missing"),
    (lambda p: (p.unlink(), EngineCache.sidecar(p).unlink()), "no engine built yet"),
])
def test_damaged_engines_are_rebuilt_with_one_line_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any, reason: str
) -> None:
    cache = EngineCache(tmp_path)
    key = _key(tiny_detector(tmp_path / "m.onnx"))
    path = cache.get_or_build(key, lambda: b"GOOD ENGINE").path
    damage(path)
    caplog.set_level(logging.INFO)
    caplog.clear()
    again = cache.get_or_build(key, lambda: b"REBUILT ENGINE")
    assert again.built and reason in again.reason and again.data == b"REBUILT ENGINE"
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1 and reason in lines[0].getMessage()


def test_foreign_engine_reason_names_the_difference(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    model = tiny_detector(tmp_path / "m.onnx")
    cache.get_or_build(_key(model, tensorrt="8.5.2"), lambda: b"OLD")
    upgraded = cache.get_or_build(_key(model, tensorrt="8.6.1"), lambda: b"NEW")
    assert upgraded.built and "TensorRT 8.5.2 (now 8.6.1)" in upgraded.reason
    other = cache.get_or_build(_key(model, tensorrt="8.6.1", precision="int8"), lambda: b"INT8")
    assert "precision fp16 (now int8)" in other.reason


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    key = _key(tiny_detector(tmp_path / "m.onnx"))

    def crash() -> bytes:
        raise HardwareError("out of memory", "free some")

    with pytest.raises(HardwareError):
        cache.get_or_build(key, crash)
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == [key.filename + ".lock"]


def test_two_processes_never_build_the_same_engine(tmp_path: Path) -> None:
    model = tiny_detector(tmp_path / "m.onnx")
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from edge.infer.tensorrt.cache import EngineCache, engine_key
        key = engine_key(Path({str(model)!r}), "fp16", batch=1, shapes="s", tensorrt="10.3.0", gpu="g",
                         compute_capability=(8, 7))
        def build():
            with open({str(tmp_path / 'builds.txt')!r}, "a") as f:
                f.write("build\\n")
            time.sleep(1.0)
            return b"ENGINE" * 1000
        got = EngineCache(Path({str(tmp_path / 'engines')!r})).get_or_build(key, build)
        print("built" if got.built else "loaded", len(got.data))
    """))
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs == ["built 6000", "loaded 6000"]
    assert (tmp_path / "builds.txt").read_text() == "build\n"


def _configs(model: Path, tmp_path: Path, **trt: Any) -> Any:
    return ModelConfig(path=model), BackendConfig(kind="tensorrt", precision=trt.pop("precision", "fp16"),
                                                  tensorrt=TensorRtConfig(**trt))


def test_open_builds_then_loads_then_rebuilds_on_upgrade(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model_cfg, backend_cfg = _configs(tiny_detector(tmp_path / "m.onnx"), tmp_path)
    caplog.set_level(logging.INFO)
    env = fake_env("8.5", "xavier")
    progress: List[str] = []
    backend = open_backend(model_cfg, backend_cfg, tmp_path / "state", lambda m, f: progress.append(m),
                           compat=env.compat, device=env.device)
    assert backend.info.name == "tensorrt" and backend.info.precision == "fp16"
    assert any("building" in m for m in progress) and any("loading engine" in m for m in progress)
    backend.close()
    engines = tmp_path / "state" / "engines"
    assert len(list(engines.glob("*.engine"))) == 1 and list(engines.glob("timing-trt8.5.2-*.cache"))

    calls_before = len(env.calls)
    backend = open_backend(model_cfg, backend_cfg, tmp_path / "state", compat=env.compat, device=env.device)
    assert ("build_serialized_network",) not in env.calls[calls_before:]  # loaded, not built
    backend.close()

    caplog.clear()
    upgraded = fake_env("8.6", "xavier")  # JetPack upgrade: another TensorRT
    backend = open_backend(model_cfg, backend_cfg, tmp_path / "state", compat=upgraded.compat,
                           device=upgraded.device)
    why = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(why) == 1 and "TensorRT 8.5.2 (now 8.6.1)" in why[0]
    backend.close()


def test_engine_refused_by_tensorrt_is_rebuilt_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model_cfg, backend_cfg = _configs(tiny_detector(tmp_path / "m.onnx"), tmp_path)
    env = fake_env("10", "orin")
    open_backend(model_cfg, backend_cfg, tmp_path, compat=env.compat, device=env.device).close()
    # Same TensorRT version string, but the build differs (e.g. a patched libnvinfer): TensorRT refuses it.
    env.trt.hw.gpu = "Orin (other board)"
    env.device.name = "Orin"  # the key still matches
    caplog.set_level(logging.INFO)
    backend = open_backend(model_cfg, backend_cfg, tmp_path, compat=env.compat, device=env.device)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("refused the cached engine" in m for m in messages)
    backend.close()


def test_int8_and_dla_are_keyed_and_checked(tmp_path: Path) -> None:
    model = tiny_detector(tmp_path / "m.onnx")
    calib = tmp_path / "calib.cache"
    calib.write_bytes(b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n")
    model_cfg, backend_cfg = _configs(model, tmp_path, precision="int8", calibration_cache=calib, dla_core=0)
    env = fake_env("8.5", "xavier")
    backend = open_backend(model_cfg, backend_cfg, tmp_path, compat=env.compat, device=env.device)
    assert backend.info.precision == "int8" and "DLA 0" in backend.info.detail
    backend.close()
    nano = fake_env("8.2", "nano")
    with pytest.raises(HardwareError, match="Nano"):
        open_backend(model_cfg, replace_precision(backend_cfg, "int8"), tmp_path, compat=nano.compat,
                     device=nano.device)


def replace_precision(cfg: BackendConfig, precision: str) -> BackendConfig:
    return cfg.model_copy(update={"precision": precision})


"""edge-calibrate's TensorRT side against the contract fakes of each band (tests/fakes: NOT TensorRT).

Checked here: the implicit calibrator interface (get_batch_size / get_batch /
read_calibration_cache / write_calibration_cache) as the fake builder drives it, the cache it
writes and reuses, layer precision constraints per band for mixed precision (STRICT_TYPES on
8.0, OBEY_PRECISION_CONSTRAINTS on 8.2-10.x, refused on 11), the candidate list per device,
and a small sweep over TensorRT candidates through the daemon's own engine cache and runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import pytest
from fakes.harness import fake_env
from fakes.models import tiny_detector
from fakes.tensorrt_fake import plan_json

from edge.calibrate import trt as trt_side
from edge.calibrate.calibrator import make_calibrator
from edge.calibrate.sweep import Candidate, Sweep, SweepOptions
from edge.config.load import parse_config
from edge.config.model import Config
from edge.errors import HardwareError
from edge.infer.tensorrt.builder import build_engine


def _batches(n: int) -> List[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("band", ["8.0", "8.2", "8.5", "8.6", "10"])
@pytest.mark.parametrize("algorithm", ["entropy2", "minmax"])
def test_implicit_calibrator_feeds_batches_and_writes_then_reuses_the_cache(band: str, algorithm: str,
                                                                           tmp_path: Path) -> None:
    env = fake_env(band)
    model = tiny_detector(tmp_path / "tiny.onnx")
    cache = tmp_path / "calibration.cache"
    calib = make_calibrator(env.compat, env.device, _batches(5), 1, cache, algorithm)
    assert calib.get_batch_size() == 1
    plan = plan_json(build_engine(model, "int8", calibrator=calib, compat=env.compat, device=env.device))
    calib.close()
    assert plan["calibrated"] and "INT8" in plan["flags"]
    assert calib.batches_fed == 5 and ("calibrated", 5, 1) in env.calls
    assert cache.read_text().splitlines()[0] == env.compat.calibration_header(algorithm)
    again = make_calibrator(env.compat, env.device, _batches(5), 1, cache, algorithm)
    build_engine(model, "int8", calibrator=again, compat=env.compat, device=env.device)
    again.close()
    assert again.batches_fed == 0 and ("calibration from cache",) in env.calls
    assert not env.cuda.state.memory  # staging and device buffers freed by close()
    env.close()


def test_a_cache_of_another_version_is_recalibrated(tmp_path: Path) -> None:
    env = fake_env("8.6")
    cache = tmp_path / "calibration.cache"
    cache.write_text("TRT-8502-EntropyCalibration2\nimages: 3c010204\n")  # written by 8.5.2
    calib = make_calibrator(env.compat, env.device, _batches(3), 1, cache)
    assert calib.read_calibration_cache() is None  # stale: TensorRT must calibrate again
    build_engine(tiny_detector(tmp_path / "t.onnx"), "int8", calibrator=calib, compat=env.compat, device=env.device)
    calib.close()
    assert calib.batches_fed == 3 and cache.read_text().startswith("TRT-8601-")
    env.close()


def test_no_implicit_calibration_on_tensorrt_11(tmp_path: Path) -> None:
    env = fake_env("11")
    with pytest.raises(HardwareError, match="removed in 11"):
        make_calibrator(env.compat, env.device, _batches(1), 1, tmp_path / "c.cache")
    env.close()


def _config(tmp_path: Path, model: Path, video: Path, **backend: str) -> Config:
    extra = "".join(f"    {k}: {v}\n" for k, v in backend.items())
    text = (f"cameras:\n  - name: cam\n    source: {{kind: file, path: {video}}}\n"
            f"model:\n  path: {model}\n  input: {{color: bgr, mean: [103.53, 116.28, 123.675], "
            f"std: [57.375, 57.12, 58.395]}}\n"
            f"state_dir: {tmp_path / 'state'}\nsinks: [stdout]\n"
            f"backend:\n  kind: tensorrt\n  tensorrt:\n    gpu_preprocess: false\n{extra}")
    return parse_config(text, "test.yaml", tmp_path)


OBEY = "OBEY_PRECISION_CONSTRAINTS"


@pytest.mark.parametrize(("band", "flag"), [("8.0", "STRICT_TYPES"), ("8.2", OBEY), ("8.5", OBEY), ("10", OBEY)])
def test_mixed_precision_pins_layers_with_the_band_s_constraint_flag(band: str, flag: str, tmp_path: Path,
                                                                      assets) -> None:
    env = fake_env(band, "xavier")
    model = tiny_detector(tmp_path / "tiny.onnx")
    cfg = _config(tmp_path, model, assets.video)
    cache = tmp_path / "calibration.cache"
    calib = make_calibrator(env.compat, env.device, _batches(2), 1, cache)
    build_engine(model, "int8", calibrator=calib, compat=env.compat, device=env.device)
    calib.close()
    c = Candidate("trt-mixed-cache", "mixed", "tensorrt", model, calibration_cache=cache,
                  layer_precisions=trt_side.layer_precisions(["pool", "sigmoid"]))
    tenv = trt_side.TrtEnv(env.compat, env.device)
    runner, path = trt_side.open_engine(cfg, c, tenv)
    runner.close()
    plan = plan_json(path.read_bytes())  # the engine file the daemon will find under this key
    assert flag in plan["flags"] and "INT8" in plan["flags"]
    assert plan["layer_precisions"] == {"pool": "HALF", "sigmoid": "HALF"}
    assert ("layer precisions ignored",) not in env.calls
    env.close()


def test_layer_precisions_are_refused_on_tensorrt_11(tmp_path: Path, assets) -> None:
    env = fake_env("11")
    model = tiny_detector(tmp_path / "tiny.onnx")
    c = Candidate("trt-fp32", "fp32", "tensorrt", model, layer_precisions={"pool": "fp16"})
    with pytest.raises(HardwareError, match="strongly typed"):
        trt_side.open_engine(_config(tmp_path, model, assets.video), c, trt_side.TrtEnv(env.compat, env.device))
    env.close()


@pytest.mark.parametrize(("band", "machine", "names"), [
    ("8.5", "xavier", ["trt-fp32", "trt-fp16", "trt-int8-cache", "trt-int8-qdq"]),
    ("8.2", "nano", ["trt-fp32", "trt-fp16"]),  # no fast INT8 on a Nano: never offered
    ("11", "h200", ["trt-fp32", "trt-int8-qdq"]),  # strongly typed: no FP16 flag, no calibration cache
])
def test_candidates_follow_the_device_and_band(band: str, machine: str, names: List[str], tmp_path: Path,
                                               assets) -> None:
    env = fake_env(band, machine)
    cfg = _config(tmp_path, assets.model, assets.video)
    got = trt_side.candidates(cfg, trt_side.TrtEnv(env.compat, env.device), tmp_path / "q.onnx", tmp_path / "c")
    assert [c.name for c in got] == names
    env.close()


def test_int8_calibration_on_a_nano_is_a_clear_error(tmp_path: Path, assets) -> None:
    env = fake_env("8.2", "nano")
    cfg = _config(tmp_path, assets.model, assets.video)
    with pytest.raises(HardwareError) as err:
        trt_side.calibrate_cache(cfg, trt_side.TrtEnv(env.compat, env.device), _batches(1), tmp_path / "c.cache")
    assert "Nano" in err.value.message and "fp16" in (err.value.hint or "")
    env.close()


def test_sweep_measures_tensorrt_candidates_through_the_engine_cache(tmp_path: Path, assets, video_frames) -> None:
    env = fake_env("8.5", "xavier")
    cfg = _config(tmp_path, assets.model, assets.video)
    tenv = trt_side.TrtEnv(env.compat, env.device)
    images, calib = video_frames[:3], video_frames[30:32]
    sw = Sweep(cfg, _Set(images), _Set(calib), SweepOptions(runs=3, warmup=1, threads=1))
    try:
        cache = tmp_path / "calibration.cache"
        cache_file, engine = trt_side.calibrate_cache(cfg, tenv, sw.batches, cache)
        assert cache_file.exists() and engine.exists()
        cands = trt_side.candidates(cfg, tenv, None, cache)
        results = [sw.evaluate(c, trt_side.opener(cfg, tenv)) for c in cands]
    finally:
        sw.close()
    by = {r.candidate.name: r for r in results}
    assert set(by) == {"trt-fp32", "trt-fp16", "trt-int8-cache"}
    for r in results:
        assert r.speed is not None and r.speed.runtime == "tensorrt" and "Xavier" in r.speed.device
        assert r.map == pytest.approx(1.0)  # the fake runs the FP32 graph: identical detections
        assert r.size_bytes and r.memory_kind == "device memory"
    # calibrate_cache stored the INT8 engine under the daemon's key: the sweep loaded it, built nothing new
    assert sum(1 for c in env.calls if c[0] == "calibrated") == 1
    env.close()


class _Set(list):
    """A frame list with the FrameSet interface the sweep uses."""

    @property
    def keys(self) -> List[str]:
        return [str(i) for i in range(len(self))]

    def first(self) -> np.ndarray:
        return self[0]


def test_dla_candidates_leave_out_fp32(tmp_path: Path, assets) -> None:
    env = fake_env("8.5", "xavier")
    cfg = _config(tmp_path, assets.model, assets.video, dla_core="0")
    got = trt_side.candidates(cfg, trt_side.TrtEnv(env.compat, env.device), tmp_path / "q.onnx", None)
    assert [c.name for c in got] == ["trt-fp16", "trt-int8-qdq"]  # the DLA runs FP16 and INT8 only
    env.close()

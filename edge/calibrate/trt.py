"""edge-calibrate's TensorRT side, through the daemon's own TensorRT package.

Engines are built and opened with :func:`edge.infer.tensorrt.backend.open_backend` on a
copy of the config with the candidate's precision, INT8 source and layer precisions, so
each lands in the engine cache under exactly the key the daemon will look up. Nothing here
imports ``tensorrt`` or ``pycuda``: :class:`TrtEnv` loads them through
:class:`~edge.infer.tensorrt.compat.TrtCompat` and :class:`~edge.infer.cuda.CudaDevice`
(tests pass the contract fakes of ``tests/fakes``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edge.calibrate import bench
from edge.calibrate.calibrator import make_calibrator
from edge.calibrate.sweep import Candidate, Opened, Opener
from edge.config.model import BackendConfig, Config, ModelConfig
from edge.errors import HardwareError

log = logging.getLogger(__name__)


def available() -> bool:
    from edge.infer.tensorrt import tensorrt_available

    return tensorrt_available()


@dataclass
class TrtEnv:
    """TensorRT (through its adapter) and the GPU."""

    compat: Any  # edge.infer.tensorrt.compat.TrtCompat
    device: Any  # edge.infer.cuda.CudaDevice

    @classmethod
    def load(cls, cfg: Config) -> TrtEnv:
        from edge.infer.cuda import CudaDevice
        from edge.infer.tensorrt.compat import TrtCompat

        if not available():
            raise HardwareError(
                "this command needs TensorRT and pycuda, which are not importable here",
                "run it on the device (JetPack's TensorRT); `edge-calibrate sweep` measures the ONNX Runtime "
                "candidates without them",
            )
        return cls(TrtCompat.load(), CudaDevice(cfg.backend.tensorrt.device))

    def hardware(self) -> Any:
        from edge.infer.tensorrt.policy import hardware_of

        return hardware_of(self.compat, self.device)

    def close(self) -> None:
        self.device.close()


def configured(cfg: Config, c: Candidate) -> Tuple[ModelConfig, BackendConfig]:
    """The model/backend sections that make the daemon build and run candidate ``c``."""
    trt = cfg.backend.tensorrt.model_copy(update={
        "qdq_model": Path(c.model) if c.qdq else None,
        "calibration_cache": c.calibration_cache if not c.qdq else None,
        "layer_precisions": dict(c.layer_precisions) or None,
    })
    precision = "int8" if c.precision in ("int8", "mixed") else c.precision
    backend = cfg.backend.model_copy(update={"kind": "tensorrt", "precision": precision, "tensorrt": trt})
    return cfg.model, backend


def engine_key(cfg: Config, c: Candidate, env: TrtEnv) -> Any:
    """The engine cache key the daemon computes for ``c`` (see edge.infer.tensorrt.backend)."""
    from edge.infer.tensorrt.builder import profile_text
    from edge.infer.tensorrt.cache import engine_key as key_of

    model, backend = configured(cfg, c)
    t = backend.tensorrt
    hw = (int(model.input.height), int(model.input.width)) if model.input.width and model.input.height else None
    source = Path(t.qdq_model) if c.qdq and t.qdq_model else Path(model.path)
    calibration = Path(t.calibration_cache) if not c.qdq and t.calibration_cache and backend.precision == "int8" \
        else None
    return key_of(source, backend.precision, batch=t.batch, shapes=profile_text(t.batch, hw),
                  tensorrt=env.compat.version_text, gpu=env.device.name,
                  compute_capability=env.device.compute_capability, dla_core=t.dla_core,
                  calibration_cache=calibration, layer_precisions=dict(t.layer_precisions or {}))


def engine_dir(cfg: Config) -> Path:
    t = cfg.backend.tensorrt
    return Path(t.engine_dir) if t.engine_dir else Path(cfg.state_dir) / "engines"


def open_engine(cfg: Config, c: Candidate, env: TrtEnv, progress: Any = None) -> Tuple[Any, Path]:
    """Build (or load from the cache) and open the engine of ``c``; returns (runner, engine file)."""
    from edge.infer.tensorrt.backend import open_backend
    from edge.infer.tensorrt.cache import EngineCache

    model, backend = configured(cfg, c)
    runner = open_backend(model, backend, Path(cfg.state_dir), progress, compat=env.compat, device=env.device)
    return runner, EngineCache(engine_dir(cfg)).path_for(engine_key(cfg, c, env))


def opener(cfg: Config, env: TrtEnv) -> Opener:
    def open_candidate(c: Candidate) -> Opened:
        probe = bench.MemoryProbe(env.device)
        runner, path = open_engine(cfg, c, env)
        size = path.stat().st_size if path.exists() else None
        return Opened(runner, size, probe, env.device.describe())

    return open_candidate


def candidates(cfg: Config, env: TrtEnv, qdq_model: Optional[Path], cache: Optional[Path]) -> List[Candidate]:
    """What this GPU and TensorRT can run: FP32, FP16, INT8 from the cache, INT8 Q/DQ."""
    hw = env.hardware()
    model = Path(cfg.model.path)
    out = []
    if cfg.backend.tensorrt.dla_core is None:  # the DLA runs FP16 and INT8 only
        out.append(Candidate("trt-fp32", "fp32", "tensorrt", model))
    if env.compat.has_precision_flags and hw.fast_fp16:
        out.append(Candidate("trt-fp16", "fp16", "tensorrt", model))
    if hw.fast_int8:
        if cache is not None and env.compat.has_calibrators:
            out.append(Candidate("trt-int8-cache", "int8", "tensorrt", model, calibration_cache=cache))
        if qdq_model is not None:
            out.append(Candidate("trt-int8-qdq", "int8", "tensorrt", qdq_model, qdq=True))
    else:
        log.info("%s has no fast INT8: INT8 candidates are skipped", hw.label)
    return out


def calibrate_cache(cfg: Config, env: TrtEnv, batches: Iterable[np.ndarray], cache_path: Path,
                    algorithm: str = "entropy2", tick: Any = None, progress: Any = None) -> Tuple[Path, Path]:
    """Run TensorRT's own calibrator on ``batches``: writes ``cache_path`` and caches the INT8 engine.

    Returns (cache file, engine file). The engine is stored under the key the daemon will
    compute for ``calibration_cache: <cache_path>``, so the daemon does not build it again.
    """
    from edge.infer.tensorrt.builder import build_engine, timing_cache_file
    from edge.infer.tensorrt.cache import EngineCache

    hw = env.hardware()
    if not hw.fast_int8:
        raise HardwareError(f"INT8 needs a GPU with fast INT8; {hw.label} has none (a Jetson Nano is such a GPU)",
                            "deploy FP16 there: `edge-calibrate build --precision fp16`")
    if not env.compat.has_calibrators:
        raise HardwareError(f"TensorRT {env.compat.version_text} has no implicit INT8 calibration (removed in 11)",
                            "use the Q/DQ model edge-calibrate writes (backend.tensorrt.qdq_model)")
    cache_path = Path(cache_path)
    if cache_path.exists():
        cache_path.unlink()  # a stale cache would make TensorRT skip calibration
    t = cfg.backend.tensorrt
    hw_in = (int(cfg.model.input.height), int(cfg.model.input.width)) if cfg.model.input.width and \
        cfg.model.input.height else None
    calib = make_calibrator(env.compat, env.device, batches, t.batch, cache_path, algorithm, tick)
    try:
        plan = build_engine(
            Path(cfg.model.path), "int8", calibrator=calib, batch=t.batch, input_hw=hw_in, dla_core=t.dla_core,
            workspace_mb=t.workspace_mb, progress=progress, compat=env.compat, device=env.device,
            timing_cache_path=timing_cache_file(engine_dir(cfg), env.compat, env.device) if t.timing_cache else None,
        )
    finally:
        calib.close()
    if not cache_path.exists():
        raise HardwareError("TensorRT built the INT8 engine but wrote no calibration cache",
                            "see TensorRT's messages above")
    c = Candidate("trt-int8-cache", "int8", "tensorrt", Path(cfg.model.path), calibration_cache=cache_path)
    key = engine_key(cfg, c, env)
    path = EngineCache(engine_dir(cfg)).store(key, plan, {"precision": "int8", "calibration_cache": str(cache_path),
                                                          "built_by": "edge-calibrate calibrate"})
    return cache_path, path


def layer_precisions(nodes: Sequence[str]) -> Dict[str, str]:
    """TensorRT layer names are the ONNX node names: keep these in FP16."""
    return {n: "fp16" for n in nodes}

"""The daemon's entry point: resolve the precision, load or build the engine, open a runner.

On start a matching cached engine loads in seconds. A missing, corrupt, truncated or
foreign engine (other TensorRT, other GPU, other precision or model) is built again, with
one log line saying why; an engine that TensorRT refuses to deserialize is discarded and
rebuilt once. Builds report progress through ``progress(message, fraction)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from edge.config.model import BackendConfig, ModelConfig
from edge.infer.base import Progress
from edge.infer.cuda import CudaDevice
from edge.infer.tensorrt.builder import (
    build_engine,
    hardware_of,
    profile_text,
    resolve_precision,
    timing_cache_file,
)
from edge.infer.tensorrt.cache import CachedEngine, EngineCache, engine_key
from edge.infer.tensorrt.compat import TrtCompat
from edge.infer.tensorrt.runner import EngineLoadError, TensorRtRunner

log = logging.getLogger(__name__)


def open_backend(
    model: ModelConfig,
    backend: BackendConfig,
    state_dir: Path,
    progress: Optional[Progress] = None,
    *,
    compat: Optional[TrtCompat] = None,
    device: Optional[CudaDevice] = None,
) -> TensorRtRunner:
    """See :func:`edge.infer.tensorrt.open_tensorrt_backend`; tests pass ``compat``/``device`` fakes."""
    compat = compat or TrtCompat.load()
    cfg = backend.tensorrt
    own_device = device is None
    device = device or CudaDevice(cfg.device)
    try:
        return _open(model, backend, Path(state_dir), progress, compat, device, own_device)
    except BaseException:
        if own_device:
            device.close()
        raise


def _open(
    model: ModelConfig, backend: BackendConfig, state_dir: Path, progress: Optional[Progress],
    compat: TrtCompat, device: CudaDevice, own_device: bool,
) -> TensorRtRunner:
    cfg = backend.tensorrt
    int8_source = "qdq" if cfg.qdq_model else "cache" if cfg.calibration_cache else None
    precision = resolve_precision(backend.precision, hardware_of(compat, device), compat,
                                  int8_source=int8_source, dla_core=cfg.dla_core)
    use_qdq = precision == "int8" and cfg.qdq_model is not None
    source = Path(cfg.qdq_model) if use_qdq and cfg.qdq_model else Path(model.path)
    calibration = Path(cfg.calibration_cache) if precision == "int8" and not use_qdq and cfg.calibration_cache else None
    input_hw = _input_hw(model)
    engine_dir = Path(cfg.engine_dir) if cfg.engine_dir else state_dir / "engines"
    layers: Dict[str, str] = dict(cfg.layer_precisions or {})
    key = engine_key(
        source, precision, batch=cfg.batch, shapes=profile_text(cfg.batch, input_hw), tensorrt=compat.version_text,
        gpu=device.name, compute_capability=device.compute_capability, dla_core=cfg.dla_core,
        calibration_cache=calibration, layer_precisions=layers,
    )
    settings: Dict[str, Any] = {
        "onnx": str(source), "precision": precision, "requested_precision": backend.precision,
        "batch": cfg.batch, "input_hw": list(input_hw) if input_hw else None, "dla_core": cfg.dla_core,
        "workspace_mb": cfg.workspace_mb, "calibration_cache": str(calibration) if calibration else None,
        "layer_precisions": layers, "tensorrt": compat.version_text, "gpu": device.describe(),
    }

    def build() -> bytes:
        return build_engine(
            source, precision, calibration_cache=calibration, layer_precisions=layers or None, batch=cfg.batch,
            input_hw=input_hw, dla_core=cfg.dla_core, workspace_mb=cfg.workspace_mb,
            timing_cache_path=timing_cache_file(engine_dir, compat, device) if cfg.timing_cache else None,
            progress=progress, compat=compat, device=device,
        )

    cache = EngineCache(engine_dir)
    cached = cache.get_or_build(key, build, settings=settings, progress=progress)
    try:
        return _runner(compat, device, cached, precision, cfg, own_device, progress)
    except EngineLoadError as exc:
        if cached.built:
            raise
        cache.invalidate(key, exc.message)
        cached = cache.get_or_build(key, build, settings=settings, progress=progress,
                                    rebuild_reason=f"TensorRT refused the cached engine ({exc.message})")
        return _runner(compat, device, cached, precision, cfg, own_device, progress)


def _runner(
    compat: TrtCompat, device: CudaDevice, cached: CachedEngine, precision: str, cfg: Any, own_device: bool,
    progress: Optional[Progress],
) -> TensorRtRunner:
    if progress:
        progress(f"loading engine {cached.path.name}", None)
    return TensorRtRunner(
        compat, device, cached.data, batch=cfg.batch, dla_core=cfg.dla_core, precision=precision,
        detail=f"engine {cached.path.name}" + (f", DLA {cfg.dla_core}" if cfg.dla_core is not None else ""),
        mapped_memory=cfg.mapped_memory, gpu_preprocess=cfg.gpu_preprocess, own_device=own_device,
    )


def _input_hw(model: ModelConfig) -> Optional[Tuple[int, int]]:
    inp = model.input
    if inp.width is not None and inp.height is not None:
        return (int(inp.height), int(inp.width))
    return None

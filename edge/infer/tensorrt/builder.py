"""ONNX → serialized TensorRT engine, for the daemon and for ``edge-calibrate``.

Public API (stable; ``edge-calibrate`` builds against it)::

    build_engine(onnx_path, precision, *, calibrator=None, calibration_cache=None,
                 layer_precisions=None, strict_layer_precisions=True, batch=1, input_hw=None,
                 dla_core=None, workspace_mb=None, timing_cache_path=None, progress=None,
                 compat=None, device=None) -> bytes
    resolve_precision(requested, hardware, compat, *, int8_source=None, dla_core=None) -> str
    check_precision(precision, hardware, compat, *, int8_source=None, dla_core=None) -> None
    hardware_of(compat, device, builder=None) -> Hardware
    workspace_bytes(free_bytes, *, integrated, cap_mb=None) -> int
    profile_text(batch, input_hw) -> str          # the shape part of the engine cache key
    timing_cache_file(directory, compat, device) -> Path
    cache_calibrator(compat, data, batch) -> calibrator that replays a calibration cache

Precision policy ("best", documented in docs/jetson.md): INT8 when the GPU has fast INT8
and an INT8 source is configured (calibration cache/calibrator on 8.x-10.x, Q/DQ model
on any version); else FP16 when the GPU has fast FP16 and TensorRT has the FP16 flag;
else FP32. An explicit precision the hardware cannot run (INT8 on a Nano, FP16/INT8
flags on TensorRT 11, DLA where there is none, FP32 on DLA, INT8 without calibration) is
a HardwareError naming the hardware and the alternatives: never a silent downgrade.

``progress(message, fraction_or_None)`` is called at each phase and every few seconds
while TensorRT builds, so the daemon can forward it to systemd (STATUS=,
EXTEND_TIMEOUT_USEC=). ``calibrator`` is an instance of a subclass of
``compat.calibrator_base(...)`` (the calibrate package makes one through a factory).

The policy functions live in :mod:`.policy` and are re-exported here.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from edge.errors import HardwareError, ModelError
from edge.infer.base import Progress
from edge.infer.cuda import CudaDevice
from edge.infer.tensorrt.cache import atomic_write, file_lock
from edge.infer.tensorrt.compat import TrtCompat
from edge.infer.tensorrt.policy import (
    MIB,
    PRECISIONS,
    Hardware,
    check_precision,
    hardware_of,
    resolve_precision,
    workspace_bytes,
)

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 5.0


def profile_text(batch: int, input_hw: Optional[Tuple[int, int]]) -> str:
    hw = f"{input_hw[0]}x{input_hw[1]}" if input_hw else "model"
    return f"batch={batch};hw={hw}"


def timing_cache_file(directory: Path, compat: TrtCompat, device: CudaDevice) -> Path:
    gpu = "".join(c if c.isalnum() else "_" for c in device.name)
    return Path(directory) / f"timing-trt{compat.version_text}-{gpu}-{device.sm}.cache"


def cache_calibrator(compat: TrtCompat, data: bytes, batch: int) -> Any:
    """A calibrator that only replays an existing calibration cache (no images needed)."""
    base = compat.calibrator_base(compat.check_calibration_cache(data))

    class CacheCalibrator(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            base.__init__(self)  # type: ignore[misc]  # TensorRT requires the explicit base call

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            return None  # never reached with a matching cache

        def read_calibration_cache(self) -> bytes:
            return data

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return CacheCalibrator()


class _Ticker:
    """Calls ``progress`` every ``interval`` seconds while a blocking TensorRT call runs."""

    def __init__(self, progress: Optional[Progress], message: str, interval: Optional[float] = None) -> None:
        self.progress, self.message = progress, message
        self.interval = PROGRESS_INTERVAL_S if interval is None else interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.started = time.monotonic()

    def __enter__(self) -> _Ticker:
        if self.progress is not None:
            self.progress(self.message, None)
            self._thread = threading.Thread(target=self._run, name="trt-build-progress", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        progress = self.progress
        while progress is not None and not self._stop.wait(self.interval):
            elapsed = int(time.monotonic() - self.started)
            progress(f"{self.message} ({elapsed // 60}m{elapsed % 60:02d}s elapsed)", None)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _onnx_int8_source(path: Path) -> bool:
    """True for an explicitly quantized model (its graph holds QuantizeLinear nodes)."""
    with open(path, "rb") as f:
        return b"QuantizeLinear" in f.read()


def build_engine(
    onnx_path: Path,
    precision: str,
    *,
    calibrator: Optional[Any] = None,
    calibration_cache: Optional[Path] = None,
    layer_precisions: Optional[Mapping[str, str]] = None,
    strict_layer_precisions: bool = True,
    batch: int = 1,
    input_hw: Optional[Tuple[int, int]] = None,
    dla_core: Optional[int] = None,
    workspace_mb: Optional[int] = None,
    timing_cache_path: Optional[Path] = None,
    progress: Optional[Progress] = None,
    compat: Optional[TrtCompat] = None,
    device: Optional[CudaDevice] = None,
) -> bytes:
    """Build a serialized engine from ``onnx_path``; see the module docstring for the policy.

    ``input_hw`` (height, width) fixes dynamic spatial input dimensions; a dynamic batch
    dimension gets an optimization profile 1..``batch`` (opt = ``batch``). A Q/DQ model is
    recognised by its QuantizeLinear nodes and needs no calibrator for int8.
    """
    compat = compat or TrtCompat.load()
    own_device = device is None
    device = device or CudaDevice(0)
    try:
        with device.activated():
            return _build(compat, device, Path(onnx_path), precision, calibrator, calibration_cache,
                          layer_precisions, strict_layer_precisions, batch, input_hw, dla_core, workspace_mb,
                          timing_cache_path, progress)
    finally:
        if own_device:
            device.close()


def _build(
    compat: TrtCompat, device: CudaDevice, onnx_path: Path, precision: str, calibrator: Optional[Any],
    calibration_cache: Optional[Path], layer_precisions: Optional[Mapping[str, str]], strict_layers: bool,
    batch: int, input_hw: Optional[Tuple[int, int]], dla_core: Optional[int], workspace_mb: Optional[int],
    timing_cache_path: Optional[Path], progress: Optional[Progress],
) -> bytes:
    trt = compat.trt
    say = progress or (lambda message, fraction: None)
    if not onnx_path.is_file():
        raise ModelError(f"model file not found: {onnx_path}", "check model.path")
    qdq = _onnx_int8_source(onnx_path)
    int8_source = "qdq" if qdq else "calibrator" if calibrator is not None else "cache" if calibration_cache else None
    logger = compat.logger()
    compat.init_plugins(logger)
    builder = trt.Builder(logger)
    hardware = hardware_of(compat, device, builder)
    precision = resolve_precision(precision, hardware, compat, int8_source=int8_source, dla_core=dla_core)

    say(f"parsing {onnx_path.name} with TensorRT {compat.version_text}", 0.0)
    network = builder.create_network(compat.network_flags())
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    errors = compat.parser_errors(parser)
    if not ok or errors:
        for line in errors:
            log.error("TensorRT ONNX parser: %s", line)
        hint = (f"TensorRT {compat.version_text} reads ONNX opset <= {compat.opset_ceiling}; "
                "re-export with that opset and simplify the model (onnxslim) so shapes and Resize scales are constant")
        shown = "; ".join(errors[:3]) + (f" (+{len(errors) - 3} more in the log)" if len(errors) > 3 else "")
        raise ModelError(f"TensorRT cannot parse {onnx_path.name}: {shown or 'unknown parser failure'}", hint)

    config = builder.create_builder_config()
    free, _total = device.mem_get_info()
    workspace = workspace_bytes(free, integrated=device.integrated, cap_mb=workspace_mb)
    compat.set_workspace(config, workspace)
    profile = _profile(builder, network, batch, input_hw)
    if profile is not None:
        config.add_optimization_profile(profile)
    compat.set_precision(config, precision, fp16_fallback=hardware.fast_fp16 and compat.has_precision_flags, qdq=qdq)
    if precision == "int8" and not qdq:
        if calibrator is None and calibration_cache is not None:
            calibrator = cache_calibrator(compat, Path(calibration_cache).read_bytes(), batch)
        compat.set_calibrator(config, calibrator, profile)
    if layer_precisions:
        compat.apply_layer_precisions(network, config, layer_precisions, obey=strict_layers)
    if dla_core is not None:
        compat.use_dla(config, dla_core)
    timing_path = Path(timing_cache_path) if timing_cache_path and compat.has_timing_cache(config) else None
    if timing_path is not None:
        compat.attach_timing_cache(config, _read(timing_path))

    what = f"building {precision.upper()} engine for {hardware.label} ({workspace // MIB} MiB workspace" + (
        f", DLA {dla_core})" if dla_core is not None else ")")
    log.info("%s; this takes minutes (much longer on a Jetson Nano)", what)
    with _Ticker(progress, what) as ticker:
        plan = compat.build_serialized(builder, network, config)
    if plan is None:
        raise HardwareError(
            f"TensorRT could not build the {precision} engine for {onnx_path.name}",
            "see TensorRT's messages above; free memory (stop other GPU processes) or lower "
            "backend.tensorrt.workspace_mb, or try another precision",
        )
    log.info("engine built in %.0f s (%.1f MB)", time.monotonic() - ticker.started, len(plan) / 1e6)
    if timing_path is not None:
        _save_timing_cache(compat, config, timing_path)
    say("engine built", 1.0)
    return plan


def _profile(builder: Any, network: Any, batch: int, input_hw: Optional[Tuple[int, int]]) -> Optional[Any]:
    """An optimization profile when an input has dynamic dimensions, else None."""
    shapes: Dict[str, Tuple[List[int], List[int]]] = {}
    for i in range(int(network.num_inputs)):
        tensor = network.get_input(i)
        dims = [int(d) for d in tensor.shape]
        if len(dims) >= 1 and dims[0] > 0 and dims[0] != batch:
            raise ModelError(f"{tensor.name} has a fixed batch of {dims[0]} but backend.tensorrt.batch is {batch}",
                             f"set backend.tensorrt.batch: {dims[0]}, or export the model with a dynamic batch")
        if all(d > 0 for d in dims):
            continue
        low, high = list(dims), list(dims)
        for axis, d in enumerate(dims):
            if d > 0:
                continue
            if axis == 0:
                low[0], high[0] = 1, batch
            elif len(dims) == 4 and axis in (2, 3) and input_hw is not None:
                low[axis] = high[axis] = input_hw[axis - 2]
            else:
                raise ModelError(f"input {tensor.name} {dims} has a dynamic dimension {axis}",
                                 "set model.input.width/height, or export the model with a fixed input size")
        shapes[tensor.name] = (low, high)
    if not shapes:
        return None
    profile = builder.create_optimization_profile()
    for name, (low, high) in shapes.items():
        profile.set_shape(name, tuple(low), tuple(high), tuple(high))
    return profile


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _save_timing_cache(compat: TrtCompat, config: Any, path: Path) -> None:
    """Merge this build's timing cache with the one on disk and write it back, under a file lock."""
    with file_lock(path.with_name(path.name + ".lock")):
        merged = compat.merged_timing_cache(config, _read(path))
        if merged:
            atomic_write(path, merged)
            log.info("timing cache %s: %d bytes", path.name, len(merged))


__all__ = ["PRECISIONS", "Hardware", "build_engine", "cache_calibrator", "check_precision", "hardware_of",
           "profile_text", "resolve_precision", "timing_cache_file", "workspace_bytes"]

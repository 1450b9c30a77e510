"""What the GPU can run and which precision to build: the documented policy (see builder).

"best" = INT8 when the GPU has fast INT8 and an INT8 source is configured (calibration
cache/calibrator on 8.x-10.x, Q/DQ model on any version); else FP16 when the GPU has fast
FP16 and TensorRT has the FP16 flag; else FP32. Anything the hardware cannot run is a
HardwareError naming the hardware and the alternatives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from edge.errors import HardwareError, ModelError
from edge.infer.cuda import CudaDevice
from edge.infer.tensorrt.compat import TrtCompat

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8", "best")
MIB = 1 << 20


@dataclass(frozen=True)
class Hardware:
    """What the GPU can run. ``dla_cores`` is None until a TensorRT builder has been asked."""

    gpu: str
    compute_capability: Tuple[int, int]
    integrated: bool
    fast_fp16: bool
    fast_int8: bool
    dla_cores: Optional[int] = None

    @property
    def label(self) -> str:
        return f"{self.gpu} (sm_{self.compute_capability[0]}{self.compute_capability[1]})"


def hardware_of(compat: TrtCompat, device: CudaDevice, builder: Optional[Any] = None) -> Hardware:
    """The device's capabilities: from the builder where given (platform flags, DLA), else from sm."""
    cc = device.compute_capability
    if builder is None:
        return Hardware(device.name, cc, device.integrated, compat.fast_fp16(None, cc), compat.fast_int8(None, cc))
    return Hardware(device.name, cc, device.integrated, compat.fast_fp16(builder, cc),
                    compat.fast_int8(builder, cc), compat.dla_cores(builder))


def resolve_precision(
    requested: str,
    hardware: Hardware,
    compat: TrtCompat,
    *,
    int8_source: Optional[str] = None,
    dla_core: Optional[int] = None,
) -> str:
    """Turn "best" into fp32/fp16/int8 by the documented policy, then check it; others are checked as is.

    ``int8_source``: None, "calibrator", "cache" or "qdq".
    """
    if requested not in PRECISIONS:
        raise ModelError(f"unknown precision {requested!r}", f"use one of {', '.join(PRECISIONS)}")
    precision = requested
    if requested == "best":
        int8_ok = hardware.fast_int8 and (int8_source == "qdq" or (int8_source is not None and compat.has_calibrators))
        if int8_ok:
            precision = "int8"
        elif hardware.fast_fp16 and compat.has_precision_flags:
            precision = "fp16"
        else:
            precision = "fp32"
        log.info("precision 'best' on %s, TensorRT %s: %s", hardware.label, compat.version_text, precision)
    check_precision(precision, hardware, compat, int8_source=int8_source, dla_core=dla_core)
    return precision


def check_precision(
    precision: str,
    hardware: Hardware,
    compat: TrtCompat,
    *,
    int8_source: Optional[str] = None,
    dla_core: Optional[int] = None,
) -> None:
    """Raise a HardwareError when ``precision`` (or the DLA core) cannot run here."""
    trt = f"TensorRT {compat.version_text}"
    if precision == "fp16":
        if not compat.has_precision_flags:
            raise HardwareError(f"{trt} has no FP16 builder flag (networks are strongly typed)",
                                "export an FP16 ONNX model and build it with precision fp32 (as typed), "
                                "or use a Q/DQ model for int8")
        if not hardware.fast_fp16:
            raise HardwareError(f"{hardware.label} has no fast FP16", "use precision fp32")
    elif precision == "int8":
        if not hardware.fast_int8:
            raise HardwareError(
                f"INT8 needs a GPU with fast INT8 (DP4A, sm_61 or newer); {hardware.label} has none "
                "(the Jetson Nano is such a GPU)",
                "use precision fp16 (or fp32)" if hardware.fast_fp16 else "use precision fp32",
            )
        if int8_source is None:
            raise HardwareError(
                "INT8 needs calibration data and none is configured (edge-detector never calibrates at random)",
                "set backend.tensorrt.calibration_cache or qdq_model (both made by edge-calibrate), or use fp16",
            )
        if int8_source in ("calibrator", "cache") and not compat.has_calibrators:
            raise HardwareError(f"{trt} removed implicit INT8 calibration (calibration caches)",
                                "give a Q/DQ model (backend.tensorrt.qdq_model, from `edge-calibrate --qdq`)")
    elif precision != "fp32":
        raise ModelError(f"unknown precision {precision!r}", "use fp32, fp16, int8 or best")
    if dla_core is not None:
        if hardware.dla_cores is not None and dla_core >= hardware.dla_cores:
            have = f"has {hardware.dla_cores} DLA cores" if hardware.dla_cores else "has no DLA"
            raise HardwareError(
                f"DLA core {dla_core} was asked for but {hardware.label} {have}",
                "remove backend.tensorrt.dla_core (Xavier and AGX Orin/Orin NX have cores 0 and 1; "
                "Nano, Orin Nano and x86 GPUs have none)",
            )
        if precision == "fp32":
            raise HardwareError("the DLA runs FP16 and INT8 only", "use precision fp16 or int8 with dla_core")


def workspace_bytes(free_bytes: int, *, integrated: bool, cap_mb: Optional[int] = None) -> int:
    """Builder workspace: a share of free device memory (1/8 on shared-memory Jetsons, 1/4 on dGPUs),
    at least 64 MiB, at most ``cap_mb`` (default 1024 MiB integrated, 4096 MiB discrete)."""
    share = free_bytes // (8 if integrated else 4)
    cap = (cap_mb if cap_mb is not None else (1024 if integrated else 4096)) * MIB
    return int(min(cap, max(64 * MIB, share)))

"""The fake ``tensorrt.Builder`` (contract fake, NOT TensorRT): validates what a real build needs."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from fakes.tensorrt_parts import FakeConfig, FakeNetwork, FakeProfile, Strict, band_of


def calibration_code(version: str) -> int:
    major, minor, patch = (int(x) for x in version.split(".")[:3])
    return major * (1000 if major < 10 else 10000) + minor * 100 + patch


class FakeHostMemory(bytes):
    """IHostMemory: supports the buffer protocol, so ``bytes(plan)`` works."""

    @property
    def nbytes(self) -> int:
        return len(self)


class FakeBuilder(Strict):
    def __init__(self, trt: Any, logger: Any) -> None:
        self._trt = trt
        f = trt.features
        self._hidden = set()
        if "platform_fast" not in f:
            self._hidden |= {"platform_has_fast_fp16", "platform_has_fast_int8"}
        if "build_engine" not in f:
            self._hidden.add("build_engine")
        trt.calls.append(("Builder",))

    platform_has_fast_fp16 = property(lambda self: self._trt.hw.fast_fp16)
    platform_has_fast_int8 = property(lambda self: self._trt.hw.fast_int8)
    num_DLA_cores = property(lambda self: self._trt.hw.dla_cores)

    def create_network(self, flags: int = 0) -> FakeNetwork:
        trt = self._trt
        if not isinstance(flags, int) or isinstance(flags, bool):
            raise TypeError("flags must be an int bit mask")
        kinds = trt.NetworkDefinitionCreationFlag
        known = 0
        for member in kinds:
            known |= 1 << int(member)
        if flags & ~known:
            raise ValueError(f"unknown network creation flag bits {flags:#x}")
        explicit = band_of(trt) in ("10", "11")  # always explicit from 10.0
        if hasattr(kinds, "EXPLICIT_BATCH") and flags & (1 << int(kinds.EXPLICIT_BATCH)):
            if band_of(trt) == "10":
                trt.calls.append(("deprecated", "EXPLICIT_BATCH"))
            explicit = True
        trt.calls.append(("create_network", flags))
        return FakeNetwork(trt, explicit)

    def create_builder_config(self) -> FakeConfig:
        return FakeConfig(self._trt)

    def create_optimization_profile(self) -> FakeProfile:
        return FakeProfile()

    def build_engine(self, network: FakeNetwork, config: FakeConfig) -> Any:
        self._trt.calls.append(("build_engine",))
        raise RuntimeError("build_engine is deprecated: use build_serialized_network")

    def _fail(self, why: str) -> None:
        self._trt.calls.append(("build_failed", why))

    def build_serialized_network(self, network: FakeNetwork, config: FakeConfig) -> Optional[FakeHostMemory]:
        trt = self._trt
        trt.cuda.require_context("build_serialized_network")
        trt.calls.append(("build_serialized_network",))
        if not network._inputs:
            return self._fail("network has no inputs (not parsed?)")
        workspace = config._pool.get("WORKSPACE") or (config.max_workspace_size if "max_workspace_size" in
                                                      trt.features else 0)
        if "memory_pool" not in trt.features and not workspace:
            return self._fail("workspace is 0: no tactic fits (set max_workspace_size)")
        profile = config._profiles[0] if config._profiles else None
        for t in network._inputs:
            if any(d < 0 for d in t.shape):
                if profile is None or t.name not in profile._shapes:
                    return self._fail(f"dynamic input {t.name} without an optimization profile")
                low, opt, high = profile._shapes[t.name]
                ok = all(lo <= o <= h and (d < 0 or lo == d == h) for lo, o, h, d in zip(low, opt, high, t.shape))
                if not ok or len(low) != len(t.shape):
                    return self._fail(f"bad profile for {t.name}: {low} {opt} {high}")
        flags = set(config._flags)
        calibrated = False
        if "INT8" in flags and not network._qdq:
            why = self._calibrate(network, config)
            if why:
                return self._fail(why)
            calibrated = True
        layers: Dict[str, Any] = {ly.name: ly._precision for ly in network._layers if ly._precision}
        constrained = flags & {"OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "STRICT_TYPES"}
        if layers and not constrained:
            trt.calls.append(("layer precisions ignored",))
        dla: Optional[int] = None
        if _name(config.default_device_type) == "DLA":
            dla = int(config.DLA_core)
            if not 0 <= dla < trt.hw.dla_cores:
                return self._fail(f"DLA core {dla} does not exist")
            if "GPU_FALLBACK" not in flags:
                return self._fail("layers not supported on DLA and no GPU_FALLBACK")
            if not flags & {"FP16", "INT8"}:
                return self._fail("DLA needs FP16 or INT8")
        if config._timing is not None:
            config._timing._entries.add(f"tactics:{network._onnx.rsplit('/', 1)[-1]}:{','.join(sorted(flags))}")
        io: List[Dict[str, Any]] = [{"name": t.name, "input": True, "shape": list(t.shape), "dtype": _name(t.dtype)}
                                    for t in network._inputs]
        io += [{"name": t.name, "input": False, "shape": list(t.shape), "dtype": _name(t.dtype)}
               for t in network._outputs]
        plan = {
            "version": trt.__version__, "gpu": trt.hw.gpu, "onnx": network._onnx, "io": io, "flags": sorted(flags),
            "workspace": workspace, "dla": dla, "calibrated": calibrated, "qdq": network._qdq,
            "profile": {k: [list(s) for s in v] for k, v in (profile._shapes.items() if profile else [])},
            "layer_precisions": layers, "plugins": network._plugins,
        }
        return FakeHostMemory(b"FAKEPLAN" + json.dumps(plan).encode())

    def _calibrate(self, network: FakeNetwork, config: FakeConfig) -> str:
        trt = self._trt
        calib = config.int8_calibrator
        if calib is None:
            return "INT8 without a calibrator and without Q/DQ nodes: no dynamic ranges"
        if not getattr(calib, "_base_init", False):
            return "calibrator did not call its TensorRT base class __init__"
        batch = calib.get_batch_size()
        cache = calib.read_calibration_cache()
        if cache:
            first = bytes(cache).split(b"\n", 1)[0].decode()
            if first == f"TRT-{calibration_code(trt.__version__)}-{calib.algorithm}":
                trt.calls.append(("calibration from cache",))
                return ""
            trt.calls.append(("calibration cache mismatch, recalibrating", first))
        names = [t.name for t in network._inputs]
        batches = 0
        while calib.get_batch(names):
            batches += 1
        if not batches:
            return "calibration failure: the calibrator gave no batches"
        calib.write_calibration_cache(memoryview(f"TRT-{calibration_code(trt.__version__)}-{calib.algorithm}\n".encode()))
        trt.calls.append(("calibrated", batches, batch))
        return ""


def _name(member: Any) -> str:
    return str(member.name)

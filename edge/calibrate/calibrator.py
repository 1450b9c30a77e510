"""TensorRT implicit INT8 calibration (8.0 - 10.x) and the calibration cache format.

The calibrator class is made inside :func:`make_calibrator`, subclassing the base that
:meth:`TrtCompat.calibrator_base` returns, so this module imports without TensorRT.
It feeds TensorRT the batches of the daemon's own preprocessing, one device buffer
reused for all of them, and writes the cache TensorRT produces.

Cache format (text): a header ``TRT-<code>-<Algorithm>`` (``code`` is major*1000 +
minor*100 + patch on 8.x, major*10000 + minor*100 + patch from 10.0) then one
``tensor: XXXXXXXX`` line per tensor, the big-endian bits of the float32 scale
(``amax / 127``). :func:`cache_from_ranges` writes the same format from edge-calibrate's
own ranges for a named TensorRT version, so a cache can be made where TensorRT is absent.
"""

from __future__ import annotations

import logging
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from edge.errors import EdgeError, ModelError

log = logging.getLogger(__name__)

ALGORITHMS = {"entropy2": "EntropyCalibration2", "minmax": "MinMaxCalibration"}
_HEADER = re.compile(r"TRT-(\d+)-(\w+)")


def version_code(version: str) -> int:
    """``"8.5.2"`` → 8502, ``"10.3.0"`` → 100300 (the number in cache headers)."""
    nums = [int(n) for n in re.findall(r"\d+", version)[:3]]
    if not nums:
        raise EdgeError(f"not a TensorRT version: {version!r}", "give it as MAJOR.MINOR.PATCH, e.g. 10.3.0")
    while len(nums) < 3:
        nums.append(0)
    major, minor, patch = nums
    return major * (1000 if major < 10 else 10000) + minor * 100 + patch


@dataclass
class CalibrationCache:
    """A parsed TensorRT calibration cache."""

    code: int
    algorithm: str  # "entropy2" | "minmax"
    scales: Dict[str, float]

    def to_bytes(self) -> bytes:
        lines = [f"TRT-{self.code}-{ALGORITHMS[self.algorithm]}"]
        for name, scale in self.scales.items():
            if not (math.isfinite(scale) and scale > 0):
                raise ModelError(f"calibration scale of {name!r} is {scale}", "it must be finite and positive")
            lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
        return ("\n".join(lines) + "\n").encode("ascii")

    @classmethod
    def parse(cls, data: bytes, source: str = "calibration cache") -> CalibrationCache:
        text = data.decode("ascii", "replace").splitlines()
        first = text[0].strip() if text else ""
        m = _HEADER.fullmatch(first)
        algos = {v: k for k, v in ALGORITHMS.items()}
        if not m or m.group(2) not in algos:
            raise ModelError(f"{source} is not a TensorRT calibration cache (first line {first[:60]!r})",
                             "make one with edge-calibrate calibrate")
        scales: Dict[str, float] = {}
        for n, line in enumerate(text[1:], 2):
            if not line.strip():
                continue
            name, sep, value = line.rpartition(":")
            try:
                if not sep:
                    raise ValueError(line)
                scales[name.strip()] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
            except (ValueError, struct.error):
                raise ModelError(f"{source}:{n}: not 'tensor: hex scale': {line[:60]!r}",
                                 "the file is damaged") from None
        return cls(int(m.group(1)), algos[m.group(2)], scales)


def cache_from_ranges(ranges: Dict[str, float], version: str, algorithm: str = "entropy2") -> CalibrationCache:
    """A TensorRT cache for ``version`` from symmetric ranges (amax per tensor)."""
    if algorithm not in ALGORITHMS:
        raise EdgeError(f"unknown calibration algorithm {algorithm!r}", f"use {' or '.join(ALGORITHMS)}")
    major = version_code(version) // (10000 if version_code(version) >= 100000 else 1000)
    if major >= 11:
        raise EdgeError(f"TensorRT {version} has no calibration caches (implicit INT8 was removed in 11.0)",
                        "use the Q/DQ model instead")
    scales = {n: float(np.float32(a / 127.0)) for n, a in ranges.items() if math.isfinite(a) and a > 0}
    return CalibrationCache(version_code(version), algorithm, scales)


Tick = Callable[[int], None]


def make_calibrator(
    compat: Any,
    device: Any,
    batches: Iterable[np.ndarray],
    batch_size: int,
    cache_path: Path,
    algorithm: str = "entropy2",
    tick: Optional[Tick] = None,
) -> Any:
    """A TensorRT calibrator over ``batches`` (host NCHW arrays) writing ``cache_path``.

    ``device`` is the :class:`edge.infer.cuda.CudaDevice` the engine is built on. TensorRT
    calls ``get_batch`` from the build, with the device's context current (``build_engine``
    pushes it); call ``close()`` afterwards to free the staging and device buffers.
    """
    from edge.infer.cuda import Resources

    base = compat.calibrator_base(algorithm)
    header = compat.calibration_header(algorithm)
    cuda = device.cuda

    class Calibrator(base):  # type: ignore[valid-type,misc]
        """Feeds preprocessed frames to TensorRT; see :func:`make_calibrator`."""

        def __init__(self) -> None:
            base.__init__(self)  # TensorRT requires the explicit base call
            self._batches: Iterator[np.ndarray] = iter(batches)
            self._res = Resources(cuda)
            self._buffer: Any = None
            self._host: Optional[np.ndarray] = None
            self._stream: Any = None
            self.batches_fed = 0

        def get_batch_size(self) -> int:
            return int(batch_size)

        def get_batch(self, names: List[str], *args: Any) -> Optional[List[int]]:
            batch = next(self._batches, None)
            if batch is None:
                return None
            if self._host is None or self._host.shape != batch.shape or self._host.dtype != batch.dtype:
                if self._buffer is not None:
                    self._res.release(self._buffer)
                self._host = self._res.pinned(batch.shape, batch.dtype)
                self._buffer = self._res.buffer(self._host.nbytes)
                self._stream = self._stream or self._res.stream()
            np.copyto(self._host, batch)
            cuda.memcpy_htod_async(self._buffer.ptr, self._host, self._stream)
            self._stream.synchronize()
            self.batches_fed += 1
            if tick:
                tick(int(batch.shape[0]))
            return [self._buffer.ptr] * len(names)

        def read_calibration_cache(self, *args: Any) -> Optional[bytes]:
            try:
                data = Path(cache_path).read_bytes()
            except FileNotFoundError:
                return None
            first = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
            if first != header:
                log.info("calibration cache %s is for %s, not %s: calibrating again", cache_path, first, header)
                return None
            return data

        def write_calibration_cache(self, cache: Any, *args: Any) -> None:
            from edge.infer.tensorrt.cache import atomic_write

            atomic_write(Path(cache_path), bytes(cache))
            log.info("wrote TensorRT calibration cache %s", cache_path)

        def close(self) -> None:
            """Free the buffers (pushes the device's context itself)."""
            self._buffer = self._host = self._stream = None
            with device.activated():
                self._res.close()

    return Calibrator()

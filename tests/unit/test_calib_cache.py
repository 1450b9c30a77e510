"""TensorRT calibration cache format: version codes, round trip, and agreement with the compat layer."""

from __future__ import annotations

import math
import struct

import pytest
from fakes.harness import fake_env

from edge.calibrate.calibrator import CalibrationCache, cache_from_ranges, version_code
from edge.errors import EdgeError, ModelError


def test_version_codes_follow_the_header_rule() -> None:
    assert version_code("8.0.1.6") == 8001
    assert version_code("8.5.2") == 8502
    assert version_code("10.3.0.26") == 100300
    assert version_code("10.15.1") == 101501
    with pytest.raises(EdgeError):
        version_code("latest")


def test_round_trip_keeps_every_scale_bit_exact() -> None:
    scales = {"input_1:0": 0.0208, "PartitionedCall/onnx_tf_prefix_LeakyRelu_1:0": 3.5e-2, "Conv__145:0": 1e-6}
    cache = CalibrationCache(8502, "entropy2", {k: struct.unpack(">f", struct.pack(">f", v))[0]
                                                  for k, v in scales.items()})
    data = cache.to_bytes()
    lines = data.decode().splitlines()
    assert lines[0] == "TRT-8502-EntropyCalibration2"
    assert lines[1].startswith("input_1:0: ") and len(lines[1].split(": ")[1]) == 8
    back = CalibrationCache.parse(data)
    assert back == cache
    assert CalibrationCache.parse(back.to_bytes()).to_bytes() == data


def test_cache_from_ranges_uses_amax_over_127_and_drops_unusable_ranges() -> None:
    c = cache_from_ranges({"a": 127.0, "b": 2.54, "inf": math.inf, "zero": 0.0}, "10.3.0", "minmax")
    assert c.code == 100300 and c.algorithm == "minmax"
    assert c.scales == {"a": 1.0, "b": pytest.approx(0.02)}
    assert c.to_bytes().startswith(b"TRT-100300-MinMaxCalibration\n")
    with pytest.raises(EdgeError, match=r"11\.0"):
        cache_from_ranges({"a": 1.0}, "11.0.0")


@pytest.mark.parametrize("band", ["8.0", "8.2", "8.5", "8.6", "10"])
def test_headers_match_what_tensorrt_accepts(band: str) -> None:
    """Contract: a cache we write for a version passes the daemon's header check for that version."""
    env = fake_env(band)
    data = cache_from_ranges({"x": 1.0}, env.compat.version_text).to_bytes()
    assert env.compat.check_calibration_cache(data) == "entropy2"
    assert data.decode().splitlines()[0] == env.compat.calibration_header("entropy2")
    env.close()


def test_damaged_caches_are_refused() -> None:
    with pytest.raises(ModelError, match="not a TensorRT calibration cache"):
        CalibrationCache.parse(b"hello\n")
    with pytest.raises(ModelError, match=":2:"):
        CalibrationCache.parse(b"TRT-8502-EntropyCalibration2\nx: zz\n")
    with pytest.raises(ModelError, match="finite"):
        CalibrationCache(8502, "entropy2", {"x": math.nan}).to_bytes()

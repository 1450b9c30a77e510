"""TrtCompat against the contract fakes of every TensorRT band (tests/fakes: not TensorRT)."""

from __future__ import annotations

import pytest
from fakes.harness import fake_env

from edge.errors import HardwareError, ModelError
from edge.infer.tensorrt.compat import TrtCompat, parse_version

BANDS = ["8.0", "8.2", "8.5", "8.6", "10", "11"]


def test_versions_compare_as_integers() -> None:
    assert parse_version("10.3.0.26") > parse_version("8.6.1.6")
    assert parse_version("8.2.1.8") == (8, 2, 1)
    assert parse_version("11") == (11, 0, 0)


@pytest.mark.parametrize("band", BANDS)
def test_fakes_mirror_the_documented_surface(band: str) -> None:
    """Sanity of the fakes themselves: what each band has and lacks."""
    env = fake_env(band)
    trt = env.trt
    config = trt.Builder(trt.Logger()).create_builder_config()
    assert hasattr(trt.BuilderFlag, "FP16") == (band != "11")
    assert hasattr(trt, "IInt8EntropyCalibrator2") == (band != "11")
    assert hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") == (band != "11")
    assert hasattr(config, "max_workspace_size") == (band in ("8.0", "8.2", "8.5", "8.6"))
    assert hasattr(config, "set_memory_pool_limit") == (band not in ("8.0", "8.2"))
    assert hasattr(config, "create_timing_cache") == (band != "8.0")
    if band in ("10", "11"):
        with pytest.raises(AttributeError):
            config.max_workspace_size = 1 << 20  # removed: writing it must fail too
    env.close()


@pytest.mark.parametrize("band", BANDS)
def test_network_flags_use_explicit_batch_only_before_10(band: str) -> None:
    env = fake_env(band)
    flags = env.compat.network_flags()
    if band in ("10", "11"):
        assert flags == 0
    else:
        assert flags == 1 << int(env.trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    env.trt.Builder(env.trt.Logger()).create_network(flags)  # accepted by the band
    assert ("deprecated", "EXPLICIT_BATCH") not in env.calls
    env.close()


@pytest.mark.parametrize(("band", "field"), [("8.2", "max_workspace_size"), ("8.5", "pool"), ("10", "pool"),
                                             ("11", "pool")])
def test_workspace_goes_where_the_band_reads_it(band: str, field: str) -> None:
    env = fake_env(band)
    config = env.trt.Builder(env.trt.Logger()).create_builder_config()
    env.compat.set_workspace(config, 256 << 20)
    if field == "pool":
        assert config.get_memory_pool_limit(env.trt.MemoryPoolType.WORKSPACE) == 256 << 20
    else:
        assert config.max_workspace_size == 256 << 20
    env.close()


@pytest.mark.parametrize(("band", "code"), [("8.2", 8201), ("8.5", 8502), ("10", 100300)])
def test_calibration_cache_headers(band: str, code: int) -> None:
    compat = fake_env(band).compat
    assert compat.calibration_header() == f"TRT-{code}-EntropyCalibration2"
    assert compat.check_calibration_cache(f"TRT-{code}-MinMaxCalibration\nx: 3c000000\n".encode()) == "minmax"
    with pytest.raises(ModelError, match="another TensorRT"):
        compat.check_calibration_cache(b"TRT-8001-EntropyCalibration2\n")
    with pytest.raises(ModelError, match="not a TensorRT calibration cache"):
        compat.check_calibration_cache(b"garbage")


def test_band_11_has_no_calibrators_or_precision_flags() -> None:
    env = fake_env("11")
    assert not env.compat.has_calibrators and not env.compat.has_precision_flags
    with pytest.raises(HardwareError, match=r"removed in 11\.0"):
        env.compat.calibrator_base()
    config = env.trt.Builder(env.trt.Logger()).create_builder_config()
    with pytest.raises(HardwareError, match="strongly typed"):
        env.compat.set_precision(config, "fp16", fp16_fallback=False)
    env.compat.set_precision(config, "fp32", fp16_fallback=False)  # nothing to set
    env.close()


def test_dtypes_by_symbolic_name_even_when_renumbered() -> None:
    for band in ("8.5", "11"):
        compat = TrtCompat(fake_env(band).trt)
        assert compat.dtype_name(compat.trt.DataType.HALF) == "float16"
        assert compat.dtype_name(compat.trt.DataType.INT32) == "int32"
    assert int(fake_env("11").trt.DataType.FLOAT) != int(fake_env("8.5").trt.DataType.FLOAT)


def test_fast_precision_fallback_by_compute_capability() -> None:
    compat = fake_env("11").compat
    assert not compat.fast_int8(None, (5, 3)) and compat.fast_fp16(None, (5, 3))
    assert compat.fast_int8(None, (8, 7)) and not compat.fast_fp16(None, (6, 1))

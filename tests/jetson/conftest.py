"""Hardware suite (marker ``jetson``): real TensorRT and pycuda on a Jetson, or a clear skip.

Run on the device (see docs/jetson.md):  EDGE_ASSETS=... python -m pytest -m jetson tests/jetson -v -rs
On an x86 machine with TensorRT and a GPU, EDGE_JETSON=1 runs it too.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Iterator

import pytest


def _skip_reason() -> str:
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        return f"needs a Jetson with TensorRT and pycuda ({', '.join(missing)} not importable here)"
    if not Path("/etc/nv_tegra_release").exists() and os.environ.get("EDGE_JETSON") != "1":
        return ("needs a Jetson (/etc/nv_tegra_release not found; "
                "EDGE_JETSON=1 forces the suite on other TensorRT hosts)")
    return ""


@pytest.fixture(scope="session")
def jetson() -> Iterator[Any]:
    """(TrtCompat, CudaDevice) of the real device."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from edge.infer.cuda import CudaDevice
    from edge.infer.tensorrt.compat import TrtCompat

    device = CudaDevice(0)
    yield TrtCompat.load(), device
    device.close()


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One engine cache for the whole suite, so each engine is built once."""
    return tmp_path_factory.mktemp("jetson-state")

"""Wiring of the contract fakes into edge's TensorRT/CUDA classes for host-side tests."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any, Iterator, Tuple

from edge.infer.cuda import CudaDevice
from edge.infer.tensorrt.compat import TrtCompat
from fakes.pycuda_fake import make_pycuda
from fakes.tensorrt_fake import make_tensorrt

# name, compute capability, integrated, fast fp16, fast int8, DLA cores
DEVICES = {
    "nano": ("NVIDIA Tegra X1", (5, 3), True, True, False, 0),
    "xavier": ("Xavier", (7, 2), True, True, True, 2),
    "orin": ("Orin", (8, 7), True, True, True, 2),
    "orin-nano": ("Orin", (8, 7), True, True, True, 0),
    "h200": ("NVIDIA H200", (9, 0), False, True, True, 0),
}


@dataclass
class FakeEnv:
    """A fake GPU + TensorRT band, and edge's adapter objects over them."""

    cuda: types.SimpleNamespace  # .driver, .compiler, .state
    trt: types.ModuleType
    compat: TrtCompat
    device: CudaDevice

    @property
    def calls(self) -> Any:
        return self.trt.calls  # type: ignore[attr-defined]

    def close(self) -> None:
        self.device.close()


def fake_env(band: str, machine: str = "h200") -> FakeEnv:
    name, cc, integrated, fp16, int8, dla = DEVICES[machine]
    cuda = make_pycuda(name, cc, integrated)
    trt = make_tensorrt(band, cuda=cuda.state, fast_fp16=fp16, fast_int8=int8, dla_cores=dla)
    return FakeEnv(cuda, trt, TrtCompat(trt), CudaDevice(0, driver=cuda.driver))


def install_modules(env: FakeEnv) -> Iterator[Tuple[str, Any]]:
    """(name, module) pairs to put into sys.modules so lazy imports find the fakes."""
    yield "tensorrt", env.trt
    yield "pycuda", env.cuda.pycuda
    yield "pycuda.driver", env.cuda.driver
    yield "pycuda.compiler", env.cuda.compiler


def patch_modules(monkeypatch: Any, env: FakeEnv) -> None:
    for name, module in install_modules(env):
        monkeypatch.setitem(sys.modules, name, module)

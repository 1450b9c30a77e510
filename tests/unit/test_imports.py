"""Every module of edge/ imports with only the base dependencies, and every CLI answers --help.

Hardware and optional libraries (TensorRT, pycuda, systemd-python, PyGObject, the
calibration extras) are blocked in a fresh interpreter, exactly as on a laptop or a CI
box that installed ``pip install edge-detector`` alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = [
    "tensorrt", "pycuda", "systemd", "gi", "onnx", "matplotlib", "pycocotools", "tqdm", "psutil",
    "hypothesis", "cupy", "torch",
]

SCRIPT = r"""
import importlib, pkgutil, sys
BLOCKED = set(sys.argv[1].split(","))

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked (optional dependency)")
        return None

sys.meta_path.insert(0, Block())
import edge
failed = []
names = [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.") if m.name != "edge.__main__"]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names), "modules")
for f in failed:
    print("FAIL", f)
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_without_optional_dependencies() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(OPTIONAL)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = int(proc.stdout.split()[0])
    assert count >= 30, proc.stdout


@pytest.mark.parametrize("cmd", [
    ["edge.cli.detector", "--help"],
    ["edge.cli.detector", "run", "--help"],
    ["edge.cli.detector", "check-config", "--help"],
    ["edge.cli.detector", "bench", "--help"],
    ["edge.cli.calibrate", "--help"],
])
def test_cli_help(cmd) -> None:
    proc = subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout

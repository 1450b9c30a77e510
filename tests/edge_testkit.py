"""Test support shared by every test directory: assets, free ports, real mosquitto brokers.

Imported as ``edge_testkit`` (``tests/`` is on the import path); fixtures live in conftest.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]


def assets_dir() -> Path:
    env = os.environ.get("EDGE_ASSETS")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edge-detector" / "assets"


class Assets:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.model = root / "models" / "nanodet_g_416_coco.onnx"
        self.video = root / "media" / "vtest.avi"




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port}")


class Mosquitto:
    """A real mosquitto broker on a free loopback port, restartable (same port, same store)."""

    def __init__(self, workdir: Path, persistence: bool = True, extra: str = "", port: Optional[int] = None) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("mosquitto is not installed - run tools/setup.sh", pytrace=False)
        self.exe = exe
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            # As root, mosquitto would switch to the "mosquitto" user, which cannot write its store or
            # read key files under pytest's root-only temporary directories.
            "user root" if os.geteuid() == 0 else "",
            extra,
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Mosquitto":
        with open(self.workdir / "mosquitto.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        log = getattr(self, "log", None)
        if log is not None:
            log.close()

    def restart(self) -> None:
        self.stop()
        self.start()


def load_make_models() -> Any:
    """``tests/models/make_models.py`` as a module (it writes the tiny ONNX test models)."""
    import importlib.util

    path = ROOT / "tests" / "models" / "make_models.py"
    spec = importlib.util.spec_from_file_location("edge_test_make_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

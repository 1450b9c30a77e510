"""The shipped unit: tools/check_unit.sh (verify + security score) and its fit with the config.

check_unit.sh is run on the real unit and on broken copies, to show it fails when it must.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict

import pytest

from edge.config.model import HealthConfig

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "edge-detector.service"
CHECK = ROOT / "tools" / "check_unit.sh"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def settings(text: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out[key] = value  # the last one wins, as in systemd (for these single-valued keys)
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)", value)
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


def check(unit: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK), *args, str(unit)], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_check_unit_passes_and_reports_the_score() -> None:
    res = check(UNIT)
    assert res.returncode == 0, res.stderr
    m = re.search(r"security exposure of edge-detector.service: ([0-9.]+) \(limit 3.0\)", res.stdout)
    assert m, res.stdout
    assert float(m.group(1)) <= 3.0
    assert "+ systemd/examples/csi-camera.conf" in res.stdout  # the example drop-ins are verified too
    assert "+ this machine's 10-devices.conf" in res.stdout


def test_check_unit_fails_on_a_verify_warning(tmp_path: Path) -> None:
    bad = tmp_path / "edge-detector.service"
    bad.write_text(UNIT.read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=yes\nProtectEverything=yes"))
    res = check(bad)
    assert res.returncode == 1
    assert "verify warns" in res.stderr and "ProtectEverything" in res.stderr


def test_check_unit_fails_above_the_exposure_limit(tmp_path: Path) -> None:
    text = UNIT.read_text().split("# ---------------------------------------------------------------- sandbox")[0]
    weak = tmp_path / "edge-detector.service"
    weak.write_text(text)  # the unit without its sandbox section
    res = check(weak)
    assert res.returncode == 1
    assert re.search(r"exposure [0-9.]+ is above 3.0", res.stderr), res.stderr
    assert check(weak, "--max-exposure", "10").returncode == 0


def test_unit_fits_the_daemon_and_its_defaults() -> None:
    s = settings(UNIT.read_text())
    health = HealthConfig.model_validate({})
    assert (s["Type"], s["NotifyAccess"], s["Restart"]) == ("notify", "main", "on-failure")
    assert s["ExecStart"].startswith("/opt/edge-detector/venv/bin/edge-detector run --config ")
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # Pings stop worker_stall_s after a hang; the watchdog must not fire before that can happen
    # and must outlast the main loop's checks (4 a second) by far.
    assert seconds(s["WatchdogSec"]) >= health.worker_stall_s
    # READY can take ready_timeout_s after the model is loaded.
    assert seconds(s["TimeoutStartSec"]) > health.ready_timeout_s + 30
    # The drain waits up to worker_stall_s for the pipeline, plus cameras and sinks.
    assert seconds(s["TimeoutStopSec"]) >= health.worker_stall_s + 20
    assert s["StartLimitBurst"] and s["StartLimitIntervalSec"]
    assert s["StateDirectory"] == s["ConfigurationDirectory"] == s["RuntimeDirectory"] == "edge-detector"
    assert s["LoadCredential"].startswith("mqtt-password:")
    assert s["DevicePolicy"] == "closed" and s["User"] == "edge-detector"

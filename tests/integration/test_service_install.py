"""tools/install-jetson.sh for real, in a throwaway root (see service_sandbox.py).

The installer runs as root in an overlay copy of this machine with no systemd running (like
a chroot or an image build): it must create the user, directories, virtualenv, unit and
device drop-in, enable the service offline, change nothing when run again, and leave no
trace after --uninstall. pip runs offline (--no-deps --no-index): the dependencies are not
what is tested here. JetPack detection is tested with a fake /etc/nv_tegra_release, the
device drop-in with device nodes made in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from service_sandbox import Sandbox, unavailable

ROOT = Path(__file__).resolve().parents[2]
INSTALL = str(ROOT / "tools" / "install-jetson.sh")
PIP_OFFLINE = "--no-deps --no-index --no-build-isolation"
NAME = "edge-detector"
PATHS = ["/opt/edge-detector", "/etc/edge-detector", "/var/lib/edge-detector",
         "/etc/systemd/system/edge-detector.service", "/etc/systemd/system/edge-detector.service.d"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    reason = unavailable()
    if reason:
        pytest.skip(f"no throwaway root for the installer: {reason}")
    sb = Sandbox()
    try:
        yield sb
    finally:
        sb.close()


def state(sb: Sandbox) -> str:
    """Everything the installer owns, as text: users, groups, files (mode, owner, content hash)."""
    script = f"""
        getent passwd {NAME}; getent group {NAME}; id -nG {NAME}
        find {' '.join(PATHS)} /etc/systemd/system/multi-user.target.wants/{NAME}.service \\
          -path '*/venv/lib' -prune -o -path '*/venv/bin' -prune -o -printf '%p %M %u:%g %l\\n' 2>/dev/null | sort
        sha256sum /etc/systemd/system/{NAME}.service /etc/systemd/system/{NAME}.service.d/* /etc/{NAME}/* 2>/dev/null
        systemctl is-enabled {NAME}.service
    """
    return sb.run(["bash", "-c", script], check=False).stdout


@pytest.mark.slow
def test_install_is_idempotent_and_uninstall_removes_everything(sandbox: Sandbox) -> None:
    sb = sandbox
    before = state(sb)
    assert f"{NAME}:x" not in before

    dry = sb.run([INSTALL, "--dry-run", "--no-apt", "--pip-args", PIP_OFFLINE])
    assert "+ useradd --system" in dry.stdout and "edge-detector.service" in dry.stdout
    assert state(sb) == before, "--dry-run changed something"

    first = sb.run([INSTALL, "--no-apt", "--pip-args", PIP_OFFLINE], timeout=300)
    assert "systemd is not running" in first.stderr  # enabled offline, not started
    after = state(sb)
    passwd = sb.run(["getent", "passwd", NAME]).stdout.strip().split(":")
    assert int(passwd[2]) < 1000 and passwd[5] == "/var/lib/edge-detector" and passwd[6].endswith("nologin")
    assert "video" in sb.run(["id", "-nG", NAME]).stdout.split()
    modes = {line.split()[0]: line.split()[1:3] for line in after.splitlines() if line.startswith("/")}
    assert modes["/etc/edge-detector"] == ["drwxr-x---", "root:edge-detector"]
    assert modes["/etc/edge-detector/config.yaml"] == ["-rw-r-----", "root:edge-detector"]
    assert modes["/etc/edge-detector/mqtt-password"] == ["-rw-------", "root:root"]
    assert modes["/var/lib/edge-detector"] == ["drwxr-x---", "edge-detector:edge-detector"]
    assert modes["/var/lib/edge-detector/models"] == ["drwxr-x---", "edge-detector:edge-detector"]
    assert after.strip().endswith("enabled")

    # The venv sees the system's packages (python3-gi here, TensorRT and pycuda on a Jetson).
    venv = "/opt/edge-detector/venv"
    assert "include-system-site-packages = true" in sb.path(f"{venv}/pyvenv.cfg").read_text()
    sb.run([f"{venv}/bin/python", "-c", "import gi"])
    assert sb.run([f"{venv}/bin/edge-detector", "--version"]).stdout.startswith("edge-detector ")

    unit = sb.path(f"/etc/systemd/system/{NAME}.service").read_text()
    assert f"ExecStart={venv}/bin/edge-detector run --config %E/edge-detector/config.yaml" in unit
    assert sb.path(f"/etc/systemd/system/{NAME}.service.d/10-devices.conf").read_text().count("[Service]") == 1
    # The installed unit and its drop-in, as systemd will load them: no warning at all.
    verify = sb.run(["systemd-analyze", "verify", f"/etc/systemd/system/{NAME}.service"])
    assert verify.stderr == "" and verify.stdout == ""

    # Again, after the admin edited the config: nothing changes, the config is kept.
    config = sb.path("/etc/edge-detector/config.yaml")
    config.write_text(config.read_text() + "# edited by the admin\n")
    edited = state(sb)
    sb.run([INSTALL, "--no-apt", "--pip-args", PIP_OFFLINE], timeout=300)
    assert state(sb) == edited
    assert config.read_text().endswith("# edited by the admin\n")

    keep = sb.run([INSTALL, "--uninstall", "--keep-data"])
    assert "kept /etc/edge-detector" in keep.stderr
    assert sb.path("/etc/edge-detector/config.yaml").exists() and not sb.path("/opt/edge-detector").exists()
    sb.run([INSTALL, "--uninstall"])
    gone = state(sb)
    assert NAME not in gone.replace(f"{NAME}.service", ""), gone  # no user, group or file left
    assert not any(sb.path(p).exists() for p in PATHS)
    sb.run([INSTALL, "--uninstall"])  # nothing left to remove: still fine


def test_jetpack_is_detected(sandbox: Sandbox) -> None:
    release = sandbox.path("/etc/nv_tegra_release")
    release.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: x\n")
    try:
        out = sandbox.run([INSTALL, "--dry-run", "--no-apt"])
    finally:
        release.unlink()
    assert "JetPack (L4T 35.4.1)" in out.stderr
    assert "cannot import tensorrt" in out.stderr  # a JetPack without python3-libnvinfer is named
    assert "numpy<2" in out.stdout  # JetPack's TensorRT bindings need numpy 1.x
    assert "--system-site-packages /opt/edge-detector/venv" in out.stdout
    assert f"{ROOT}\\[jetson\\]" in out.stdout  # pycuda is not installed system-wide here: built by pip


@pytest.mark.skipif(os.geteuid() != 0, reason="making device nodes (mknod) needs root")
def test_device_dropin_lists_the_gpu_nodes_present(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    (dev / "nvgpu" / "igpu0").mkdir(parents=True)
    (dev / "dri").mkdir()
    for node in ("nvhost-ctrl-gpu", "nvhost-nvdec", "nvmap", "nvgpu/igpu0/ctrl", "dri/renderD128", "video0"):
        os.mknod(dev / node, 0o600 | 0o020000, os.makedev(1, 3))  # character devices
    (dev / "nvhost-stale").write_text("")  # not a device node: left out
    out = subprocess.run([INSTALL, "--print-devices"], env=dict(os.environ, EDGE_DEV_ROOT=str(dev)),
                         capture_output=True, text=True, check=True).stdout
    allowed = [line for line in out.splitlines() if line.startswith("DeviceAllow=")]
    assert allowed == [
        "DeviceAllow=/dev/nvhost-ctrl-gpu rw",
        "DeviceAllow=/dev/nvhost-nvdec rw",
        "DeviceAllow=/dev/nvmap rw",
        "DeviceAllow=/dev/nvgpu/igpu0/ctrl rw",
        "DeviceAllow=/dev/dri/renderD128 rw",
    ]  # video0 is a camera: the unit allows all of video4linux itself

    if shutil.which("systemd-analyze") is None:
        return
    unit = tmp_path / "unit" / f"{NAME}.service"
    (unit.parent / f"{NAME}.service.d").mkdir(parents=True)
    text = (ROOT / "systemd" / f"{NAME}.service").read_text()
    unit.write_text(text.replace("/opt/edge-detector/venv/bin/edge-detector", shutil.which("true") or "/bin/true"))
    (unit.parent / f"{NAME}.service.d" / "10-devices.conf").write_text(out)
    res = subprocess.run(["systemd-analyze", "verify", unit.name], cwd=unit.parent, capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_python_older_than_3_8_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python3.6"
    fake.write_text("#!/bin/sh\ncase \"$2\" in *platform*) echo 3.6.9 ;; *) exit 1 ;; esac\n")
    fake.chmod(0o755)
    res = subprocess.run([INSTALL, "--dry-run", "--no-apt", "--python", str(fake)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "is 3.6.9; edge-detector needs 3.8+" in res.stderr and "--python python3.8" in res.stderr

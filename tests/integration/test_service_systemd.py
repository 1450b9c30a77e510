"""The installed unit under a real systemd (PID 1 of a throwaway root, see service_sandbox.py).

tools/install-jetson.sh installs the service as on a device; then systemd itself starts it
(Type=notify: `systemctl start` returns at READY=1), with the unit's whole sandbox applied
(user, seccomp, no capabilities, read-only system, device policy), reloads it, restarts it
when a worker hangs (watchdog), and stops it. Logs are read back from the sandbox's journald.

The daemon's dependencies come from the project's .venv through a .pth file, since pip runs
offline here; everything else is the installed package and the shipped unit. The daemon
publishes to a real mosquitto on the host's loopback (the sandbox shares the network).
"""

from __future__ import annotations

import json
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import yaml
from daemon_helpers import NANODET_INPUT, Subscriber
from edge_testkit import Mosquitto
from service_sandbox import Sandbox, hidden_paths, unavailable

ROOT = Path(__file__).resolve().parents[2]
INSTALL = str(ROOT / "tools" / "install-jetson.sh")
UNIT = "edge-detector.service"
DROPINS = Path("/etc/systemd/system/edge-detector.service.d")
CONFIG = "/etc/edge-detector/config.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop(kill=True)


@pytest.fixture(scope="module")
def system(assets: Any, broker: Mosquitto) -> Iterator[Sandbox]:
    reason = unavailable()
    if reason:
        pytest.skip(f"no throwaway root with systemd: {reason}")
    sb = Sandbox()
    try:
        py = sb.run(["python3", "-c", "import sys; print(*sys.version_info[:2], sep='.')"]).stdout.strip()
        if py != "{}.{}".format(*sys.version_info[:2]):
            pytest.skip(f"the system python3 is {py}, the project's venv another: its packages cannot be borrowed")
        sb.run([INSTALL, "--no-apt", "--pip-args", "--no-deps --no-index --no-build-isolation"], timeout=300)
        site = f"/opt/edge-detector/venv/lib/python{py}/site-packages"
        sb.path(f"{site}/_edge_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        # A checkout or venv under /tmp would be hidden by the unit's PrivateTmp=: show it again.
        binds = "".join(f"BindReadOnlyPaths={p}\n" for p in hidden_paths())
        sb.path(str(DROPINS / "90-sandbox.conf")).write_text(f"[Service]\nLimitCORE=0\nRestartSec=1s\n{binds}")
        write_config(sb, assets, broker.port)
        sb.boot()
        yield sb
    finally:
        sb.close()


def write_config(sb: Sandbox, assets: Any, port: int, **detect: Any) -> None:
    cfg: Dict[str, Any] = {
        "device": "sandbox",
        "log_level": "info",
        "sinks": ["mqtt"],
        "cameras": [{"name": "street", "source": {"kind": "file", "path": str(assets.video), "realtime": True}}],
        "model": {"path": str(assets.model), "name": "nanodet-g", "input": dict(NANODET_INPUT)},
        "backend": {"kind": "onnxruntime", "precision": "best"},
        "detect": detect or {"score_threshold": 0.35},
        "mqtt": {"host": "127.0.0.1", "port": port, "stats_interval_s": 5},
        "health": {"worker_stall_s": 3.0, "status_interval_s": 1.0},
    }
    sb.path(CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))


def journal(sb: Sandbox, *args: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in sb.journal("-u", UNIT, "-o", "json", *args) if line.startswith("{")]


def messages(sb: Sandbox, since_cursor: str = "") -> List[str]:
    args = ["--after-cursor", since_cursor] if since_cursor else []
    return [str(e.get("MESSAGE", "")) for e in journal(sb, *args)]


def cursor(sb: Sandbox) -> str:
    """The journal's current end (of any unit: the boot has written entries already)."""
    last = [json.loads(line) for line in sb.journal("-n", "1", "-o", "json") if line.startswith("{")]
    return str(last[-1]["__CURSOR"])


def wait(what: str, predicate: Any, timeout: float, sb: Sandbox) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    tail = "\n".join(messages(sb)[-25:])
    raise AssertionError(f"timed out waiting for {what}; journal:\n{tail}")


def unit_seconds(key: str) -> float:
    for line in (ROOT / "systemd" / UNIT).read_text().splitlines():
        if line.startswith(f"{key}="):
            value = line.split("=", 1)[1]
            return float(value[:-3]) * 60 if value.endswith("min") else float(value.rstrip("s"))
    raise AssertionError(key)


def test_start_waits_for_ready_under_the_full_sandbox(system: Sandbox, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "edge/sandbox/#")
    try:
        t0 = time.monotonic()
        system.run(["systemctl", "start", UNIT], timeout=unit_seconds("TimeoutStartSec") + 30)
        took = time.monotonic() - t0
        # Type=notify: start returned at READY=1, which comes after the first inference.
        show = system.show(UNIT, "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts", "Result")
        assert (show["ActiveState"], show["SubState"], show["Result"]) == ("active", "running", "success"), show
        assert show["StatusText"].startswith("running: street"), show
        assert took < unit_seconds("TimeoutStartSec")
        wait("detections on the broker", lambda: len(sub.payloads("/detections")) >= 5, 30, system)
        wait("STATUS= with the frame rate", lambda: " fps" in system.show(UNIT, "StatusText")["StatusText"], 10, system)
    finally:
        sub.close()

    pid = show["MainPID"]
    status = dict(
        line.split(":", 1) for line in system.run(["cat", f"/proc/{pid}/status"]).stdout.splitlines() if ":" in line
    )
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # the system call filter is on
    assert int(status["CapEff"].strip(), 16) == 0 and int(status["CapBnd"].strip(), 16) == 0
    assert system.run(["ps", "-o", "user=", "-p", pid]).stdout.strip() == "edge-detector"
    env = system.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
    assert "STATE_DIRECTORY=/var/lib/edge-detector" in env and any(e.startswith("NOTIFY_SOCKET=") for e in env)

    # Native journal entries with the structured fields.
    entries = [e for e in journal(system) if e.get("SYSLOG_IDENTIFIER") == "edge-detector"]
    assert entries and all(e["_TRANSPORT"] == "journal" for e in entries)
    assert any(e.get("STAGE") == "capture" and e.get("CAMERA") == "street" for e in entries), entries[-5:]
    assert any(e.get("STAGE") == "daemon" and "ready" in e["MESSAGE"] for e in entries)
    assert all(e["PRIORITY"] in "01234567" for e in entries)


def test_reload_applies_a_valid_config_and_keeps_the_old_on_error(
    system: Sandbox, assets: Any, broker: Mosquitto
) -> None:
    if system.show(UNIT, "ActiveState")["ActiveState"] != "active":
        system.run(["systemctl", "start", UNIT], timeout=150)
    before = system.show(UNIT, "MainPID", "NRestarts")

    mark = cursor(system)
    write_config(system, assets, broker.port, score_threshold=0.6, classes=["person"])
    system.run(["systemctl", "reload", UNIT])
    wait("the new config", lambda: any("new configuration in force" in m for m in messages(system, mark)), 60, system)
    wait("READY after RELOADING", lambda: system.show(UNIT, "SubState")["SubState"] == "running", 30, system)
    assert not any("opening the new engine" in m for m in messages(system, mark))

    mark = cursor(system)
    config = system.path(CONFIG)
    config.write_text(config.read_text().replace("score_threshold: 0.6", "score_threshold: 7"))
    system.run(["systemctl", "reload", UNIT])
    wait("the rejection", lambda: any("keeping the old one" in m for m in messages(system, mark)), 60, system)
    rejected = [e for e in journal(system, "--after-cursor", mark) if "keeping the old one" in e.get("MESSAGE", "")]
    assert rejected[0]["PRIORITY"] == "3" and "score_threshold" in rejected[0]["MESSAGE"]
    wait("running again", lambda: system.show(UNIT, "SubState")["SubState"] == "running", 30, system)
    assert system.show(UNIT, "MainPID", "NRestarts") == before  # reloads never restart the process
    write_config(system, assets, broker.port)


def test_watchdog_restarts_a_hung_daemon(system: Sandbox) -> None:
    hang = DROPINS / "91-hang.conf"
    system.path(str(hang)).write_text("[Service]\nEnvironment=EDGE_TEST_HANG_INFER_AFTER=30\nWatchdogSec=3s\n")
    try:
        system.run(["systemctl", "daemon-reload"])
        restarts = int(system.show(UNIT, "NRestarts")["NRestarts"])
        mark = cursor(system)
        system.run(["systemctl", "restart", UNIT], timeout=150)
        wait("a watchdog restart", lambda: int(system.show(UNIT, "NRestarts")["NRestarts"]) > restarts, 90, system)
    finally:
        system.path(str(hang)).unlink()
        system.run(["systemctl", "daemon-reload"])
    entries = journal(system, "--after-cursor", mark)
    text = [str(e.get("MESSAGE", "")) for e in entries]
    hung = next(i for i, m in enumerate(text) if "hangs on purpose" in m)
    stall = next(i for i, m in enumerate(text) if "no progress for" in m)
    timeout = next((i for i, m in enumerate(text) if "Watchdog timeout" in m), None)
    assert timeout is not None, "\n".join(text[stall:])
    assert hung < stall < timeout
    assert entries[stall]["ERROR_KIND"] == "stall" and entries[stall]["STAGE"] == "health"
    assert "inference" in text[stall]
    # The stall and the kill happen within worker_stall_s + WatchdogSec of the hang (slack for load).
    t = [int(entries[i]["__MONOTONIC_TIMESTAMP"]) / 1e6 for i in (hung, stall, timeout)]
    assert t[2] - t[0] < 3.0 + 3.0 + 4.0, t
    # PYTHONFAULTHANDLER: the SIGABRT shows where each thread was (the hung one in the pipeline).
    dump = "\n".join(text[stall:])
    assert "Fatal Python error: Aborted" in dump and "_infer_loop" in dump
    system.run(["systemctl", "restart", UNIT], timeout=150)  # without the hang


def test_stop_drains_and_exits_zero_in_time(system: Sandbox, broker: Mosquitto) -> None:
    if system.show(UNIT, "ActiveState")["ActiveState"] != "active":
        system.run(["systemctl", "start", UNIT], timeout=150)
    sub = Subscriber(broker.port, "edge/sandbox/#")
    try:
        wait("availability online", lambda: sub.raw("/availability")[-1:] == [b"online"], 15, system)
        t0 = time.monotonic()
        system.run(["systemctl", "stop", UNIT], timeout=unit_seconds("TimeoutStopSec") + 30)
        took = time.monotonic() - t0
        wait("availability stopped", lambda: sub.raw("/availability")[-1:] == [b"stopped"], 10, system)
    finally:
        sub.close()
    show = system.show(UNIT, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert (show["ActiveState"], show["Result"], show["ExecMainStatus"]) == ("inactive", "success", "0"), show
    assert took < unit_seconds("TimeoutStopSec"), f"stop took {took:.1f} s"


def test_own_protocols_without_systemd_python(system: Sandbox) -> None:
    """The fallbacks used when systemd-python is absent, against the real systemd and journald."""
    py = "/opt/edge-detector/venv/bin/python"
    script = (
        "import time\n"
        "from edge.health.heartbeat import Heartbeats\n"
        "from edge.health.systemd import JournalSender, Notifier\n"
        "n = Notifier(Heartbeats(), 10.0, 5.0, use_library=False)\n"
        "assert n.enabled and not n.via_library\n"
        "JournalSender(use_library=False).send([('MESSAGE', 'first line\\nsecond line'), ('CAMERA', 'gate'),"
        " ('SYSLOG_IDENTIFIER', 'edge-native')])\n"
        "n.ready('ready through our own datagram')\n"
        "time.sleep(120)\n"
    )
    # Type=notify: systemd-run returns only once READY=1 arrived.
    system.run(["systemd-run", "--unit=edge-proto", "-p", "Type=notify", "-p", "NotifyAccess=main",
                "-p", "TimeoutStartSec=60", py, "-c", script], timeout=90)
    try:
        show = system.show("edge-proto.service", "ActiveState", "StatusText")
        assert show == {"ActiveState": "active", "StatusText": "ready through our own datagram"}
        entries = [json.loads(line) for line in system.journal("SYSLOG_IDENTIFIER=edge-native", "-o", "json")]
        assert [(e["MESSAGE"], e["CAMERA"]) for e in entries] == [("first line\nsecond line", "gate")]
    finally:
        system.run(["systemctl", "stop", "edge-proto.service"], check=False)


def test_uninstall_with_systemd_running(system: Sandbox) -> None:
    system.run(["systemctl", "start", UNIT], timeout=150)
    system.run([INSTALL, "--uninstall"])
    assert system.show(UNIT, "LoadState")["LoadState"] == "not-found"
    assert system.run(["getent", "passwd", "edge-detector"], check=False).returncode == 2
    assert not system.path("/opt/edge-detector").exists() and not system.path("/var/lib/edge-detector").exists()

"""A throwaway copy of this machine for the installer and real-systemd tests.

A helper process in a private mount namespace mounts an overlay over ``/`` (the upper layer
on a tmpfs) and uses it as a chroot: users created, files installed, units enabled and the
journal written there all vanish with the namespace, and the host is never touched.
:meth:`Sandbox.boot` then starts a real systemd as PID 1 of new PID and cgroup namespaces in
that root, like a container, so a unit can be started, reloaded, watchdog-killed and stopped
for real. The helper cleans up (kills that systemd, removes its cgroups) when its stdin
closes, i.e. also when the test process dies.

Needs root, util-linux ``unshare``/``nsenter``, overlayfs and ``/lib/systemd/systemd``;
:func:`unavailable` names what is missing so tests skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# Runs as root in a private mount namespace; $1 is an empty directory for the tmpfs.
_HELPER = r"""
set -euo pipefail
T=$1
mount -t tmpfs -o mode=0700 tmpfs "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
R=$T/root
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
shift
# Host directories the fresh /tmp and /run hide (a checkout or venv under /tmp): shown again
# through overlays of their own, so the sandbox sees them and still never writes to them.
i=0
for d in "$@"; do
  i=$((i + 1))
  mkdir -p "$T/up$i" "$T/wk$i" "$R$d"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/up$i,workdir=$T/wk$i" "$R$d"
done
SD="" UPID="" CGDIRS=()

# PID 1 of the new namespaces: its own /sys and cgroup mounts (rooted at our sub-cgroups), then systemd.
read -r -d '' CHILD <<'EOS' || true
set -e
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
opts=nosuid,nodev,noexec
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then  # a pure cgroup v2 host
  mount -t cgroup2 -o $opts cgroup2 "$R/sys/fs/cgroup"
else
  mount -t tmpfs -o mode=0755,$opts tmpfs "$R/sys/fs/cgroup"
  for c in /sys/fs/cgroup/*; do
    c=$(basename "$c")
    [ -L "/sys/fs/cgroup/$c" ] && continue
    mkdir -p "$R/sys/fs/cgroup/$c"
    case "$c" in
      unified) mount -t cgroup2 -o $opts cgroup2 "$R/sys/fs/cgroup/unified" ;;
      systemd) mount -t cgroup -o $opts,none,name=systemd cgroup "$R/sys/fs/cgroup/systemd" ;;
      *) mount -t cgroup -o $opts,$c cgroup "$R/sys/fs/cgroup/$c" ;;
    esac
  done
fi
exec chroot "$R" /usr/bin/env -i container=edge-sandbox PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --system --unit=edge-sandbox.target --log-target=journal --log-level=notice
EOS

cleanup() {
  set +e
  if [ -n "$SD" ]; then kill -KILL "$SD" 2>/dev/null; wait "$UPID" 2>/dev/null; fi
  local d
  for d in "${CGDIRS[@]}"; do
    echo $$ >"$(dirname "$d")/cgroup.procs"  # leave it, then remove it and what systemd made in it
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
      [ -d "$d" ] || break
      sleep 0.3
    done
    [ -d "$d" ] && echo "sandbox: could not remove cgroup $d" >&2
  done
}
trap cleanup EXIT

boot() {
  # One sub-cgroup per hierarchy, under our own, becomes the root of a cgroup namespace.
  local line ctrl path h d
  while IFS=: read -r _ ctrl path; do
    case "$ctrl" in
      "") h=unified ;;
      name=systemd) h=systemd ;;
      *) h=$ctrl ;;
    esac
    [ -d "/sys/fs/cgroup/$h" ] || continue
    d=/sys/fs/cgroup/$h${path%/}/edge-sandbox-$$
    mkdir "$d"
    CGDIRS+=("$d")
    if [ -f "$d/cpuset.cpus" ]; then
      cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus"
      cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"
    fi
    echo $$ >"$d/cgroup.procs"
  done <<<"$(cat /proc/self/cgroup)"
  R=$R unshare --cgroup --pid --fork --mount-proc="$R/proc" bash -c "$CHILD" >"$T/systemd.log" 2>&1 </dev/null &
  UPID=$!
  for _ in $(seq 150); do
    SD=$(ps -o pid= --ppid "$UPID" | tr -d ' ' || true)
    if [ -n "$SD" ] && [ -S "$R/run/systemd/private" ]; then echo "SYSTEMD $SD"; return; fi
    sleep 0.2
  done
  echo "FAILED systemd did not start: $(tail -5 "$T/systemd.log" | tr '\n' ' ')"
}

echo "ROOT $R"
while read -r cmd; do
  case "$cmd" in
    boot) boot ;;
    *) echo "FAILED unknown command $cmd" ;;
  esac
done
"""

_TARGET = """[Unit]
Description=edge-detector sandbox
Requires=sysinit.target
After=sysinit.target
"""


def unavailable() -> Optional[str]:
    """Why a sandbox cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces, overlayfs, chroot)"
    for tool in ("unshare", "nsenter", "chroot", "systemctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/lib/systemd/systemd").exists():
        return "systemd is not installed (/lib/systemd/systemd)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot create a mount namespace: {probe.stderr.decode().strip()}"
    return None


def hidden_paths() -> List[str]:
    """The checkout, the interpreter's prefix and the assets, where under /tmp or /run."""
    root = Path(__file__).resolve().parents[2]
    wanted = [root, Path(sys.prefix).resolve(), Path(os.environ.get("EDGE_ASSETS", root)).resolve()]
    out: List[str] = []
    for p in wanted:
        if p.parts[:2] in (("/", "tmp"), ("/", "run")) and p.is_dir() and not any(
            str(p).startswith(o + "/") or str(p) == o for o in out
        ):
            out.append(str(p))
    return out


class Sandbox:
    """A throwaway root; ``run`` executes a command in it (in the booted system once booted)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="edge-sandbox-"))
        script = self.dir / "helper.sh"
        script.write_text(_HELPER)
        (self.dir / "t").mkdir()
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "bash", str(script), str(self.dir / "t"), *hidden_paths()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self._answer()
        if not line.startswith("ROOT "):
            self.close()
            raise RuntimeError(f"sandbox did not start: {line} {self._stderr()}")
        self.root_in_ns = line.split(" ", 1)[1]
        self.systemd_pid: Optional[int] = None

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def path(self, inside: str) -> Path:
        """A path of the sandbox as this process sees it (through /proc/PID/root)."""
        return Path(f"/proc/{self.proc.pid}/root{self.root_in_ns}") / inside.lstrip("/")

    def run(self, args: Sequence[str], *, input: Optional[str] = None, timeout: float = 120,
            env: Optional[Dict[str, str]] = None, check: bool = True) -> subprocess.CompletedProcess:
        base = ["env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8"]
        base += [f"{k}={v}" for k, v in (env or {}).items()]
        if self.systemd_pid is None:
            cmd = ["nsenter", "-t", str(self.proc.pid), "-m", "--", "chroot", self.root_in_ns, *base, *args]
        else:
            cmd = ["nsenter", "-t", str(self.systemd_pid), "-m", "-p", "-r", "-w", "--", *base, *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def boot(self) -> None:
        """Start systemd as PID 1 (target edge-sandbox.target: sysinit plus what tests start)."""
        self.run(["systemctl", "mask", "systemd-timesyncd.service", "systemd-pstore.service"])
        self.path("/etc/systemd/system/edge-sandbox.target").write_text(_TARGET)
        assert self.proc.stdin is not None
        self.proc.stdin.write("boot\n")
        self.proc.stdin.flush()
        line = self._answer()
        if not line.startswith("SYSTEMD "):
            raise RuntimeError(f"sandbox systemd: {line}")
        self.systemd_pid = int(line.split()[1])
        self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=60)

    def show(self, unit: str, *props: str) -> Dict[str, str]:
        out = self.run(["systemctl", "show", unit, *[f"--property={p}" for p in props]]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> List[str]:
        return self.run(["journalctl", "--no-pager", *args]).stdout.splitlines()

    def close(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # the helper cleans up on EOF
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.dir, ignore_errors=True)

"""Device load and temperatures from /proc and sysfs, for the stats topic.

Every source is optional: a file that is absent or unreadable is skipped, never an error
(containers hide thermal zones, x86 has no Jetson GPU load file).

* CPU load: ``/proc/stat`` (busy share of all cores since the previous sample),
  ``/proc/loadavg``.
* Memory: ``/proc/meminfo`` (MemTotal, MemAvailable; on Jetson the GPU shares it).
* Temperatures: ``/sys/class/thermal/thermal_zone*/{type,temp}`` in millidegrees; every
  zone is reported by type, ``cpu_temp_c``/``gpu_temp_c`` are the hottest zones whose type
  names the CPU (``CPU-therm``, ``cpu-thermal``, ``x86_pkg_temp``...) or the GPU
  (``GPU-therm``, ``gpu-thermal``). Jetson marks a powered-down sensor with a value near
  -256 °C: skipped.
* Jetson GPU load: the first of ``GPU_LOAD_FILES`` that exists (per mille, 0-1000):
  Nano/TX2/Xavier ``/sys/devices/gpu.0/load``, Orin ``/sys/devices/platform/bus@0/17000000.gpu/load``
  (JetPack 6) or ``/sys/devices/17000000.ga10b/load`` (JetPack 5).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

GPU_LOAD_FILES = (
    "sys/devices/gpu.0/load",
    "sys/devices/platform/gpu.0/load",
    "sys/devices/platform/bus@0/17000000.gpu/load",
    "sys/devices/platform/17000000.gpu/load",
    "sys/devices/17000000.ga10b/load",
    "sys/devices/platform/17000000.ga10b/load",
    "sys/devices/17000000.gv11b/load",
    "sys/devices/platform/17000000.gv11b/load",
    "sys/devices/57000000.gpu/load",
)
_CPU_WORDS = ("cpu", "x86_pkg", "soc", "acpitz", "k10temp", "coretemp")


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


class SystemStats:
    """Samples load and temperatures; ``root`` is "/" except in tests."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self._last_cpu: Optional[Tuple[int, int]] = None  # (busy, total) jiffies
        self._gpu_load = next((root / p for p in GPU_LOAD_FILES if (root / p).is_file()), None)

    def sample(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        cpu = self._cpu_load()
        if cpu is not None:
            out["cpu_load_pct"] = cpu
        load = _read(self.root / "proc/loadavg")
        if load:
            try:
                out["loadavg"] = [float(v) for v in load.split()[:3]]
            except ValueError:
                pass
        out.update(self._memory())
        temps = self._temperatures()
        if temps:
            out["temperatures_c"] = {name: t for name, t in temps}
            cpu_t = [t for name, t in temps if any(w in name.lower() for w in _CPU_WORDS)]
            gpu_t = [t for name, t in temps if "gpu" in name.lower()]
            if cpu_t:
                out["cpu_temp_c"] = max(cpu_t)
            if gpu_t:
                out["gpu_temp_c"] = max(gpu_t)
        if self._gpu_load is not None:
            raw = _read(self._gpu_load)
            if raw and raw.isdigit():
                out["gpu_load_pct"] = round(int(raw) / 10.0, 1)
        return out

    def _cpu_load(self) -> Optional[float]:
        line = (_read(self.root / "proc/stat") or "").split("\n", 1)[0]
        fields = line.split()
        if len(fields) < 5 or fields[0] != "cpu":
            return None
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # guest time is already counted in user
        busy = total - idle
        last, self._last_cpu = self._last_cpu, (busy, total)
        if last is not None and total > last[1]:
            busy, total = busy - last[0], total - last[1]
        return round(100.0 * busy / total, 1) if total > 0 else None

    def _memory(self) -> Dict[str, Any]:
        info: Dict[str, int] = {}
        for line in (_read(self.root / "proc/meminfo") or "").splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
                info[key] = int(parts[0])  # kB
        if "MemTotal" not in info or "MemAvailable" not in info or not info["MemTotal"]:
            return {}
        return {
            "mem_available_mb": round(info["MemAvailable"] / 1024.0, 1),
            "mem_used_pct": round(100.0 * (1 - info["MemAvailable"] / info["MemTotal"]), 1),
        }

    def _temperatures(self) -> List[Tuple[str, float]]:
        out = []
        base = self.root / "sys/class/thermal"
        zones = sorted(base.glob("thermal_zone*")) if base.is_dir() else []
        for zone in zones:
            name = _read(zone / "type")
            raw = _read(zone / "temp")
            if not name or raw is None:
                continue
            try:
                celsius = int(raw) / 1000.0
            except ValueError:
                continue
            if -40.0 <= celsius <= 150.0:
                out.append((name, round(celsius, 1)))
        return out


_default: Optional[SystemStats] = None
_lock = threading.Lock()


def system_stats() -> Dict[str, Any]:
    """One sample of this machine (CPU load is measured since the previous call)."""
    global _default
    with _lock:
        if _default is None:
            _default = SystemStats()
        return _default.sample()

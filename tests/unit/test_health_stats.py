"""System stats: the real /proc of this machine, and Jetson/x86 sysfs layouts written as files.

The Jetson tree below is test data for the parser (this machine has no Jetson sysfs);
paths and value formats are those documented in edge/health/stats.py.
"""

from __future__ import annotations

from pathlib import Path

from edge.health.stats import SystemStats, system_stats


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_this_machine() -> None:
    first = system_stats()
    second = system_stats()
    for s in (first, second):
        assert 0.0 <= s["cpu_load_pct"] <= 100.0
        assert len(s["loadavg"]) == 3
        assert 0.0 <= s["mem_used_pct"] <= 100.0 and s["mem_available_mb"] > 0


def test_a_jetson_orin_layout(tmp_path: Path) -> None:
    write(tmp_path, "proc/stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    write(tmp_path, "proc/loadavg", "1.50 0.75 0.25 2/300 1234\n")
    write(tmp_path, "proc/meminfo", "MemTotal:        8000000 kB\nMemFree: 1 kB\nMemAvailable:    2000000 kB\n")
    for i, (kind, milli) in enumerate([("CPU-therm", "51500"), ("GPU-therm", "48250"),
                                       ("SOC0-therm", "49000"), ("tj-therm", "-256000")]):
        write(tmp_path, f"sys/class/thermal/thermal_zone{i}/type", kind + "\n")
        write(tmp_path, f"sys/class/thermal/thermal_zone{i}/temp", milli + "\n")
    write(tmp_path, "sys/devices/platform/bus@0/17000000.gpu/load", "734\n")
    stats = SystemStats(tmp_path)
    s = stats.sample()
    assert s["cpu_load_pct"] == 20.0  # busy 200 of 1000 jiffies since boot
    assert s["loadavg"] == [1.5, 0.75, 0.25]
    assert s["mem_used_pct"] == 75.0 and s["mem_available_mb"] == round(2000000 / 1024, 1)
    assert s["cpu_temp_c"] == 51.5 and s["gpu_temp_c"] == 48.2
    assert "tj-therm" not in s["temperatures_c"]  # a powered-down sensor
    assert s["gpu_load_pct"] == 73.4
    write(tmp_path, "proc/stat", "cpu  400 0 100 800 100 0 0 0 0 0\n")
    assert stats.sample()["cpu_load_pct"] == 75.0  # 300 busy of 400 since the previous sample


def test_absent_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "proc/stat", "garbage\n")
    write(tmp_path, "sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n")  # no temp file
    assert SystemStats(tmp_path).sample() == {}
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "63000\n")
    assert SystemStats(tmp_path).sample() == {"temperatures_c": {"x86_pkg_temp": 63.0}, "cpu_temp_c": 63.0}

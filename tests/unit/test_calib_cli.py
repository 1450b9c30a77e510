"""edge-calibrate's command line: --help everywhere, user errors as one line with an exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli.calibrate import main
from edge.errors import EXIT_CONFIG, EXIT_HARDWARE, EXIT_SOURCE, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sub", ["calibrate", "build", "sweep"])
def test_every_subcommand_has_help(sub: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "edge.cli.calibrate", sub, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage: edge-calibrate " + sub in proc.stdout
    assert "--config" in proc.stdout


def _config(tmp_path: Path, assets) -> Path:
    p = tmp_path / "edge.yaml"
    p.write_text(f"cameras:\n  - name: cam\n    source: {{kind: file, path: {assets.video}}}\n"
                 f"model:\n  path: {assets.model}\nsinks: [stdout]\n")
    return p


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-calibrate: error: "), err
    return err[0]


def test_usage_errors(capsys: pytest.CaptureFixture) -> None:
    assert main(["sweep"]) == EXIT_USAGE
    assert "--config" in _one_line(capsys)
    assert main(["frobnicate"]) == EXIT_USAGE
    _one_line(capsys)
    assert main(["sweep", "-c", "x.yaml", "--max-map-drop", "lots"]) == EXIT_USAGE
    assert "invalid float value" in _one_line(capsys)


def test_missing_files_and_sources(tmp_path: Path, assets, capsys: pytest.CaptureFixture) -> None:
    assert main(["calibrate", "-c", str(tmp_path / "none.yaml"), "--quiet"]) == EXIT_CONFIG
    assert "config file not found" in _one_line(capsys)
    cfg = _config(tmp_path, assets)
    assert main(["calibrate", "-c", str(cfg), "--source", str(tmp_path / "none.avi"), "--quiet"]) == EXIT_SOURCE
    assert "source not found" in _one_line(capsys)
    assert main(["calibrate", "-c", str(cfg), "--count", "800", "--quiet", "--out", str(tmp_path / "o")]) != 0
    assert "only 795" in _one_line(capsys)
    assert main(["sweep", "-c", str(cfg), "--labels", str(tmp_path), "--quiet", "--calibration",
                 str(tmp_path)]) != 0
    assert "no calibration record" in _one_line(capsys)


def test_tensorrt_only_command_without_tensorrt(tmp_path: Path, assets, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.calibrate import trt

    monkeypatch.setattr(trt, "available", lambda: False)
    cfg = _config(tmp_path, assets)
    assert main(["build", "-c", str(cfg), "--precision", "fp16"]) == EXIT_HARDWARE
    line = _one_line(capsys)
    assert "needs TensorRT" in line and "sweep" in line

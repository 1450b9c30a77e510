"""tools/assets.py: verification of the real demo assets, rejection of damaged copies, the
default directory, the model fingerprint, and the video extraction from real .deb files.

No network here: the full rebuild (npm + apt + TensorFlow) is a manual command, see docs/assets.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "assets.py"

_spec = importlib.util.spec_from_file_location("edge_assets_tool", TOOL)
assert _spec is not None and _spec.loader is not None
tool: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)
import asset_model  # noqa: E402  (tools/assets/, put on sys.path by the tool)
import asset_sources  # noqa: E402
from asset_common import AssetError, dir_writable  # noqa: E402

MANIFEST: Dict[str, Any] = tool.load_manifest()


@pytest.fixture(autouse=True)
def no_network(monkeypatch: Any) -> None:
    """These tests must never download or install: only file:// URLs, no apt-get or pip steps."""
    real_download = asset_sources.download

    def local_only(url: str, dest: Path) -> None:
        if not url.startswith("file:"):
            raise AssertionError(f"a unit test tried to download {url}")
        real_download(url, dest)

    def no_steps(cmd: Any, what: str, cwd: Any = None) -> None:
        raise AssertionError(f"a unit test tried to run: {what}")

    monkeypatch.setattr(asset_sources, "download", local_only)
    monkeypatch.setattr(asset_sources, "run_step", no_steps)


def make_dir(root: Path, assets: Any, video: Any = "link", model: Any = "link") -> Path:
    """An assets directory: each file linked to the real one, or given bytes, or absent (None)."""
    for kind, real in (("video", assets.video), ("model", assets.model)):
        dest = root / MANIFEST[kind]["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        content = video if kind == "video" else model
        if content == "link":
            dest.symlink_to(real)
        elif content is not None:
            dest.write_bytes(content)
    return root


def run_verify(root: Path, capsys: Any) -> List[str]:
    rc = tool.main(["-q", "--dir", str(root), "verify"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    return [str(rc), *lines]


def test_verify_accepts_the_real_assets(assets: Any, capsys: Any) -> None:
    rc, video, model = run_verify(assets.root, capsys)
    assert rc == "0"
    assert video.startswith("video ok") and "identical (sha256 45cddc9490be" in video
    assert model.startswith("model ok") and "identical (sha256 bb5952c166e0" in model


def test_truncated_video_is_rejected_by_size(assets: Any, tmp_path: Path, capsys: Any) -> None:
    root = make_dir(tmp_path, assets, video=assets.video.read_bytes()[: 1 << 20])
    rc, video, model = run_verify(root, capsys)
    assert rc == "1"
    assert video.startswith("video BAD") and "1,048,576 bytes, expected 8,131,690" in video
    assert "rebuild --video" in video
    assert model.startswith("model ok")  # identical by sha256: no frame needed


def test_corrupted_video_of_the_right_size_is_rejected_by_sha(assets: Any, tmp_path: Path, capsys: Any) -> None:
    data = bytearray(assets.video.read_bytes())
    data[4_000_000:4_000_100] = b"\0" * 100
    rc, video, _ = run_verify(make_dir(tmp_path, assets, video=bytes(data)), capsys)
    assert rc == "1" and "video BAD" in video and "damaged or another file" in video


def test_missing_assets_are_named(tmp_path: Path, assets: Any, capsys: Any) -> None:
    rc, video, model = run_verify(make_dir(tmp_path, assets, video=None, model=None), capsys)
    assert rc == "1"
    assert video.endswith("missing (fix: python tools/assets.py ensure)")
    assert model.startswith("model BAD") and "missing" in model


def test_truncated_model_is_rejected(assets: Any, tmp_path: Path, capsys: Any) -> None:
    root = make_dir(tmp_path, assets, model=assets.model.read_bytes()[:1_000_000])
    rc, _, model = run_verify(root, capsys)
    assert rc == "1"
    assert "onnxruntime cannot run the model" in model and "INVALID_PROTOBUF" in model


def test_model_with_damaged_weights_fails_the_fingerprint(assets: Any, tmp_path: Path, capsys: Any) -> None:
    data = bytearray(assets.model.read_bytes())
    mid = len(data) // 2  # inside a weight tensor: the file still loads
    data[mid : mid + 65536] = b"\x7f" * 65536
    rc, _, model = run_verify(make_dir(tmp_path, assets, model=bytes(data)), capsys)
    assert rc == "1"
    assert "outputs on frame 100 differ from the fingerprint" in model


def test_byte_different_but_equal_model_is_functionally_equivalent(assets: Any, tmp_path: Path, capsys: Any) -> None:
    # Appending a ModelProto doc_string field (0x32: number 6, length-delimited) changes the bytes only.
    note = b"rebuilt"
    data = assets.model.read_bytes() + bytes([0x32, len(note)]) + note
    rc, _, model = run_verify(make_dir(tmp_path, assets, model=data), capsys)
    assert rc == "0", model
    assert "functionally equivalent" in model and "13 detections" in model


def test_the_reference_model_reproduces_the_recorded_fingerprint(assets: Any) -> None:
    spec = MANIFEST["fingerprint"]
    measured = asset_model.fingerprint(assets.model, assets.video, spec)
    assert asset_model.compare(measured, spec["expected"]) == []
    persons = [d for d in measured["detections"] if d[0] == 0]
    assert 3 <= len(persons) <= 11  # the README: 3-11 persons a frame on this video

    shifted = json.loads(json.dumps(spec["expected"]))
    shifted["detections"][0][2] += 20.0  # one box moved by 20 px
    assert asset_model.compare(measured, shifted)[0].startswith("no detection matches class 0")
    fewer = json.loads(json.dumps(spec["expected"]))
    fewer["detections"].pop()
    assert asset_model.compare(measured, fewer) == ["13 detections instead of 12"]
    scaled = json.loads(json.dumps(spec["expected"]))
    scaled["outputs"]["Identity_3:0"]["mean_abs"] *= 1.01
    assert asset_model.compare(measured, scaled) == [
        f"Identity_3:0 mean_abs {measured['outputs']['Identity_3:0']['mean_abs']} instead of "
        f"{scaled['outputs']['Identity_3:0']['mean_abs']}"
    ]


def test_default_directory(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGE_ASSETS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert tool.assets_root() == tmp_path / "home" / ".cache" / "edge-detector" / "assets"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    assert tool.assets_root() == tmp_path / "home" / ".cache" / "edge-detector" / "assets"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tool.assets_root() == tmp_path / "xdg" / "edge-detector" / "assets"
    monkeypatch.setenv("EDGE_ASSETS", "")
    assert tool.assets_root() == tmp_path / "xdg" / "edge-detector" / "assets"
    monkeypatch.setenv("EDGE_ASSETS", str(tmp_path / "env"))
    assert tool.assets_root() == tmp_path / "env"
    assert tool.assets_root(str(tmp_path / "flag")) == tmp_path / "flag"


def test_a_folder_without_write_bits_counts_as_read_only(tmp_path: Path) -> None:
    assert dir_writable(tmp_path / "not" / "yet")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o550)  # r-x: no write bits
    try:
        assert not dir_writable(locked)
        assert not dir_writable(locked / "models")
    finally:
        locked.chmod(0o755)


def test_ensure_on_a_read_only_valid_folder_changes_nothing(assets: Any, tmp_path: Path, capsys: Any) -> None:
    root = make_dir(tmp_path / "ro", assets)
    for d in (root / "models", root / "media", root):
        d.chmod(0o555)
    try:
        assert tool.main(["-q", "--dir", str(root), "ensure"]) == 0
    finally:
        for d in (root, root / "models", root / "media"):
            d.chmod(0o755)
    out = capsys.readouterr().out
    assert out.count(" ok ") == 2


def test_ensure_on_a_read_only_incomplete_folder_uses_the_cache(
    assets: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    root = make_dir(tmp_path / "ro", assets, video=None)
    cache = tmp_path / "xdg" / "edge-detector" / "assets"
    make_dir(cache, assets, model=None)  # the cache already has the video: no download
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for d in (root / "models", root / "media", root):
        d.chmod(0o555)
    try:
        rc = tool.main(["-q", "--dir", str(root), "ensure"])
    finally:
        for d in (root, root / "models", root / "media"):
            d.chmod(0o755)
    assert rc == 3
    assert f"use EDGE_ASSETS={cache}" in capsys.readouterr().out
    assert tool.verify_dir(cache, MANIFEST)[1].ok and not (root / "media" / "vtest.avi").exists()


def build_deb(where: Path, version: str, payload: Path) -> Path:
    """A real opencv-doc .deb (dpkg-deb --build) holding ``payload`` as the demo video."""
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not installed (Debian's dpkg): cannot build a test package")
    tree = where / f"tree-{version}"
    member = tree / MANIFEST["video"]["deb_member"]
    member.parent.mkdir(parents=True)
    shutil.copyfile(str(payload), str(member))
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        f"Package: opencv-doc\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: test\n test package\n"
    )
    deb = where / f"opencv-doc_{version.replace(':', '%3a')}_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


@pytest.mark.parametrize("with_dpkg", [True, False], ids=["dpkg-deb", "python-ar"])
def test_video_rebuild_from_a_deb(assets: Any, tmp_path: Path, monkeypatch: Any, capsys: Any, with_dpkg: bool) -> None:
    deb = build_deb(tmp_path, "4.6.0+dfsg-12", assets.video)
    if not with_dpkg:
        real_which = shutil.which
        monkeypatch.setattr(asset_sources.shutil, "which", lambda n: None if n == "dpkg-deb" else real_which(n))
    root = tmp_path / "assets"
    rc = tool.main(["-q", "--dir", str(root), "rebuild", "--video", "--deb-url", deb.as_uri()])
    assert rc == 0
    assert capsys.readouterr().out.startswith(f"video ok  {root / 'media' / 'vtest.avi'}: rebuilt: identical")
    assert sorted(p.name for p in (root / "media").iterdir()) == ["vtest.avi"]  # no leftovers


def test_video_from_another_package_version_fails_naming_it(tmp_path: Path) -> None:
    odd = tmp_path / "odd.avi"
    odd.write_bytes(b"not the video")
    deb = build_deb(tmp_path, "1:9.9-1", odd)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(AssetError) as err:
        asset_sources.build_video(MANIFEST["video"], tmp_path / "out.avi", work, deb.as_uri())
    text = str(err.value)
    assert "opencv-doc 1:9.9-1" in text and "expected 45cddc9490be" in text and "--deb-url https://" in text


def test_cli_help_and_one_line_errors(tmp_path: Path) -> None:
    env = {**os.environ, "EDGE_ASSETS": str(tmp_path)}
    shown = subprocess.run([sys.executable, str(TOOL), "--help"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and "ensure" in shown.stdout and "EDGE_ASSETS" in shown.stdout
    bad = subprocess.run([sys.executable, str(TOOL), "-q", "verify"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert [ln.split()[:2] for ln in bad.stdout.splitlines()] == [["video", "BAD"], ["model", "BAD"]]
    ro = subprocess.run(
        [sys.executable, str(TOOL), "-q", "--dir", str(tmp_path / "x"), "record-fingerprint"],
        capture_output=True, text=True, env=env,
    )
    assert ro.returncode == 1 and ro.stderr.startswith("error: ") and len(ro.stderr.splitlines()) == 1

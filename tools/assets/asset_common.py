"""What the demo-asset modules share: the user-error type, hashing and atomic file placement."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"


class AssetError(Exception):
    """A problem the user can fix: one line naming it, and a hint naming the fix."""

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def load_manifest(path: Path = MANIFEST) -> Dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: Dict[str, Any] = json.load(f)
    return data


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def temp_sibling(dest: Path) -> Path:
    """An empty temporary file next to ``dest`` (same file system, so ``os.replace`` is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=str(dest.parent))
    os.close(fd)
    return Path(name)


def dir_writable(path: Path) -> bool:
    """Whether files can be created under ``path`` (or the nearest existing folder above it).

    A folder with no write permission bits counts as read-only even for root, who could
    write there anyway: such a folder (a shared asset store) is meant to stay as it is.
    """
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    if not probe.is_dir() or probe.stat().st_mode & 0o222 == 0:
        return False
    try:
        with tempfile.TemporaryFile(dir=str(probe)):
            pass
    except OSError:
        return False
    return True

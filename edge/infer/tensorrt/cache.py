"""The engine cache: one engine file per key in a state directory, with a JSON sidecar.

The key (:class:`EngineKey`) covers everything an engine depends on: the ONNX file's
sha256, precision, batch/shape profile, DLA core, the INT8 source's hash (calibration
cache or Q/DQ model), per-layer precisions, the TensorRT version and the GPU (name and
compute capability). Its digest names the file, so a changed model, precision or
TensorRT never reuses an old engine. The sidecar ``<engine>.json`` records the key, the
build settings and the engine's sha256; it is written last, after the engine, so an
engine without a valid sidecar is incomplete and is rebuilt.

Writes are atomic (temporary file, fsync, rename, fsync of the directory): a crash or
power cut mid-build leaves no half engine. Builds of one key are serialised across
processes with an exclusive ``flock`` on ``<engine>.lock``: the second process waits and
then loads what the first one built.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from edge.errors import HardwareError
from edge.infer.base import Progress, file_sha256

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Build with :func:`engine_key`."""

    model_sha256: str
    precision: str
    batch: int
    shapes: str  # input shape profile, e.g. "input:1x3x416x416" or "images:1..4x3x640x640"
    dla_core: Optional[int]
    int8_source_sha256: Optional[str]  # calibration cache or Q/DQ model
    layer_precisions: str  # canonical "layer=fp32,..." or ""
    tensorrt: str  # full version, patch level included
    gpu: str  # device name
    compute_capability: str  # "8.7"
    model_name: str = field(default="model", compare=False)  # for the file name only

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("model_name")
        return d

    @property
    def digest(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def filename(self) -> str:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model_name)[:40] or "model"
        dla = f"-dla{self.dla_core}" if self.dla_core is not None else ""
        return f"{stem}-{self.precision}-b{self.batch}{dla}-{self.digest[:16]}.engine"

    def differences(self, other: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
        """Fields whose value differs from ``other`` (a sidecar's key): name → (theirs, ours)."""
        ours = self.as_dict()
        return {k: (other.get(k), v) for k, v in ours.items() if other.get(k) != v}


def engine_key(
    model_path: Path,
    precision: str,
    *,
    batch: int,
    shapes: str,
    tensorrt: str,
    gpu: str,
    compute_capability: Tuple[int, int],
    dla_core: Optional[int] = None,
    calibration_cache: Optional[Path] = None,
    qdq_model: Optional[Path] = None,
    layer_precisions: Optional[Mapping[str, str]] = None,
) -> EngineKey:
    """The cache key of an engine built from ``model_path`` with these settings."""
    int8_source = qdq_model or calibration_cache
    layers = ",".join(f"{k}={v}" for k, v in sorted((layer_precisions or {}).items()))
    return EngineKey(
        model_sha256=file_sha256(Path(model_path)),
        precision=precision,
        batch=int(batch),
        shapes=shapes,
        dla_core=dla_core,
        int8_source_sha256=file_sha256(Path(int8_source)) if int8_source else None,
        layer_precisions=layers,
        tensorrt=tensorrt,
        gpu=gpu,
        compute_capability=f"{compute_capability[0]}.{compute_capability[1]}",
        model_name=Path(model_path).stem,
    )


@contextlib.contextmanager
def file_lock(path: Path, waiting: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (created if needed); ``waiting()`` is called once if we block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)  # novermin (int flags, not a type union)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # novermin (int flags)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(str(path.parent), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class CachedEngine:
    """An engine from the cache: its bytes, file, and whether it was built just now (and why)."""

    data: bytes
    path: Path
    built: bool
    reason: str = ""


class EngineCache:
    """Engine files under ``directory``; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def path_for(self, key: EngineKey) -> Path:
        return self.dir / key.filename

    @staticmethod
    def sidecar(path: Path) -> Path:
        return path.with_name(path.name + ".json")

    def load(self, key: EngineKey) -> Tuple[Optional[bytes], str]:
        """(engine bytes, "") when a complete engine for ``key`` is cached, else (None, why not)."""
        path = self.path_for(key)
        meta_path = self.sidecar(path)
        if not path.exists():
            return None, self._why_missing(key)
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            return None, f"{path.name} has no sidecar (an interrupted build)"
        except (OSError, ValueError) as exc:
            return None, f"its sidecar {meta_path.name} is unreadable ({exc})"
        if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
            return None, f"its sidecar {meta_path.name} has an unknown format"
        diff = key.differences(meta.get("key") or {})
        if diff:
            return None, "it was built for other settings: " + _describe(diff)
        data = path.read_bytes()
        if len(data) != meta.get("size"):
            return None, f"{path.name} is truncated ({len(data)} of {meta.get('size')} bytes)"
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            return None, f"{path.name} is corrupt (sha256 differs from its sidecar)"
        return data, ""

    def store(self, key: EngineKey, data: bytes, settings: Optional[Dict[str, Any]] = None) -> Path:
        """Write the engine, then its sidecar (the commit marker), both atomically."""
        path = self.path_for(key)
        meta = {
            "format": SIDECAR_FORMAT,
            "key": key.as_dict(),
            "settings": settings or {},
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write(path, data)
        atomic_write(self.sidecar(path), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        return path

    def invalidate(self, key: EngineKey, reason: str) -> None:
        """Remove a cached engine that turned out unusable (e.g. TensorRT refused to load it)."""
        path = self.path_for(key)
        log.warning("discarding engine %s: %s", path, reason)
        for p in (self.sidecar(path), path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def get_or_build(
        self,
        key: EngineKey,
        build: Callable[[], bytes],
        *,
        settings: Optional[Dict[str, Any]] = None,
        progress: Optional[Progress] = None,
        rebuild_reason: Optional[str] = None,
    ) -> CachedEngine:
        """Load the engine for ``key``, or build and store it (one builder per key across processes).

        ``rebuild_reason`` forces a rebuild (the cached engine failed to deserialize).
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HardwareError(f"cannot create the engine directory {self.dir}: {exc.strerror}",
                                "set backend.tensorrt.engine_dir or state_dir to a writable directory") from None
        path = self.path_for(key)
        if rebuild_reason is None:
            data, why = self.load(key)
            if data is not None:
                log.info("loaded cached engine %s", path)
                return CachedEngine(data, path, False)

        def waiting() -> None:
            log.info("another process is building %s; waiting for it", path.name)
            if progress:
                progress(f"waiting for another process building {path.name}", None)

        with file_lock(path.with_name(path.name + ".lock"), waiting):
            if rebuild_reason is None:
                data, why = self.load(key)  # the other process may have built it meanwhile
                if data is not None:
                    log.info("loaded engine %s built by another process", path)
                    return CachedEngine(data, path, False)
            else:
                why = rebuild_reason
            log.warning("building TensorRT engine %s: %s", path.name, why)
            data = build()
            self.store(key, data, settings)
            log.info("stored engine %s (%.1f MB)", path, len(data) / 1e6)
            return CachedEngine(data, path, True, why)

    def _why_missing(self, key: EngineKey) -> str:
        """Why no engine matches: the closest foreign engine of the same model, or 'none yet'."""
        ours = key.as_dict()
        best: Optional[Tuple[int, Dict[str, Tuple[Any, Any]]]] = None
        for meta_path in sorted(self.dir.glob("*.engine.json")):
            try:
                theirs = json.loads(meta_path.read_text()).get("key") or {}
            except (OSError, ValueError, AttributeError):
                continue
            if theirs.get("model_sha256") != ours["model_sha256"]:
                continue
            diff = key.differences(theirs)
            if not diff:
                return f"{meta_path.name[: -len('.json')]} is missing (only its sidecar is left)"
            if best is None or len(diff) < best[0]:
                best = (len(diff), diff)
        if best is None:
            return "no engine built yet for this model"
        return "the cached engine of this model was built for " + _describe(best[1])


def _describe(diff: Dict[str, Tuple[Any, Any]]) -> str:
    names = {"tensorrt": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability",
             "model_sha256": "model", "int8_source_sha256": "INT8 calibration/Q-DQ model"}
    parts = []
    for k, (theirs, ours) in sorted(diff.items()):
        label = names.get(k, k.replace("_", " "))
        if k.endswith("sha256"):
            parts.append(f"another {label}")
        else:
            parts.append(f"{label} {theirs} (now {ours})")
    return ", ".join(parts)

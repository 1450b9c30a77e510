#!/usr/bin/env python3
"""Find, verify and rebuild the demo assets: the NanoDet-g model and the vtest video.

    python tools/assets.py ensure                   verify; rebuild what is missing or bad
    python tools/assets.py verify                   check only: exit 1, one line per problem
    python tools/assets.py rebuild [--model|--video]
    python tools/assets.py record-fingerprint [--write]

The assets directory is $EDGE_ASSETS (or --dir), laid out as models/nanodet_g_416_coco.onnx
and media/vtest.avi; by default $XDG_CACHE_HOME/edge-detector/assets (~/.cache/...). The
video must match its sha256; the model is "identical" when its sha256 matches, otherwise
"functionally equivalent" when its outputs on a known video frame match the fingerprint in
tools/assets/manifest.json. Sources and conversion: tools/assets/*.md and docs/assets.md.
Exit codes: 0 ok, 1 a problem (one line each), 2 usage, 3 rebuilt into the default cache
directory because the assets directory is read-only (set EDGE_ASSETS as printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent / "assets"))

from asset_common import MANIFEST, AssetError, dir_writable, load_manifest, sha256_file, temp_sibling

log = logging.getLogger("assets")

EXIT_OK, EXIT_PROBLEM, EXIT_ELSEWHERE = 0, 1, 3
KINDS = ("video", "model")  # the video first: the model's functional check reads it


class Check:
    """The verdict on one asset file."""

    def __init__(self, kind: str, path: Path, ok: bool, detail: str) -> None:
        self.kind, self.path, self.ok, self.detail = kind, path, ok, detail

    def line(self) -> str:
        return f"{self.kind:<5} {'ok ' if self.ok else 'BAD'} {self.path}: {self.detail}"


def default_root() -> Path:
    """``$XDG_CACHE_HOME/edge-detector/assets``, with ``~/.cache`` when XDG_CACHE_HOME is unset or relative."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "edge-detector" / "assets"


def assets_root(explicit: Optional[str] = None) -> Path:
    """The assets directory: ``explicit`` (--dir), else $EDGE_ASSETS, else :func:`default_root`."""
    chosen = explicit or os.environ.get("EDGE_ASSETS", "")
    return Path(chosen).expanduser() if chosen else default_root()


def verify_video(path: Path, manifest: Dict[str, Any]) -> Check:
    spec = manifest["video"]
    if not path.is_file():
        return Check("video", path, False, "missing (fix: python tools/assets.py ensure)")
    size = path.stat().st_size
    if size != spec["size"]:
        return Check(
            "video", path, False,
            f"{size:,} bytes, expected {spec['size']:,}: truncated or another file "
            "(fix: python tools/assets.py rebuild --video)",
        )
    sha = sha256_file(path)
    if sha != spec["sha256"]:
        return Check(
            "video", path, False,
            f"sha256 {sha[:12]}..., expected {spec['sha256'][:12]}...: damaged or another file "
            "(fix: python tools/assets.py rebuild --video)",
        )
    return Check("video", path, True, f"identical (sha256 {sha[:12]}..., {size:,} bytes)")


def verify_model(path: Path, video: Optional[Path], manifest: Dict[str, Any]) -> Check:
    """Identical by sha256, else functionally equivalent by the fingerprint on ``video``."""
    import asset_model

    spec = manifest["model"]
    fix = "(fix: python tools/assets.py rebuild --model)"
    if not path.is_file():
        return Check("model", path, False, "missing (fix: python tools/assets.py ensure)")
    sha = sha256_file(path)
    if sha == spec["sha256"]:
        return Check("model", path, True, f"identical (sha256 {sha[:12]}..., {spec['size']:,} bytes)")
    if video is None:
        return Check("model", path, False, f"sha256 {sha[:12]}... is not the reference's and the video, "
                     "needed for its functional check, is not valid (fix: python tools/assets.py ensure)")
    fp = manifest["fingerprint"]
    try:
        measured = asset_model.fingerprint(path, video, fp)
    except AssetError as exc:
        return Check("model", path, False, f"{exc.message} {fix}")
    problems = asset_model.compare(measured, fp["expected"])
    if problems:
        return Check("model", path, False, f"outputs on frame {fp['frame']} differ from the fingerprint: "
                     f"{'; '.join(problems[:3])} {fix}")
    return Check("model", path, True, f"functionally equivalent (sha256 {sha[:12]}... is not the reference's; "
                 f"frame {fp['frame']} gives the recorded outputs and {len(measured['detections'])} detections)")


def verify_dir(root: Path, manifest: Dict[str, Any]) -> List[Check]:
    video = verify_video(root / manifest["video"]["path"], manifest)
    model = verify_model(root / manifest["model"]["path"], video.path if video.ok else None, manifest)
    return [video, model]


def rebuild_one(root: Path, kind: str, manifest: Dict[str, Any], args: argparse.Namespace) -> Check:
    """Build ``kind`` from its public source in a throwaway folder, check it, then move it into place."""
    import asset_sources

    dest = root / manifest[kind]["path"]
    part = temp_sibling(dest)
    start = time.monotonic()
    log.info("rebuilding the %s into %s", kind, dest)
    try:
        with tempfile.TemporaryDirectory(prefix=f"edge-assets-{kind}-") as work:
            if kind == "video":
                asset_sources.build_video(manifest["video"], part, Path(work), getattr(args, "deb_url", None))
                check = verify_video(part, manifest)
            else:
                asset_sources.build_model(manifest["model"], part, Path(work), getattr(args, "python", None))
                video = verify_video(root / manifest["video"]["path"], manifest)
                check = verify_model(part, video.path if video.ok else None, manifest)
        if not check.ok:
            raise AssetError(f"the rebuilt {kind} fails its check: {check.detail}", "report it with this output")
        os.chmod(str(part), 0o644)
        os.replace(str(part), str(dest))
    finally:
        if part.exists():
            part.unlink()
    log.info("rebuilt the %s in %.0f s", kind, time.monotonic() - start)
    return Check(kind, dest, True, f"rebuilt: {check.detail}")


def cmd_verify(root: Path, manifest: Dict[str, Any], args: argparse.Namespace) -> int:
    checks = verify_dir(root, manifest)
    for c in checks:
        print(c.line())
    return EXIT_OK if all(c.ok for c in checks) else EXIT_PROBLEM


def cmd_ensure(root: Path, manifest: Dict[str, Any], args: argparse.Namespace) -> int:
    checks = verify_dir(root, manifest)
    bad = [c for c in checks if not c.ok]
    if not bad:
        for c in checks:
            print(c.line())
        return EXIT_OK
    if all(dir_writable(c.path.parent) for c in bad):
        for kind in KINDS:  # re-checked in order: a rebuilt video can make the model check pass
            current = verify_dir(root, manifest)[KINDS.index(kind)]
            if not current.ok:
                log.info("%s", current.line())
                current = rebuild_one(root, kind, manifest, args)
            print(current.line())
        return EXIT_OK
    return _ensure_elsewhere(root, checks, manifest, args)


def _ensure_elsewhere(root: Path, checks: Sequence[Check], manifest: Dict[str, Any], args: argparse.Namespace) -> int:
    alt = default_root()
    if alt.resolve() == root.resolve() or not dir_writable(alt):
        raise AssetError(f"{root} is read-only and lacks valid assets", "set EDGE_ASSETS to a writable directory")
    log.info("%s is read-only: putting the assets into %s", root, alt)
    for c in checks:
        dest = alt / manifest[c.kind]["path"]
        if c.ok and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(str(c.path), str(dest))
    if cmd_ensure(alt, manifest, args) != EXIT_OK:
        return EXIT_PROBLEM
    print(f"the assets are in {alt}, not in the read-only {root}: use EDGE_ASSETS={alt}")
    return EXIT_ELSEWHERE


def cmd_rebuild(root: Path, manifest: Dict[str, Any], args: argparse.Namespace) -> int:
    kinds = [k for k in KINDS if getattr(args, k)] or list(KINDS)
    for kind in kinds:
        if not dir_writable((root / manifest[kind]["path"]).parent):
            raise AssetError(f"{root} is read-only", "pass --dir or set EDGE_ASSETS to a writable directory")
    for kind in kinds:
        print(rebuild_one(root, kind, manifest, args).line())
    return EXIT_OK


def cmd_record(root: Path, manifest: Dict[str, Any], args: argparse.Namespace) -> int:
    """Record the fingerprint from the reference model (sha256 must match) into the manifest."""
    import asset_model

    model, video = root / manifest["model"]["path"], root / manifest["video"]["path"]
    if not verify_video(video, manifest).ok or not model.is_file() or sha256_file(model) != manifest["model"]["sha256"]:
        raise AssetError(f"{root} does not hold the reference assets", "record from the reference copies only")
    manifest["fingerprint"]["expected"] = asset_model.fingerprint(model, video, manifest["fingerprint"])
    text = json.dumps(manifest, indent=2) + "\n"
    if args.write:
        MANIFEST.write_text(text, encoding="utf-8")
        log.info("wrote %s", MANIFEST)
    else:
        print(json.dumps(manifest["fingerprint"]["expected"], indent=2))
    return EXIT_OK


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tools/assets.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--dir", help="assets directory (default: $EDGE_ASSETS, else the cache directory)")
    p.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors on stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    build_opts = argparse.ArgumentParser(add_help=False)
    build_opts.add_argument("--deb-url", help="fetch opencv-doc from this .deb URL instead of apt-get download")
    build_opts.add_argument("--python", help="Python 3.9-3.11 for the throwaway converter virtualenv")
    for name, func, text in (
        ("ensure", cmd_ensure, "verify, and rebuild what is missing or bad"),
        ("verify", cmd_verify, "verify only; exit 1 with one line per problem"),
        ("rebuild", cmd_rebuild, "rebuild from the public sources (both unless --model/--video)"),
        ("record-fingerprint", cmd_record, "compute the model fingerprint on the reference assets"),
    ):
        parents = [build_opts] if name in ("ensure", "rebuild") else []
        sp = sub.add_parser(name, help=text, description=text, parents=parents)
        sp.set_defaults(func=func)
        if name == "rebuild":
            sp.add_argument("--model", action="store_true", help="rebuild the model only")
            sp.add_argument("--video", action="store_true", help="rebuild the video only")
        if name == "record-fingerprint":
            sp.add_argument("--write", action="store_true", help="store it in tools/assets/manifest.json")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="[assets] %(message)s", stream=sys.stderr
    )
    try:
        return int(args.func(assets_root(args.dir), load_manifest(), args))
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

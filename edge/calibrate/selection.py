"""Choosing a candidate under an accuracy budget, and writing the choice into the config.

The rule: among candidates whose mAP50-95 drop against FP32 is within ``max_drop``
(points, i.e. 0..100 scale) and whose speed was measured on the target runtime, take the
lowest median latency (ties: the more accurate). A candidate timed somewhere else (the CPU
figure of a TensorRT-bound model) is never chosen: its speed says nothing about the target.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from edge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """What selection needs of a candidate's result."""

    name: str
    drop: Optional[float]  # mAP50-95 points lost against FP32; None when not measured
    latency_ms: Optional[float]  # median; None when not measured
    runtime: Optional[str]  # where the latency was measured


def within(drop: Optional[float], max_drop: float) -> bool:
    return drop is not None and drop <= max_drop + 1e-9


def select(results: Sequence[Scored], max_drop: float, target: str) -> Tuple[Optional[Scored], str]:
    """The fastest candidate within the budget measured on ``target``, and why (one line)."""
    timed = [r for r in results if r.latency_ms is not None and r.runtime == target]
    if not timed:
        where = sorted({r.runtime for r in results if r.runtime})
        return None, (f"no candidate was timed on the target ({target}); speeds here are from "
                      f"{', '.join(where) or 'nowhere'}: run the sweep where {target} runs")
    ok = [r for r in timed if within(r.drop, max_drop)]
    if not ok:
        best = min((r for r in timed if r.drop is not None), key=lambda r: r.drop or 0.0, default=None)
        extra = f" (the closest, {best.name}, loses {best.drop:.2f})" if best is not None else ""
        return None, f"no candidate stays within {max_drop:g} mAP50-95 points{extra}"
    ok.sort(key=lambda r: (r.latency_ms, r.drop))
    pick = ok[0]
    return pick, f"{pick.name}: fastest on {target} within {max_drop:g} points (drop {pick.drop:.2f})"


def backend_settings(runtime: str, precision: str, qdq_model: Optional[Path] = None,
                     calibration_cache: Optional[Path] = None, layer_precisions: Optional[Dict[str, str]] = None
                     ) -> Dict[str, Any]:
    """The ``backend:`` keys that make the daemon run a candidate (others are left as they are)."""
    out: Dict[str, Any] = {"precision": "int8" if precision in ("int8", "mixed") else precision}
    trt: Dict[str, Any] = {}
    if qdq_model is not None:
        trt["qdq_model"] = str(qdq_model)
    if calibration_cache is not None:
        trt["calibration_cache"] = str(calibration_cache)
    trt["layer_precisions"] = dict(layer_precisions) if layer_precisions else None
    if out["precision"] != "int8":
        trt = {"layer_precisions": None}
    out["tensorrt"] = trt
    if runtime in ("onnxruntime", "tensorrt"):
        out["kind"] = runtime
    return out


def apply_to_config(path: Path, settings: Dict[str, Any]) -> Path:
    """Write ``settings`` into the ``backend:`` section of the YAML file; keeps ``<file>.bak``.

    The result is validated with the daemon's own loader before it replaces the file.
    PyYAML does not keep comments: the backup does.
    """
    import yaml

    from edge.config.load import parse_config

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path} to apply the selection: {exc}", "check the file") from None
    backend = data.setdefault("backend", {}) or {}
    data["backend"] = backend
    for key, value in settings.items():
        if key == "tensorrt":
            trt = backend.setdefault("tensorrt", {}) or {}
            backend["tensorrt"] = trt
            for k, v in value.items():
                if v is None:
                    trt.pop(k, None)
                else:
                    trt[k] = _relative(v, path.parent) if k in ("qdq_model", "calibration_cache") else v
            if not trt:
                backend.pop("tensorrt")
        else:
            backend[key] = value
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    parse_config(text, str(path), path.resolve().parent)  # refuse to write a config the daemon rejects
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    log.info("wrote the selection into %s (previous file kept as %s)", path, backup.name)
    return backup


def _relative(value: Any, base: Path) -> str:
    p = Path(value)
    try:
        return str(p.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(p.resolve())


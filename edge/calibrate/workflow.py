"""The calibration step: statistics, range choice, sensitivity, and the files it writes.

``calibrate_model`` takes preprocessed calibration batches (from the daemon's own
preprocessing) and the FP32 ONNX model, and produces:

* ``<name>.int8.qdq.onnx``: the explicitly quantized model (every TensorRT version, and
  ONNX Runtime);
* ``calibration.json``: the record (sampling, per-tensor ranges and how each was chosen,
  repairs, the sensitivity ranking that mixed precision uses), so a sweep or a build
  later reuses the calibration instead of redoing it;
* a TensorRT calibration cache, written by :mod:`edge.calibrate.calibrator` (by TensorRT's
  own calibrator where TensorRT runs, or from these ranges for a named TensorRT version).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edge.calibrate import graph, qdq, sensitivity
from edge.calibrate.stats import StatsCollector
from edge.errors import EdgeError
from edge.infer.base import file_sha256

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
RECORD_NAME = "calibration.json"
# Candidate clipping rules per tensor; "auto" keeps, per tensor, the one with the least layer error.
RULES: Dict[str, Tuple[str, float]] = {
    "max": ("max", 0.0),
    "p99.9": ("percentile", 99.9),
    "p99.99": ("percentile", 99.99),
    "p99.999": ("percentile", 99.999),
    "mse": ("mse", 0.0),
    "entropy": ("entropy", 0.0),
}
METHODS = ("auto", *RULES)
Tick = Callable[[int], None]


@dataclass
class CalibrationRecord:
    """What a calibration did and produced; stored as ``calibration.json``."""

    model: str
    model_sha256: str
    source: str
    seed: int
    frames: List[str]
    method: str
    ranges: Dict[str, float]  # activation tensor → amax (symmetric clip value)
    rules: Dict[str, str]  # activation tensor → which rule gave its amax
    all_ranges: Dict[str, float] = field(default_factory=dict)  # every activation (TensorRT cache)
    repairs: List[str] = field(default_factory=list)
    kept_float: List[str] = field(default_factory=list)  # nodes never quantized (non-finite inputs)
    sensitivity: List[Tuple[str, float]] = field(default_factory=list)  # node, relative error; worst first
    qdq_model: Optional[str] = None
    calibration_cache: Optional[str] = None
    cache_note: str = ""
    format: int = RECORD_FORMAT

    def save(self, directory: Path) -> Path:
        path = Path(directory) / RECORD_NAME
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> CalibrationRecord:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EdgeError(f"no calibration record at {path}", "run `edge-calibrate calibrate` first") from None
        except (OSError, ValueError) as exc:
            raise EdgeError(f"cannot read calibration record {path}: {exc}", "calibrate again") from None
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise EdgeError(f"{path} is not a calibration record of this version", "calibrate again")
        data["sensitivity"] = [tuple(x) for x in data.get("sensitivity", [])]
        return cls(**data)

    @property
    def order(self) -> List[str]:
        """Quantized nodes, most sensitive first."""
        return [n for n, _ in self.sensitivity]


def prepare(model_path: Path) -> Tuple[Any, List[str]]:
    """The model as it will be quantized: known non-finite traps repaired, every node named."""
    model = graph.load(model_path)
    notes = graph.fold_neg_inf_pads(model)
    graph.ensure_node_names(model)
    for n in notes:
        log.info("repair: %s", n)
    return model, notes


def calibrate_model(
    model_path: Path,
    batches: Any,
    out_dir: Path,
    *,
    source: str,
    seed: int,
    frames: Sequence[str],
    method: str = "auto",
    probe_frames: int = 32,
    sensitivity_mode: str = "loo",
    distance: Any = None,
    threads: int = 0,
    tick: Optional[Tick] = None,
) -> CalibrationRecord:
    """Calibrate ``model_path`` on ``batches`` and write the Q/DQ model and the record to ``out_dir``.

    ``batches`` is re-iterable with a length (:class:`edge.calibrate.detector.Tensors`): it is
    read twice, once for the statistics and once (every n-th batch) for the layer errors.
    ``sensitivity_mode`` ranks layers for mixed precision: "isolated" (each layer's own INT8
    error, from the same probe pass) or "loo" (``distance`` to FP32 with each layer alone back
    in float; :func:`edge.calibrate.mixed.detection_distance` measures it on detections).
    """
    if method not in METHODS:
        raise EdgeError(f"unknown calibration method {method!r}", f"use one of {', '.join(METHODS)}")
    if not len(batches):
        raise EdgeError("no calibration frames", "give a source with frames and --count > 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, repairs = prepare(model_path)
    names = graph.activations(model)
    stats = qdq.collect_stats(model, batches, names, threads, tick)
    inputs = {t for _, t in graph.quantizable_nodes(model)}
    bad = stats.nonfinite()
    kept_float = []
    for node, tensor in graph.quantizable_nodes(model):
        if tensor in bad:
            kept_float.append(node)
    for tensor, st in sorted(bad.items()):
        where = "input of a quantized layer: its consumers stay in float" if tensor in inputs else "not quantized"
        log.warning("tensor %s holds inf/NaN on the calibration frames (%d values, range %s..%s): %s",
                    tensor, st.nonfinite, st.lo, st.hi, where)
        repairs.append(f"tensor {tensor!r} holds inf/NaN: {where}")
    candidates = _candidates(stats, [t for t in inputs if t not in bad])
    for node, tensor in graph.quantizable_nodes(model):
        if tensor not in bad and tensor not in candidates:
            kept_float.append(node)
            repairs.append(f"tensor {tensor!r} is always 0 on the calibration frames: {node} stays in float")
    step = max(1, len(batches) // max(1, probe_frames))
    probe = [b for i, b in enumerate(batches) if i % step == 0][:probe_frames]
    errors = sensitivity.layer_errors(model, {t: list(c.values()) for t, c in candidates.items()}, probe, threads)
    chosen = sensitivity.choose_ranges(errors)
    ranges = chosen if method == "auto" else {t: c[method] for t, c in candidates.items() if method in c}
    rules = {t: next(k for k, v in candidates[t].items() if v == a) for t, a in ranges.items()}
    ranking = sensitivity.ranking(errors, ranges)
    qpath = out_dir / f"{Path(model_path).stem}.int8.qdq.onnx"
    qmodel = qdq.quantize(model, qpath, ranges, probe[0], exclude_nodes=kept_float)
    if sensitivity_mode == "loo":
        from edge.calibrate.mixed import rank_layers

        loo = rank_layers(qmodel, model, probe, qdq.qdq_nodes(qmodel), threads, distance=distance)
        ranking = [(n, loo.base_error - e) for n, e in loo.nodes]
    elif sensitivity_mode != "isolated":
        raise EdgeError(f"unknown sensitivity mode {sensitivity_mode!r}", "use isolated or loo")
    all_ranges = {n: float(s.amax("max")) for n, s in stats.stats.items() if s.finite and s.count}
    all_ranges.update(ranges)
    return CalibrationRecord(
        model=str(model_path), model_sha256=file_sha256(Path(model_path)), source=source, seed=seed,
        frames=list(frames), method=method, ranges=ranges, rules=rules, all_ranges=all_ranges,
        repairs=repairs, kept_float=kept_float, sensitivity=[(n, float(e)) for n, e in ranking],
        qdq_model=qpath.name,
    )


def _candidates(stats: StatsCollector, tensors: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Per tensor, the clipping value each rule gives."""
    out: Dict[str, Dict[str, float]] = {}
    for t in tensors:
        st = stats.get(t)
        if st is None or not st.count:
            continue
        values: Dict[str, float] = {}
        for label, (rule, pct) in RULES.items():
            a = float(st.amax(rule, pct))
            if math.isfinite(a) and a > 0:
                values[label] = a
        if values:
            out[t] = values
    return out

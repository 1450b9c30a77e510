"""``edge-calibrate sweep``: candidates → accuracy and speed → mixed precision → selection → report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, List, Optional

from edge.calibrate import report as reports
from edge.calibrate import selection
from edge.calibrate import trt as trt_side
from edge.calibrate.commands import calibrate, load_record, progress_of, sample
from edge.calibrate.labels import Truth, read_labels
from edge.calibrate.sampling import FrameSet, image_set, list_images, read_image
from edge.calibrate.sweep import Candidate, Result, Sweep, SweepOptions, open_onnxruntime
from edge.calibrate.workflow import CalibrationRecord
from edge.config.load import load_config
from edge.config.model import Config
from edge.errors import EXIT_USAGE, EdgeError

log = logging.getLogger(__name__)


def target_of(cfg: Config, requested: str) -> str:
    if requested != "auto":
        return requested
    if cfg.backend.kind != "auto":
        return cfg.backend.kind
    return "tensorrt" if trt_side.available() else "onnxruntime"


def labelled_set(args: argparse.Namespace, labels: List[str]) -> tuple:
    """(evaluation frames, ground truth) from --eval-source + --labels."""
    if not args.eval_source:
        raise EdgeError("--labels needs --eval-source, the folder of the labelled images", "see --help",
                        exit_code=EXIT_USAGE)
    root = Path(args.eval_source)
    files = list_images(root)
    frames = image_set(files, root)
    sizes = {}

    def size_of(key: str) -> tuple:
        if key not in sizes:
            h, w = read_image(root / key).shape[:2]
            sizes[key] = (w, h)
        return sizes[key]

    truth_by_key = read_labels(Path(args.labels), labels, frames.keys, size_of, args.label_format)
    return frames, [truth_by_key[k] for k in frames.keys]


def sweep(args: argparse.Namespace) -> reports.Report:
    cfg = load_config(args.config)
    progress = progress_of(args)
    out = Path(args.out)
    record: Optional[CalibrationRecord] = load_record(cfg, args)
    if record is None:
        progress.note(f"no calibration in {out} for this model: calibrating first")
        record = calibrate(args)
    sets = sample(cfg, args, progress)
    target = target_of(cfg, args.target)
    opts = SweepOptions(max_drop=args.max_map_drop, warmup=args.warmup, runs=args.runs, threads=args.threads,
                        mixed=not args.no_mixed, max_keep=args.max_keep, min_class_objects=args.min_class_objects)
    truth: Optional[List[Truth]] = None
    evaluation: FrameSet = sets.evaluation
    if args.labels:
        from edge.infer.select import load_labels

        evaluation, truth = labelled_set(args, load_labels(cfg.model))
    if len(evaluation) == 0:
        raise EdgeError("no evaluation frames", "set --eval-count above 0 or give --eval-source", exit_code=EXIT_USAGE)
    qdq_model = out / str(record.qdq_model) if record.qdq_model else None
    if args.calibration:
        qdq_model = Path(args.calibration) / str(record.qdq_model)
    cache_dir = Path(args.calibration) if args.calibration else out
    cache = cache_dir / record.calibration_cache if record.calibration_cache else None
    notes: List[str] = []
    sw = Sweep(cfg, evaluation, sets.calibration, opts, truth, progress)
    results: List[Result] = []
    env: Any = None
    try:
        ort = open_onnxruntime(args.threads)
        cands = [Candidate("ort-fp32", "fp32", "onnxruntime", Path(cfg.model.path))]
        if qdq_model is not None:
            cands.append(Candidate("ort-int8-qdq", "int8", "onnxruntime", qdq_model, qdq=True))
        run_trt = target == "tensorrt" and trt_side.available()
        if target == "tensorrt" and not run_trt:
            notes.append("TensorRT is not importable here: only the ONNX Runtime candidates ran, their speed is "
                         "a CPU figure, and nothing is selected for a TensorRT target")
        trt_cands: List[Candidate] = []
        if run_trt:
            env = trt_side.TrtEnv.load(cfg)
            trt_cands = trt_side.candidates(cfg, env, qdq_model, cache)
        for c in cands:
            progress.note(f"candidate {c.name}")
            results.append(_evaluate(sw, c, ort))
        for c in trt_cands:
            progress.note(f"candidate {c.name}")
            results.append(_evaluate(sw, c, trt_side.opener(cfg, env)))
        mixed_info = _mixed(sw, record, results, cfg, out, env, cache, progress) if opts.mixed else {}
        scored = [selection.Scored(r.candidate.name, r.drop, r.speed.median_ms if r.speed else None,
                                   r.speed.runtime if r.speed else None) for r in results]
        pick, reason = selection.select(scored, opts.max_drop, target)
    finally:
        sw.close()
        if env is not None:
            env.close()
    if any(r.speed and r.speed.runtime == "onnxruntime" and r.candidate.qdq for r in results):
        notes.append("ONNX Runtime on the CPU runs TensorRT-style (symmetric) Q/DQ models mostly in float: the "
                     "INT8 CPU latency says nothing about INT8 on a TensorRT device")
    rep = reports.Report(
        mode=sw.mode, model=str(cfg.model.path), source=sets.source if truth is None else str(args.eval_source),
        eval_frames=len(evaluation), calib_frames=len(sets.calibration), seed=args.seed, max_drop=opts.max_drop,
        target=target, reference_map=sw.reference_map, results=results, selected=pick.name if pick else None,
        reason=reason, mixed=mixed_info, notes=notes + record.repairs, class_counts=sw.class_counts,
        left_out=sw.left_out, min_class_objects=sw.min_objects,
    )
    paths = reports.write(rep, out)
    for line in reports.result_rows(results):
        print(line)
    print(f"selected: {rep.selected or 'none'} ({reason})")
    print(f"report:   {paths['md']}, {paths['json']}, {paths['png']}")
    if args.apply:
        if pick is None:
            raise EdgeError("nothing to apply: no candidate was selected", reason)
        chosen = next(r for r in results if r.candidate.name == pick.name)
        c = chosen.candidate
        settings = selection.backend_settings(
            c.runtime, c.precision, qdq_model=Path(c.model).resolve() if c.qdq else None,
            calibration_cache=c.calibration_cache if not c.qdq else None, layer_precisions=c.layer_precisions)
        backup = selection.apply_to_config(Path(args.config), settings)
        print(f"applied:  {c.name} to {args.config} (previous version: {backup})")
    return rep


def _evaluate(sw: Sweep, c: Candidate, opener: Any) -> Result:
    """One candidate; one that cannot be built or run here (DLA limits, a parser refusal) is reported, not fatal."""
    try:
        return sw.evaluate(c, opener)
    except EdgeError as exc:
        log.warning("candidate %s failed: %s", c.name, exc)
        return Result(c, failed=str(exc))


def _mixed(sw: Sweep, record: CalibrationRecord, results: List[Result], cfg: Config, out: Path, env: Any,
           cache: Optional[Path], progress: Any) -> dict:
    """Mixed precision when no INT8 candidate meets the budget; adds its candidates to ``results``."""
    int8 = [r for r in results if r.candidate.precision == "int8"]
    if not int8 or any(r.within_budget for r in int8):
        return {}
    base = next((r for r in int8 if r.candidate.qdq and r.candidate.runtime == "onnxruntime"), None)
    if base is None or not record.order:
        return {"failed": "no Q/DQ model or sensitivity ranking to start mixed precision from"}
    progress.note(f"INT8 misses the budget ({base.drop:.2f} > {sw.options.max_drop:g} points): "
                  "searching the fewest layers to keep in float")
    path = out / f"{Path(cfg.model.path).stem}.mixed.qdq.onnx"
    nodes, steps = sw.search_mixed(Path(base.candidate.model), Path(cfg.model.path), record.order, path)
    info: dict = {"steps": steps, "ranking": record.sensitivity[:10]}
    if nodes is None:
        info["failed"] = "even the most layers tried in float missed the budget"
        return info
    info["kept_float"] = nodes
    mixed_cands = [Candidate("ort-mixed-qdq", "mixed", "onnxruntime", path, qdq=True, kept_float=nodes,
                             note=f"{len(nodes)} layer(s) in float")]
    for c in mixed_cands:
        results.append(_evaluate(sw, c, open_onnxruntime(sw.options.threads)))
    if env is not None:
        tc = [Candidate("trt-mixed-qdq", "mixed", "tensorrt", path, qdq=True, kept_float=nodes)]
        if cache is not None and env.compat.has_calibrators and env.compat.has_layer_precisions:
            tc.append(Candidate("trt-mixed-cache", "mixed", "tensorrt", Path(cfg.model.path), calibration_cache=cache,
                                layer_precisions=trt_side.layer_precisions(nodes), kept_float=nodes))
        for c in tc:
            results.append(_evaluate(sw, c, trt_side.opener(cfg, env)))
    costs = []
    for r in results:
        if r.candidate.precision != "mixed" or r.speed is None:
            continue
        ref = next((x for x in results if x.candidate.precision == "int8" and x.speed is not None
                    and x.candidate.runtime == r.candidate.runtime), None)
        if ref is not None and ref.speed is not None:
            d = r.speed.median_ms - ref.speed.median_ms
            costs.append(f"{r.candidate.name} {d:+.2f} ms ({d / ref.speed.median_ms * 100:+.0f}%) against "
                         f"{ref.candidate.name}")
    info["speed_cost"] = "; ".join(costs)
    return info

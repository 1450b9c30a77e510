"""The three edge-calibrate commands, on parsed arguments: calibrate, build, sweep."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edge.calibrate import trt as trt_side
from edge.calibrate.calibrator import cache_from_ranges
from edge.calibrate.detector import Detector, open_onnx
from edge.calibrate.mixed import detection_distance
from edge.calibrate.progress import Progress
from edge.calibrate.sampling import SampleSets, is_stream, sample_source
from edge.calibrate.workflow import RECORD_NAME, CalibrationRecord, calibrate_model, file_sha256
from edge.config.load import load_config
from edge.config.model import Config, FileSource
from edge.errors import EXIT_USAGE, EdgeError, SourceError
from edge.postprocess.pipeline import Filters
from edge.preprocess.geometry import place

log = logging.getLogger(__name__)


def progress_of(args: argparse.Namespace) -> Progress:
    return Progress(None if not args.quiet else False, notes=not args.quiet)


def source_of(cfg: Config, args: argparse.Namespace) -> Tuple[str, Any]:
    """(source text, camera config or None): --source, else --camera, else the first camera."""
    if args.source:
        return str(args.source), None
    cams = [c for c in cfg.cameras if c.enabled]
    if args.camera:
        cams = [c for c in cfg.cameras if c.name == args.camera]
        if not cams:
            raise EdgeError(f"no camera named {args.camera!r} in the config",
                            f"cameras: {', '.join(c.name for c in cfg.cameras)}", exit_code=EXIT_USAGE)
    if not cams:
        raise EdgeError("no source to sample frames from", "pass --source VIDEO|FOLDER|rtsp://...",
                        exit_code=EXIT_USAGE)
    cam = cams[0]
    if isinstance(cam.source, FileSource):
        return str(cam.source.path), None
    return cam.name, cam


def sample(cfg: Config, args: argparse.Namespace, progress: Progress) -> SampleSets:
    text, camera = source_of(cfg, args)
    if args.count < 1 or args.eval_count < 0:
        raise EdgeError("--count must be at least 1 and --eval-count not negative", "see --help",
                        exit_code=EXIT_USAGE)
    out = Path(args.out)
    with progress.bar("recording frames", args.count + args.eval_count) as tick:
        if camera is not None:
            from edge.calibrate.stream import record_stream

            folder = record_stream(camera, args.count + args.eval_count, args.stride, out, tick)
            return sample_source(str(folder), args.count, args.eval_count, args.seed)
        if not is_stream(text) and not Path(text).expanduser().exists():
            raise SourceError(f"source not found: {text}", "give a video file, a folder of images or an rtsp:// URL")
        return sample_source(text, args.count, args.eval_count, args.seed, args.stride, out, tick)


# ----------------------------------------------------------------------------- calibrate
def calibrate(args: argparse.Namespace) -> CalibrationRecord:
    cfg = load_config(args.config)
    progress = progress_of(args)
    sets = sample(cfg, args, progress)
    out = Path(args.out)
    model = Path(cfg.model.path)
    progress.note(f"calibrating {model.name} on {len(sets.calibration)} frames of {sets.source} "
                  f"(seed {args.seed}, method {args.method})")
    with Detector(cfg, open_onnx(model, args.threads)) as det:
        tensors = det.tensors(sets.calibration)
        g = det.geometry
        same = place(g.width, g.height, g.width, g.height)  # compare in model-input pixels
        low = Filters(score_threshold=min(0.05, cfg.detect.score_threshold), classes=cfg.detect.classes)
        distance = detection_distance(
            lambda out: [det.post(out, i, same, det.filters) for i in range(g.batch)],
            lambda out: [det.post(out, i, same, low) for i in range(g.batch)])
        with progress.bar("activation statistics", len(sets.calibration)) as tick:
            record = calibrate_model(model, tensors, out, source=sets.source, seed=args.seed,
                                     frames=sets.calibration.keys, method=args.method,
                                     probe_frames=args.probe_frames, sensitivity_mode=args.sensitivity,
                                     distance=distance, threads=args.threads, tick=tick)
        cache = out / "calibration.cache"
        if not args.no_tensorrt and trt_side.available():
            env = trt_side.TrtEnv.load(cfg)
            try:
                if env.compat.has_calibrators:
                    with progress.bar("TensorRT calibration", len(sets.calibration)) as tick:
                        _, engine = trt_side.calibrate_cache(cfg, env, tensors, cache, args.algorithm, tick)
                    record.calibration_cache = cache.name
                    record.cache_note = (f"written by TensorRT {env.compat.version_text}'s own {args.algorithm} "
                                         f"calibrator; INT8 engine cached as {engine.name}")
                else:
                    record.cache_note = (f"TensorRT {env.compat.version_text} has no implicit calibration: "
                                         "use the Q/DQ model")
            finally:
                env.close()
        elif args.trt_version:
            data = cache_from_ranges(record.all_ranges, args.trt_version, args.algorithm).to_bytes()
            cache.write_bytes(data)
            record.calibration_cache = cache.name
            record.cache_note = (f"written from edge-calibrate's ranges for TensorRT {args.trt_version} "
                                 f"(header {data.splitlines()[0].decode()}); TensorRT uses it only at that version")
        else:
            record.cache_note = ("no TensorRT here: no calibration cache written (pass --trt-version to write one "
                                 "from these ranges, or calibrate on the device); the Q/DQ model works everywhere")
    path = record.save(out)
    print(f"Q/DQ model:        {out / str(record.qdq_model)}")
    print(f"calibration cache: {out / record.calibration_cache if record.calibration_cache else 'none'}"
          f" ({record.cache_note})")
    print(f"record:            {path}")
    for line in record.repairs:
        print(f"repair:            {line}")
    worst = ", ".join(n for n, _ in record.sensitivity[:5])
    print(f"most sensitive:    {worst}")
    return record


def load_record(cfg: Config, args: argparse.Namespace) -> Optional[CalibrationRecord]:
    """The calibration to reuse: --calibration DIR, else --out when it holds a record for this model."""
    where = Path(args.calibration) if getattr(args, "calibration", None) else Path(args.out)
    path = where / RECORD_NAME
    if not path.exists():
        if getattr(args, "calibration", None):
            raise EdgeError(f"no calibration record in {where}", "run `edge-calibrate calibrate --out DIR` first")
        return None
    record = CalibrationRecord.load(path)
    if record.model_sha256 != file_sha256(Path(cfg.model.path)):
        if getattr(args, "calibration", None):
            raise EdgeError(f"{path} was made for another model than {cfg.model.path}", "calibrate again")
        return None
    return record


# ----------------------------------------------------------------------------- build
def build(args: argparse.Namespace) -> str:
    from edge.calibrate.sweep import Candidate

    cfg = load_config(args.config)
    env = trt_side.TrtEnv.load(cfg)
    try:
        precision = args.precision
        qdq = Path(args.qdq) if args.qdq else None
        cache = Path(args.calibration_cache) if args.calibration_cache else None
        for p in (qdq, cache):
            if p is not None and not p.is_file():
                raise EdgeError(f"file not found: {p}", "check --qdq / --calibration-cache", exit_code=EXIT_USAGE)
        if precision == "best":
            from edge.infer.tensorrt.policy import resolve_precision

            src = "qdq" if qdq else "cache" if cache else None
            precision = resolve_precision("best", env.hardware(), env.compat, int8_source=src)
        layers: Dict[str, str] = {n: "fp16" for n in args.keep_float or []}
        c = Candidate(f"trt-{precision}", "mixed" if layers else precision, "tensorrt",
                      qdq or Path(cfg.model.path), qdq=qdq is not None and precision == "int8",
                      calibration_cache=cache, layer_precisions=layers)
        if layers and c.qdq:
            raise EdgeError("--keep-float applies to implicit INT8 (a calibration cache)",
                            "for a Q/DQ model, use the mixed Q/DQ model the sweep writes")
        runner, path = trt_side.open_engine(cfg, c, env)
        runner.close()
        key = trt_side.engine_key(cfg, c, env)
    finally:
        env.close()
    print(f"engine: {path}")
    print(f"key:    {key.digest}")
    return key.digest


def parse_layers(values: Optional[List[str]]) -> List[str]:
    return [v.strip() for v in values or [] if v.strip()]

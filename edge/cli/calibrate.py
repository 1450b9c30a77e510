"""edge-calibrate: INT8 calibration, engine builds, and the accuracy/speed sweep.

    edge-calibrate calibrate -c edge.yaml [--source VIDEO|FOLDER|rtsp://...] [--count 500]
    edge-calibrate build     -c edge.yaml --precision fp16|int8|fp32|best [--qdq F | --calibration-cache F]
    edge-calibrate sweep     -c edge.yaml [--max-map-drop 1.0] [--labels L --eval-source DIR] [--apply]

A user error prints one line, ``edge-calibrate: error: ...``, and exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from edge.cli.errors import run_main
from edge.errors import EXIT_OK, EXIT_USAGE, EdgeError

PROG = "edge-calibrate"


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line usage EdgeError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise EdgeError(message, f"see {self.prog} --help", exit_code=EXIT_USAGE)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, help="the daemon's YAML config (model, input, labels, detect)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or step notes")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


def _sampling(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("frames")
    g.add_argument("--source", help="video file, folder of images or rtsp:// URL (default: the first camera)")
    g.add_argument("--camera", help="sample the configured camera of this name")
    g.add_argument("--count", type=int, default=500, help="calibration frames (default 500)")
    g.add_argument("--eval-count", type=int, default=100,
                   help="evaluation frames, disjoint from the calibration frames (default 100)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same frames (default 0)")
    g.add_argument("--stride", type=int, default=10, help="streams: keep one frame in this many (default 10)")
    g.add_argument("--out", default="calibration", help="output folder (default ./calibration)")
    g.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default: all cores)")


def _calibration(p: argparse.ArgumentParser) -> None:
    from edge.calibrate.workflow import METHODS

    g = p.add_argument_group("calibration")
    g.add_argument("--method", choices=METHODS, default="auto",
                   help="activation range rule; auto keeps, per layer, the rule with the least INT8 error")
    g.add_argument("--probe-frames", type=int, default=32, help="frames for the per-layer error probe (default 32)")
    g.add_argument("--sensitivity", choices=("loo", "isolated"), default="loo",
                   help="layer ranking for mixed precision: how much closer the detections come to FP32 with each "
                        "layer alone back in float (loo, one short pass per layer; default), or each layer's own "
                        "INT8 error (isolated, faster)")
    g.add_argument("--algorithm", choices=("entropy2", "minmax"), default="entropy2",
                   help="TensorRT implicit calibrator (8.x-10.x; default entropy2)")
    g.add_argument("--trt-version", help="without TensorRT: write a calibration cache for this TensorRT version "
                                         "(e.g. 10.3.0) from edge-calibrate's own ranges")
    g.add_argument("--no-tensorrt", action="store_true", help="do not run TensorRT's calibrator even if present")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="INT8 calibration and the precision/speed trade-off for edge-detector.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    cal = sub.add_parser("calibrate", help="write a Q/DQ INT8 model and a TensorRT calibration cache",
                         description="Sample frames, run them through the daemon's preprocessing, and write an "
                                     "explicitly quantized (Q/DQ) ONNX model, the calibration record and (with "
                                     "TensorRT 8.x-10.x) a TensorRT calibration cache.")
    _common(cal)
    _sampling(cal)
    _calibration(cal)

    b = sub.add_parser("build", help="build one engine into the engine cache and print its key (TensorRT)",
                       description="Build the TensorRT engine for one precision exactly as the daemon would, "
                                   "into its engine cache, and print the cache key.")
    _common(b)
    b.add_argument("--precision", choices=("fp32", "fp16", "int8", "best"), required=True)
    b.add_argument("--qdq", help="INT8 from this Q/DQ model (edge-calibrate calibrate wrote it)")
    b.add_argument("--calibration-cache", help="INT8 from this TensorRT calibration cache (8.x-10.x)")
    b.add_argument("--keep-float", action="append", metavar="LAYER",
                   help="keep this layer in FP16 (implicit INT8; repeat; names from the sweep report)")

    s = sub.add_parser("sweep", help="measure every candidate, pick the fastest within the budget, report",
                       description="Measure accuracy and speed of FP32, FP16, INT8 (cache and Q/DQ) and mixed "
                                   "precision on the same frames; write report.json, report.md and report.png.")
    _common(s)
    _sampling(s)
    _calibration(s)
    g = s.add_argument_group("sweep")
    g.add_argument("--calibration", help="reuse the calibration in this folder (default: --out, else calibrate)")
    g.add_argument("--max-map-drop", type=float, default=1.0,
                   help="budget: mAP50-95 points below FP32 (default 1.0)")
    g.add_argument("--labels", help="ground truth: COCO .json, or a folder of YOLO .txt / Pascal VOC .xml")
    g.add_argument("--label-format", choices=("auto", "coco", "yolo", "voc"), default="auto")
    g.add_argument("--eval-source", help="folder of the labelled evaluation images (with --labels)")
    g.add_argument("--min-class-objects", type=int,
                   help="classes with fewer reference objects stay out of the mean mAP (default: 10 in agreement "
                        "mode, 0 with labels)")
    g.add_argument("--target", choices=("auto", "onnxruntime", "tensorrt"), default="auto",
                   help="runtime whose speed decides (default: the config's backend, else what runs here)")
    g.add_argument("--runs", type=int, default=100, help="timed runs per candidate (default 100)")
    g.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs (default 10)")
    g.add_argument("--no-mixed", action="store_true", help="skip the mixed-precision search")
    g.add_argument("--max-keep", type=int, help="at most this many layers kept in float")
    g.add_argument("--apply", action="store_true", help="write the selected candidate into the config file")
    return p


def _main(argv: Optional[List[str]]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "calibrate":
        from edge.calibrate.commands import calibrate

        calibrate(args)
    elif args.command == "build":
        from edge.calibrate.commands import build

        build(args)
    else:
        from edge.calibrate.sweep_run import sweep

        sweep(args)
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())

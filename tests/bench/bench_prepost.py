"""Per-call cost of CPU preprocessing and post-processing on the real model's outputs.

    EDGE_ASSETS=DIR python tests/bench/bench_prepost.py [--frames 40] [--repeat 20]

Prints the median time per call of each stage on the shared video, and side by side the
implementations they replaced (numpy multiply-then-add preprocessing; NanoDet decoding that
concatenated every score tensor each frame), as ratios. A script, not a test: numbers on
a shared machine vary with its load, so nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List

import cv2
import numpy as np

from edge.config.labels import COCO_LABELS
from edge.infer.onnxruntime import OnnxRuntimeBackend
from edge.postprocess.detect import make_decoder
from edge.postprocess.nanodet import NanoDetDecoder
from edge.postprocess.pipeline import Filters, PostProcessor
from edge.preprocess.base import InputGeometry
from edge.preprocess.cpu import CpuPreprocessor

GEOMETRY = InputGeometry(416, 416, 1, "bgr", "letterbox", True, 114, (103.53, 116.28, 123.675), (57.375, 57.12, 58.395))


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def old_preprocess(image: np.ndarray, out: np.ndarray, pre: CpuPreprocessor) -> None:
    """The first CpuPreprocessor's per-channel maths: multiply, then add (two passes)."""
    p = pre.placement(image.shape[1], image.shape[0])
    resized = cv2.resize(image, (p.new_w, p.new_h), interpolation=cv2.INTER_LINEAR)
    y0 = int(p.pad_y)
    for c in range(3):
        roi = out[0, c, y0 : y0 + p.new_h, : p.new_w]
        np.multiply(resized[:, :, c], np.float32(1 / GEOMETRY.std[c]), out=roi, casting="unsafe")
        roi += np.float32(-GEOMETRY.mean[c] / GEOMETRY.std[c])


def old_decode(dec: NanoDetDecoder, outputs: Dict[str, np.ndarray], thr: np.ndarray) -> None:
    """The first NanoDet decode's thresholding: concatenate all levels, 2-D np.nonzero."""
    scores = np.concatenate([outputs[s][0] for s, _ in dec.levels], 0)
    np.concatenate([outputs[d][0] for _, d in dec.levels], 0)
    np.nonzero(scores >= thr[None, :])


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    assets = Path(os.environ.get("EDGE_ASSETS", Path.home() / ".cache" / "edge-detector" / "assets"))
    cap = cv2.VideoCapture(str(assets / "media" / "vtest.avi"))
    frames: List[np.ndarray] = []
    while len(frames) < args.frames:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    pre = CpuPreprocessor(GEOMETRY)
    scratch = np.empty((1, 3, 416, 416), np.float32)
    rows: Dict[str, List[float]] = {k: [] for k in ("pre", "pre_old", "infer", "post", "decode", "decode_old")}
    with OnnxRuntimeBackend(assets / "models" / "nanodet_g_416_coco.onnx", threads=0) as backend:
        dec = make_decoder(backend.outputs, 416, 416, len(COCO_LABELS))
        assert isinstance(dec, NanoDetDecoder)
        post = PostProcessor(dec, COCO_LABELS)
        filters = Filters()
        thr = post.thresholds(filters)
        for img in frames:
            batch, (placement,) = pre([img])
            outputs = backend.infer(batch)
            rows["pre"].append(median_ms(partial(pre, [img]), args.repeat))
            rows["pre_old"].append(median_ms(partial(old_preprocess, img, scratch, pre), args.repeat))
            rows["infer"].append(median_ms(partial(backend.infer, batch), 3))
            rows["post"].append(median_ms(partial(post, outputs, 0, placement, filters), args.repeat))
            rows["decode"].append(median_ms(partial(dec.decode, outputs, 0, thr), args.repeat))
            rows["decode_old"].append(median_ms(partial(old_decode, dec, outputs, thr), args.repeat))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{len(frames)} frames of vtest.avi (768x576) -> 416x416, median ms per call")
    print(f"  preprocess (CpuPreprocessor)       {med['pre']:7.3f}   old multiply+add {med['pre_old']:7.3f}"
          f"   ratio {med['pre_old'] / med['pre']:.2f}x")
    print(f"  decode (NanoDetDecoder)            {med['decode']:7.3f}   old thresholding {med['decode_old']:7.3f}"
          f"   ratio {med['decode_old'] / med['decode']:.2f}x (old: thresholding alone)")
    print(f"  postprocess (decode+NMS+map back)  {med['post']:7.3f}")
    print(f"  inference (ONNX Runtime CPU)       {med['infer']:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

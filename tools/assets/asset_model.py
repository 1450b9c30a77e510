"""Functional check of the demo model: its outputs on one known frame of the demo video.

A rebuilt model is rarely byte-identical to the reference (the converter names constants
differently on every run), so it is judged by what it computes: the model runs with
onnxruntime (CPU) on frame ``frame`` of the video, plainly resized to the input size, and
the result is reduced to a fingerprint (per-output shape and statistics, plus the decoded
detections after NMS) that is compared with the one in ``manifest.json`` within tolerances.
This decoder is deliberately independent of ``edge/``: it checks the asset, not our code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
from asset_common import AssetError

STAT_RTOL = 1e-3
STAT_ATOL = 1e-4
BOX_IOU = 0.9
SCORE_ATOL = 0.01


def read_frame(video: Path, index: int) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise AssetError(f"OpenCV cannot open {video}", "check the video with `tools/assets.py verify`")
        img = None
        for _ in range(index + 1):
            ok, img = cap.read()
            if not ok:
                raise AssetError(f"{video} ends before frame {index}", "rebuild it: tools/assets.py rebuild --video")
    finally:
        cap.release()
    return np.asarray(img)


def make_input(img: np.ndarray, spec: Dict[str, Any]) -> np.ndarray:
    import cv2

    w, h = spec["size"]
    pixels = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = (pixels - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def run_model(model: Path, x: np.ndarray, input_name: str) -> Dict[str, np.ndarray]:
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    ort_errors = (
        ort_state.Fail,
        ort_state.InvalidArgument,
        ort_state.InvalidGraph,
        ort_state.InvalidProtobuf,
        ort_state.NoSuchFile,
        ort_state.RuntimeException,
    )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        inputs = [i.name for i in session.get_inputs()]
        if inputs != [input_name]:
            raise AssetError(f"the model has inputs {inputs}, expected [{input_name!r}]", "rebuild the model")
        values = session.run(None, {input_name: x})
    except ort_errors as exc:
        text = str(exc).strip().replace(str(model), model.name)
        first = text.splitlines()[0] if text else type(exc).__name__
        raise AssetError(
            f"onnxruntime cannot run the model: {first}", "rebuild it: tools/assets.py rebuild --model"
        ) from exc
    return {n: np.asarray(v) for n, v in zip(names, values)}


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> List[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep: List[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = np.asarray(order, dtype=np.int64)
        if rest.size == 0:
            break
        ov = box_iou(boxes[i], boxes[rest])
        order = [int(j) for j, o in zip(rest, ov) if o < iou]
    return keep


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` [4] with each of boxes ``b`` [N, 4] (x1, y1, x2, y2)."""
    b = np.atleast_2d(b)
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(area > 0, inter / np.maximum(area, 1e-9), 0.0)


def decode(outputs: Dict[str, np.ndarray], spec: Dict[str, Any]) -> List[List[float]]:
    """GFL decoding + per-class NMS: ``[class, score, x1, y1, x2, y2]`` in input pixels, best first."""
    w = spec["size"][0]
    bins = np.arange(spec["reg_max"] + 1, dtype=np.float32)
    all_boxes, all_scores, all_cls = [], [], []
    for score_name, dist_name, stride in spec["levels"]:
        scores, dists = outputs[score_name][0], outputs[dist_name][0]
        cols = -(-w // stride)
        rows, cls = np.nonzero(scores >= spec["score_threshold"])
        if rows.size == 0:
            continue
        d = dists[rows].astype(np.float32).reshape(-1, 4, bins.size)
        d = np.exp(d - d.max(axis=2, keepdims=True))
        dist = (d / d.sum(axis=2, keepdims=True)) @ bins * stride
        cx = (rows % cols + 0.5) * stride
        cy = (rows // cols + 0.5) * stride
        all_boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
        all_scores.append(scores[rows, cls])
        all_cls.append(cls)
    if not all_boxes:
        return []
    boxes, scores, classes = np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_cls)
    dets: List[List[float]] = []
    for c in np.unique(classes):
        idx = np.nonzero(classes == c)[0]
        for k in _nms(boxes[idx], scores[idx], spec["iou_threshold"]):
            i = idx[k]
            dets.append([int(c), round(float(scores[i]), 4), *(round(float(v), 1) for v in boxes[i])])
    dets.sort(key=lambda det: -det[1])
    return dets


def _sig(v: float) -> float:
    return float(f"{v:.6g}")


def fingerprint(model: Path, video: Path, spec: Dict[str, Any]) -> Dict[str, Any]:
    """What the model computes on the known frame, reduced to a small JSON-able summary."""
    x = make_input(read_frame(video, spec["frame"]), spec)
    outputs = run_model(model, x, spec["input"])
    missing = [n for lv in spec["levels"] for n in lv[:2] if n not in outputs]
    if missing:
        raise AssetError(f"the model lacks outputs {missing}", "rebuild it: tools/assets.py rebuild --model")
    stats = {
        name: {
            "shape": list(v.shape),
            "mean_abs": _sig(float(np.abs(v).mean())),
            "min": _sig(float(v.min())),
            "max": _sig(float(v.max())),
        }
        for name, v in sorted(outputs.items())
    }
    return {"outputs": stats, "detections": decode(outputs, spec)}


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= STAT_ATOL + STAT_RTOL * abs(b)


def compare(measured: Dict[str, Any], expected: Dict[str, Any]) -> List[str]:
    """Differences between two fingerprints, one short phrase each; empty when equivalent."""
    problems: List[str] = []
    exp_out, got_out = expected["outputs"], measured["outputs"]
    if sorted(exp_out) != sorted(got_out):
        return [f"outputs {sorted(got_out)} instead of {sorted(exp_out)}"]
    for name, exp in exp_out.items():
        got = got_out[name]
        if got["shape"] != exp["shape"]:
            problems.append(f"{name} has shape {got['shape']} instead of {exp['shape']}")
            continue
        for key in ("mean_abs", "min", "max"):
            if not _close(got[key], exp[key]):
                problems.append(f"{name} {key} {got[key]} instead of {exp[key]}")
    problems.extend(_compare_detections(measured["detections"], expected["detections"]))
    return problems


def _compare_detections(got: Sequence[Sequence[float]], exp: Sequence[Sequence[float]]) -> List[str]:
    if len(got) != len(exp):
        return [f"{len(got)} detections instead of {len(exp)}"]
    unmatched = list(got)
    for e in exp:
        match = None
        for g in unmatched:
            if g[0] != e[0] or abs(g[1] - e[1]) > SCORE_ATOL:
                continue
            if box_iou(np.asarray(e[2:], np.float32), np.asarray([g[2:]], np.float32))[0] >= BOX_IOU:
                match = g
                break
        if match is None:
            return [f"no detection matches class {int(e[0])} score {e[1]} box {list(e[2:])}"]
        unmatched.remove(match)
    return []

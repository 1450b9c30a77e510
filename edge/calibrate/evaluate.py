"""Accuracy of a candidate: COCO mAP with pycocotools, against labels or against FP32.

Two modes, named in every report:

* ``labels``: ground truth from a dataset (see :mod:`edge.calibrate.labels`).
* ``agreement``: the FP32 model's own detections on the same frames, after the daemon's
  filters, are the ground truth. FP32 against itself scores exactly 1.0, so the drop of a
  candidate is the loss quantization causes, and nothing else.

Predictions are taken at a low score threshold (the usual mAP practice, so ranking is
measured); :func:`deployed_match` adds what the daemon would actually publish at the
configured threshold.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from edge.calibrate.labels import Truth
from edge.postprocess.types import Detections


@dataclass
class Accuracy:
    """mAP50-95 and mAP50 (0..1; None when there was nothing to measure) and per-class AP50-95."""

    map: Optional[float]
    map50: Optional[float]
    per_class: Dict[str, float] = field(default_factory=dict)
    images: int = 0
    objects: int = 0
    counts: Dict[str, int] = field(default_factory=dict)  # reference objects per class
    left_out: List[str] = field(default_factory=list)  # classes too rare to enter the mean


def truth_from_detections(dets: Sequence[Detections]) -> List[Truth]:
    return [Truth(d.boxes.astype(np.float32), d.class_ids.astype(np.int32), np.zeros(len(d), bool)) for d in dets]


def coco_map(
    truth: Sequence[Truth],
    predictions: Sequence[Detections],
    labels: Sequence[str],
    classes: Optional[Sequence[int]] = None,
    min_objects: int = 0,
) -> Accuracy:
    """COCO-style mAP of ``predictions`` against ``truth`` (same order, one entry per image).

    ``classes`` restricts the evaluation (and the per-class table) to those class ids.
    Classes with fewer than ``min_objects`` reference objects get a per-class AP but stay
    out of the means: with a handful of objects one box decides their AP (0 or 1), which
    would make the mean measure luck rather than quantization.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(predictions):
        raise ValueError("truth and predictions must cover the same images")
    keep = set(classes) if classes is not None else None
    images: List[Dict[str, Any]] = []
    anns: List[Dict[str, Any]] = []
    results: List[Dict[str, Any]] = []
    present = set()
    counts: Dict[int, int] = {}
    for i, (t, p) in enumerate(zip(truth, predictions)):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for box, cid, ign in zip(t.boxes.tolist(), t.class_ids.tolist(), t.ignore.tolist()):
            if keep is not None and cid not in keep:
                continue
            w, h = box[2] - box[0], box[3] - box[1]
            if w <= 0 or h <= 0:
                continue
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cid + 1,
                         "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": int(ign)})
            if not ign:
                present.add(cid)
                counts[cid] = counts.get(cid, 0) + 1
        for box, score, cid in zip(p.boxes.tolist(), p.scores.tolist(), p.class_ids.tolist()):
            if keep is not None and cid not in keep:
                continue
            results.append({"image_id": i + 1, "category_id": cid + 1, "score": score,
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    objects = sum(1 for a in anns if not a["iscrowd"])
    if not present:
        return Accuracy(None, None, {}, len(images), 0)
    cat_ids = sorted(present)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c + 1, "name": labels[c] if c < len(labels) else str(c)} for c in cat_ids]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        if not results:
            dt.dataset = {"images": images, "annotations": [], "categories": gt.dataset["categories"]}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.catIds = [c + 1 for c in cat_ids]
        ev.params.maxDets = [1, 10, 300]
        ev.evaluate()
        ev.accumulate()
    per_class: Dict[str, float] = {}
    prec = ev.eval["precision"]  # T×R×K×A×M; area "all", the largest maxDets
    name = {c: labels[c] if c < len(labels) else str(c) for c in cat_ids}
    for k, c in enumerate(cat_ids):
        pk = prec[:, :, k, 0, -1]
        valid = pk[pk > -1]
        per_class[name[c]] = float(valid.mean()) if valid.size else 0.0
    ks = [k for k, c in enumerate(cat_ids) if counts.get(c, 0) >= min_objects]
    left_out = [name[c] for c in cat_ids if counts.get(c, 0) < min_objects]
    if not ks:
        return Accuracy(None, None, per_class, len(images), objects, {name[c]: counts[c] for c in cat_ids}, left_out)
    return Accuracy(_mean(prec[:, :, ks, 0, -1]), _mean(prec[0, :, ks, 0, -1]), per_class, len(images), objects,
                    {name[c]: counts[c] for c in cat_ids}, left_out)


def _mean(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else 0.0


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of N×4 and M×4 xyxy boxes."""
    if a.size == 0 or b.size == 0:
        return np.zeros((a.shape[0], b.shape[0]), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Match:
    """Published detections matched to the reference at IoU ≥ 0.5, same class (greedy by score)."""

    recall: Optional[float]
    precision: Optional[float]
    reference: int
    published: int


def deployed_match(reference: Sequence[Detections], published: Sequence[Detections], iou: float = 0.5) -> Match:
    """How much of what the reference publishes the candidate also publishes, and vice versa."""
    tp = n_ref = n_pub = 0
    for r, p in zip(reference, published):
        n_ref += len(r)
        n_pub += len(p)
        if not len(r) or not len(p):
            continue
        m = _iou(p.boxes, r.boxes)
        m[p.class_ids[:, None] != r.class_ids[None, :]] = 0
        taken = np.zeros(len(r), bool)
        for i in np.argsort(-p.scores, kind="stable"):
            row = np.where(taken, -1.0, m[i])
            j = int(np.argmax(row))
            if row[j] >= iou:
                taken[j] = True
                tp += 1
    return Match(tp / n_ref if n_ref else None, tp / n_pub if n_pub else None, n_ref, n_pub)


class OutputError:
    """Running largest absolute difference per output of a candidate against FP32."""

    def __init__(self) -> None:
        self.max: Dict[str, float] = {}

    def update(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> None:
        for name, r in reference.items():
            c = candidate.get(name)
            if c is None or r.size == 0:
                continue
            err = float(np.max(np.abs(r.astype(np.float32) - c.astype(np.float32))))
            if not np.isfinite(err):
                err = float("inf")
            self.max[name] = max(self.max.get(name, 0.0), err)

    @property
    def worst(self) -> Optional[float]:
        return max(self.max.values()) if self.max else None

"""Vectorised non-maximum suppression (class-aware by coordinate offset)."""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N×4 xyxy) with every box in ``b`` (M×4)."""
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int = 0) -> np.ndarray:
    """Indices of the boxes kept, highest score first (greedy NMS)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes.astype(np.result_type(boxes.dtype, np.float32), copy=False)  # float64 stays float64
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if max_keep and len(keep) >= max_keep:
            break
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    class_agnostic: bool = False,
    max_keep: int = 0,
) -> np.ndarray:
    """NMS within each class (boxes of different classes never suppress each other)."""
    if boxes.shape[0] == 0:
        return np.zeros(0, np.int64)
    if class_agnostic:
        return nms(boxes, scores, iou_threshold, max_keep)
    # Shift each class into its own region of the plane: one NMS pass does all classes.
    # In float64, so the shifted coordinates (up to classes × span) keep their precision.
    span = float(np.max(boxes)) - float(min(0.0, float(np.min(boxes)))) + 1.0
    offsets = class_ids.astype(np.float64)[:, None] * span
    return nms(boxes + offsets, scores, iou_threshold, max_keep)

"""Letterbox maths: where a source image lands in the model input, and the way back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Placement:
    """How a source image of ``src_w×src_h`` was placed into the model input.

    model_x = src_x * scale_x + pad_x (same for y). ``stretch`` has unequal scales and no pad.
    """

    src_w: int
    src_h: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    new_w: int  # size of the resized image inside the input
    new_h: int

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map N×4 xyxy boxes from model-input pixels to source pixels, clipped to the image."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out

    def to_model(self, boxes: np.ndarray) -> np.ndarray:
        """Map N×4 xyxy boxes from source pixels to model-input pixels."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = boxes[:, 0::2] * self.scale_x + self.pad_x
        out[:, 1::2] = boxes[:, 1::2] * self.scale_y + self.pad_y
        return out


def place(
    src_w: int, src_h: int, dst_w: int, dst_h: int, mode: str = "letterbox", center: bool = True
) -> Placement:
    """Compute the placement of a source image into a ``dst_w×dst_h`` input."""
    if mode == "stretch":
        return Placement(src_w, src_h, dst_w / src_w, dst_h / src_h, 0.0, 0.0, dst_w, dst_h)
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w = max(1, min(dst_w, int(round(src_w * scale))))
    new_h = max(1, min(dst_h, int(round(src_h * scale))))
    pad_x = (dst_w - new_w) // 2 if center else 0
    pad_y = (dst_h - new_h) // 2 if center else 0
    # Exact per-axis scales so the back-mapping matches the pixels written.
    return Placement(src_w, src_h, new_w / src_w, new_h / src_h, float(pad_x), float(pad_y), new_w, new_h)

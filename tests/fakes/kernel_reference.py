"""A numpy transcription of the CUDA preprocessing kernel (``edge/preprocess/cuda.py``).

Not the product: the GPU tests compare the real kernel with the CPU path; this mirror lets
the CPU-only tests (and the pycuda contract fake) check the kernel's arithmetic and its
argument list against OpenCV, same formulas, float32 like the device.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def _axis(n_new: int, n_src: int, step: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = (np.arange(n_new, dtype=np.float32) + np.float32(0.5)) * np.float32(step) - np.float32(0.5)
    i0 = np.floor(f).astype(np.int64)
    a = (f - i0).astype(np.float32)
    low = i0 < 0
    i0[low], a[low] = 0, 0
    high = i0 >= n_src - 1
    i0[high], a[high] = n_src - 1, 0
    i1 = np.minimum(i0 + 1, n_src - 1)
    return i0, i1, a


def letterbox_reference(
    src: np.ndarray,
    dst_w: int,
    dst_h: int,
    new_w: int,
    new_h: int,
    pad_x: int,
    pad_y: int,
    step_x: float,
    step_y: float,
    order: Sequence[int],
    scale: Sequence[float],
    shift: Sequence[float],
    pad: float,
) -> np.ndarray:
    """(3, dst_h, dst_w) float32, exactly the kernel's formulas."""
    h, w = src.shape[:2]
    x0, x1, ax = _axis(new_w, w, step_x)
    y0, y1, ay = _axis(new_h, h, step_y)
    s = src.astype(np.float32)
    r0, r1 = s[y0], s[y1]  # (new_h, w, 3)
    ax3 = ax[None, :, None]
    top = r0[:, x0] + ax3 * (r0[:, x1] - r0[:, x0])
    bot = r1[:, x0] + ax3 * (r1[:, x1] - r1[:, x0])
    px = np.rint(top + ay[:, None, None] * (bot - top)).astype(np.float32)
    out = np.empty((3, dst_h, dst_w), np.float32)
    for c in range(3):
        plane = np.full((dst_h, dst_w), np.float32(pad), np.float32)
        plane[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = px[:, :, order[c]]
        out[c] = plane * np.float32(scale[c]) + np.float32(shift[c])
    return out

"""YUV frames (I420, NV12) from a mapped buffer to BGR, in one pass with OpenCV.

The conversion writes straight into the destination (a ring slot, or a new array), so it
is also the one host copy of the frame. Tightly packed planes of even size are converted
as they lie in the buffer; anything else (odd sizes, padded rows) is first repacked.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import cv2
import numpy as np

from edge.capture.gst import Layout, MappedBuffer
from edge.errors import SourceError

_CODES = {"I420": cv2.COLOR_YUV2BGR_I420, "NV12": cv2.COLOR_YUV2BGR_NV12}


def _plane(raw: np.ndarray, offset: int, stride: int, rows: int, cols: int) -> np.ndarray:
    if offset + stride * (rows - 1) + cols > raw.size:
        raise SourceError("video buffer smaller than its layout says", "report this as a bug with the source's caps")
    return np.ndarray((rows, cols), np.uint8, buffer=raw, offset=offset, strides=(stride, 1))


def yuv_to_bgr(mapped: MappedBuffer, layout: Layout, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Convert the mapped I420/NV12 image to BGR into ``out`` (H×W×3 uint8), which is returned."""
    w, h = layout.width, layout.height
    if out is None:
        out = np.empty((h, w, 3), np.uint8)
    code = _CODES[layout.format]
    raw = np.ctypeslib.as_array((ctypes.c_uint8 * mapped.size).from_address(mapped.address))
    cw, ch = (w + 1) // 2, (h + 1) // 2
    (y_off, y_stride), *chroma = layout.planes
    even = w % 2 == 0 and h % 2 == 0
    if layout.format == "I420":
        (u_off, u_stride), (v_off, v_stride) = chroma
        tight = even and y_stride == w and u_stride == v_stride == cw and u_off == y_off + w * h \
            and v_off == u_off + cw * ch
    else:
        ((u_off, u_stride),) = chroma
        tight = even and y_stride == u_stride == w and u_off == y_off + w * h
    if tight:
        cv2.cvtColor(_plane(raw, y_off, w, h * 3 // 2, w), code, dst=out)
        return out
    # Repack into an even-sized contiguous image (edge pixels repeated), convert, crop.
    ew, eh = cw * 2, ch * 2
    packed = np.empty((eh * 3 // 2, ew), np.uint8)
    packed[:h, :w] = _plane(raw, y_off, y_stride, h, w)
    packed[:h, w:ew] = packed[:h, w - 1 : w]
    packed[h:eh, :] = packed[h - 1 : h, :]
    flat = packed.reshape(-1)
    if layout.format == "I420":
        flat[eh * ew : eh * ew + cw * ch] = _plane(raw, u_off, u_stride, ch, cw).ravel()
        flat[eh * ew + cw * ch :] = _plane(raw, v_off, v_stride, ch, cw).ravel()
    else:
        packed[eh:, :] = _plane(raw, u_off, u_stride, ch, ew)
    bgr = cv2.cvtColor(packed, code)
    out[...] = bgr[:h, :w]
    return out

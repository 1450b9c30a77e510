"""YUV → BGR conversion of mapped frames: packed fast path and repacked odd/padded layouts."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edge.capture.convert import yuv_to_bgr
from edge.capture.gst import Layout


def _buffer(data: np.ndarray) -> SimpleNamespace:
    """Stands in for a MappedBuffer: an address and a size over memory we own."""
    return SimpleNamespace(address=data.ctypes.data, size=data.size, keep=data)


def _image(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(w * 1000 + h)
    base = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(base)


def _i420_planes(img: np.ndarray):
    """Y, U, V planes of ``img`` (chroma of size ceil(w/2) x ceil(h/2))."""
    h, w = img.shape[:2]
    ew, eh = w + w % 2, h + h % 2
    padded = cv2.copyMakeBorder(img, 0, eh - h, 0, ew - w, cv2.BORDER_REPLICATE)
    yuv = cv2.cvtColor(padded, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y = yuv[: eh * ew].reshape(eh, ew)[:h, :w]
    q = (eh // 2) * (ew // 2)
    u = yuv[eh * ew : eh * ew + q].reshape(eh // 2, ew // 2)
    v = yuv[eh * ew + q :].reshape(eh // 2, ew // 2)
    return y, u, v


def _pack(planes, strides):
    """Lay planes out one after another with the given row strides (padding bytes 0x55)."""
    offsets, total = [], 0
    for p, s in zip(planes, strides):
        offsets.append(total)
        total += s * p.shape[0]
    buf = np.full(total, 0x55, np.uint8)
    for p, s, o in zip(planes, strides, offsets):
        for r in range(p.shape[0]):
            buf[o + r * s : o + r * s + p.shape[1]] = p[r]
    return buf, tuple(zip(offsets, strides))


@pytest.mark.parametrize(("w", "h", "pad"), [(64, 48, 0), (768, 576, 0), (150, 21, 0), (151, 20, 8), (64, 48, 16)])
@pytest.mark.parametrize("fmt", ["I420", "NV12"])
def test_conversion_matches_opencv_on_the_same_planes(w: int, h: int, pad: int, fmt: str) -> None:
    img = _image(w, h)
    y, u, v = _i420_planes(img)
    if fmt == "I420":
        planes = [y, u, v]
    else:
        uv = np.empty((u.shape[0], u.shape[1] * 2), np.uint8)
        uv[:, 0::2], uv[:, 1::2] = u, v
        planes = [y, uv]
    buf, layout_planes = _pack(planes, [p.shape[1] + pad for p in planes])
    layout = Layout(w, h, layout_planes[0][1], 0, fmt, layout_planes)
    out = np.zeros((h, w, 3), np.uint8)
    got = yuv_to_bgr(_buffer(buf), layout, out)  # type: ignore[arg-type]
    assert got is out
    # Reference: OpenCV on an even, packed copy of the same planes, cropped.
    ew, eh = u.shape[1] * 2, u.shape[0] * 2
    ref_y = cv2.copyMakeBorder(y, 0, eh - h, 0, ew - w, cv2.BORDER_REPLICATE)
    packed = np.concatenate([ref_y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(eh * 3 // 2, ew)
    ref = cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_I420)[:h, :w]
    np.testing.assert_array_equal(got, ref)
    # And it is the picture we started from, up to YUV rounding.
    assert np.abs(got.astype(int) - img.astype(int)).mean() < 8  # chroma subsampling of a busy image


def test_a_buffer_smaller_than_its_layout_is_an_error() -> None:
    from edge.errors import SourceError

    buf = np.zeros(100, np.uint8)
    layout = Layout(64, 48, 64, 0, "I420", ((0, 64), (3072, 32), (3840, 32)))
    with pytest.raises(SourceError):
        yuv_to_bgr(_buffer(buf), layout)  # type: ignore[arg-type]

"""CpuPreprocessor against a straightforward reference, on real video frames."""

from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np
import pytest

from edge.preprocess.base import InputGeometry
from edge.preprocess.cpu import CpuPreprocessor
from edge.preprocess.geometry import place

NANODET_NORM = ((103.53, 116.28, 123.675), (57.375, 57.12, 58.395))
UNIT_NORM = ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))


def geometry(
    w: int = 416,
    h: int = 416,
    batch: int = 1,
    color: str = "bgr",
    resize: str = "letterbox",
    center: bool = True,
    pad: int = 114,
    norm: Tuple[Tuple[float, float, float], Tuple[float, float, float]] = NANODET_NORM,
    dtype: str = "float32",
) -> InputGeometry:
    return InputGeometry(w, h, batch, color, resize, center, pad, norm[0], norm[1], dtype)


def reference(image: np.ndarray, g: InputGeometry) -> np.ndarray:
    """cv2.resize + cv2.copyMakeBorder + float64 maths, written independently of the module."""
    src_h, src_w = image.shape[:2]
    if g.resize == "stretch":
        canvas = cv2.resize(image, (g.width, g.height), interpolation=cv2.INTER_LINEAR)
    else:
        s = min(g.width / src_w, g.height / src_h)
        nw, nh = max(1, round(src_w * s)), max(1, round(src_h * s))
        resized = image if (nw, nh) == (src_w, src_h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        left = (g.width - nw) // 2 if g.center else 0
        top = (g.height - nh) // 2 if g.center else 0
        canvas = cv2.copyMakeBorder(
            resized, top, g.height - nh - top, left, g.width - nw - left, cv2.BORDER_CONSTANT, value=(g.pad_value,) * 3
        )
    if g.color == "rgb":
        canvas = canvas[:, :, ::-1]
    x = (canvas.astype(np.float64) - np.array(g.mean)) / np.array(g.std)
    return x.transpose(2, 0, 1)


def check(out: np.ndarray, image: np.ndarray, g: InputGeometry) -> None:
    ref = reference(image, g)
    if g.dtype == "float16":
        np.testing.assert_allclose(out.astype(np.float64), ref, atol=2e-3, rtol=1e-3)
    else:
        np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.fixture(scope="module")
def frames(video_frames: List[np.ndarray]) -> List[np.ndarray]:
    return [video_frames[i] for i in (0, 13, 26, 39)]


@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
@pytest.mark.parametrize("color", ["bgr", "rgb"])
@pytest.mark.parametrize("norm", [NANODET_NORM, UNIT_NORM], ids=["mean-std", "1/255"])
def test_matches_reference(frames: List[np.ndarray], resize: str, color: str, norm: tuple) -> None:
    g = geometry(color=color, resize=resize, norm=norm)
    pre = CpuPreprocessor(g)
    for frame in frames[:2]:
        out, placements = pre([frame])
        assert out.shape == (1, 3, 416, 416) and out.dtype == np.float32
        assert placements == [place(768, 576, 416, 416, resize)]
        check(out[0], frame, g)


@pytest.mark.parametrize("pad", [0, 114, 255])
@pytest.mark.parametrize("center", [True, False])
def test_padding_values_and_position(frames: List[np.ndarray], pad: int, center: bool) -> None:
    g = geometry(pad=pad, center=center, norm=UNIT_NORM)
    out, (p,) = CpuPreprocessor(g)([frames[0]])
    check(out[0], frames[0], g)
    bar = out[0, :, : int(p.pad_y), :] if center else out[0, :, p.new_h :, :]
    assert bar.size and np.all(bar == bar.flat[0])  # one constant
    assert bar.flat[0] == pytest.approx(pad / 255, abs=1e-6)


def test_non_square_input_and_portrait_source(frames: List[np.ndarray]) -> None:
    g = geometry(w=320, h=192, color="rgb")
    pre = CpuPreprocessor(g)
    portrait = np.ascontiguousarray(frames[1].transpose(1, 0, 2)[:, ::-1])  # 576x768 → 768 high
    for image in (frames[0], portrait):
        out, _ = pre([image])
        assert out.shape == (1, 3, 192, 320)
        check(out[0], image, g)


def test_float16_output(frames: List[np.ndarray]) -> None:
    g = geometry(dtype="float16", color="rgb")
    out, _ = CpuPreprocessor(g)([frames[2]])
    assert out.dtype == np.float16
    check(out[0], frames[2], g)


def test_source_already_at_model_size_is_not_resized(frames: List[np.ndarray]) -> None:
    crop = np.ascontiguousarray(frames[0][:416, :416])
    g = geometry()
    out, (p,) = CpuPreprocessor(g)([crop])
    assert (p.new_w, p.new_h, p.pad_x, p.pad_y) == (416, 416, 0, 0)
    check(out[0], crop, g)


def test_two_buffers_alternate_and_stay_valid_until_the_call_after_next(frames: List[np.ndarray]) -> None:
    g = geometry()
    pre = CpuPreprocessor(g)
    assert pre.buffers == 2
    a, _ = pre([frames[0]])
    b, _ = pre([frames[1]])
    assert a is not b and not np.shares_memory(a, b)
    check(a[0], frames[0], g)  # still intact after the next call
    c, _ = pre([frames[2]])
    assert c is a
    check(b[0], frames[1], g)
    check(c[0], frames[2], g)


def test_three_buffers_rotate() -> None:
    pre = CpuPreprocessor(geometry(), buffers=3)
    image = np.zeros((100, 100, 3), np.uint8)
    outs = [pre([image])[0] for _ in range(4)]
    assert len({id(o) for o in outs[:3]}) == 3 and outs[3] is outs[0]


def test_batch_of_several_images_of_different_sizes(frames: List[np.ndarray]) -> None:
    g = geometry(batch=4, color="rgb")
    pre = CpuPreprocessor(g)
    small = cv2.resize(frames[3], (320, 240))
    tall = np.ascontiguousarray(frames[2][:, 200:500])
    out, placements = pre([frames[0], small, tall])
    assert out.shape == (4, 3, 416, 416)
    assert [(p.src_w, p.src_h) for p in placements] == [(768, 576), (320, 240), (300, 576)]
    for slot, image in enumerate([frames[0], small, tall]):
        check(out[slot], image, g)
    with pytest.raises(ValueError, match=r"expected 1\.\.4 images, got 5"):
        pre([small] * 5)
    with pytest.raises(ValueError, match="got 0"):
        pre([])


def test_source_size_change_rewrites_the_padding(frames: List[np.ndarray]) -> None:
    """A buffer that held a landscape frame (bars top/bottom) then gets a portrait one (bars left/right):
    the old image's pixels where the new bars are must be overwritten."""
    g = geometry(pad=0, norm=UNIT_NORM)
    pre = CpuPreprocessor(g, buffers=1)
    portrait = np.ascontiguousarray(frames[1][:, 100:400])
    for image in (frames[0], portrait, frames[0], frames[0], portrait):
        out, _ = pre([image])
        check(out[0], image, g)


def test_placement_maps_a_drawn_box_back_to_where_it_was(frames: List[np.ndarray]) -> None:
    """Pixels written by the preprocessor and Placement.to_source agree: a white box drawn into the
    frame is found in the model input and mapped back to the drawn rectangle within a pixel or two."""
    image = np.zeros((576, 768, 3), np.uint8)
    x1, y1, x2, y2 = 200, 150, 500, 450
    image[y1:y2, x1:x2] = 255
    for resize in ("letterbox", "stretch"):
        g = geometry(resize=resize, norm=UNIT_NORM, pad=0)
        out, (p,) = CpuPreprocessor(g)([image])
        ys, xs = np.nonzero(out[0, 0] > 0.5)
        found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        back = p.to_source(found)[0]
        np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=2.5)


def test_strided_views_as_sources(frames: List[np.ndarray]) -> None:
    """Frames may be views (a crop of a mapped buffer): both the resize and the no-resize path."""
    g = geometry(color="rgb")
    pre = CpuPreprocessor(g)
    for view in (frames[0][::2, ::2], frames[1][100:516, 200:616]):
        assert not view.flags["C_CONTIGUOUS"]
        out, _ = pre([view])
        check(out[0], np.ascontiguousarray(view), g)

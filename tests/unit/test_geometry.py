"""Letterbox and stretch placement, and the box round trip model ↔ source (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.preprocess.geometry import Placement, place


def test_letterbox_of_the_shared_video_into_416() -> None:
    p = place(768, 576, 416, 416)
    assert (p.new_w, p.new_h, p.pad_x, p.pad_y) == (416, 312, 0.0, 52.0)
    assert p.scale_x == pytest.approx(416 / 768) and p.scale_y == pytest.approx(312 / 576)


def test_letterbox_portrait_and_not_centred() -> None:
    p = place(480, 640, 320, 320)
    assert (p.new_w, p.new_h, p.pad_x, p.pad_y) == (240, 320, 40.0, 0.0)
    q = place(480, 640, 320, 320, center=False)
    assert (q.new_w, q.new_h, q.pad_x, q.pad_y) == (240, 320, 0.0, 0.0)


def test_stretch_fills_the_input() -> None:
    p = place(1920, 1080, 640, 640, "stretch")
    assert (p.new_w, p.new_h, p.pad_x, p.pad_y) == (640, 640, 0.0, 0.0)
    assert (p.scale_x, p.scale_y) == (640 / 1920, 640 / 1080)


def test_upscaling_a_small_source() -> None:
    p = place(100, 50, 416, 416)
    assert (p.new_w, p.new_h, p.pad_y) == (416, 208, 104.0)


def test_to_source_clips_and_keeps_float32() -> None:
    p = place(768, 576, 416, 416)
    boxes = np.array([[-10.0, 0.0, 500.0, 30.0], [100.0, 100.0, 200.0, 200.0]])  # float64 in
    out = p.to_source(boxes)
    assert out.dtype == np.float32
    assert out[0].tolist() == [0.0, 0.0, 768.0, 0.0]  # left clipped at 0, right at the width, top bar → 0
    np.testing.assert_allclose(out[1], [100 / p.scale_x, 48 / p.scale_y, 200 / p.scale_x, 148 / p.scale_y], rtol=1e-6)
    assert p.to_source(np.zeros((0, 4), np.float32)).shape == (0, 4)


sizes = st.integers(16, 4096)
model_sizes = st.integers(32, 1280)


@settings(max_examples=300, deadline=None)
@given(
    src_w=sizes, src_h=sizes, dst_w=model_sizes, dst_h=model_sizes,
    mode=st.sampled_from(["letterbox", "stretch"]), center=st.booleans(),
)
def test_placement_fits_the_input(src_w: int, src_h: int, dst_w: int, dst_h: int, mode: str, center: bool) -> None:
    p = place(src_w, src_h, dst_w, dst_h, mode, center)
    assert 1 <= p.new_w <= dst_w and 1 <= p.new_h <= dst_h
    assert p.pad_x >= 0 and p.pad_y >= 0
    assert p.pad_x + p.new_w <= dst_w and p.pad_y + p.new_h <= dst_h
    assert p.pad_x == int(p.pad_x) and p.pad_y == int(p.pad_y)  # whole pixels: what the preprocessor writes
    if mode == "stretch":
        assert (p.new_w, p.new_h) == (dst_w, dst_h)
    else:
        assert p.new_w == dst_w or p.new_h == dst_h  # one side fills the input
        # Aspect ratio kept: each side is the exact scaled size, rounded (at least 1 px).
        s = min(dst_w / src_w, dst_h / src_h)
        assert abs(p.new_w - src_w * s) <= 0.5 + 1e-9 or p.new_w == 1
        assert abs(p.new_h - src_h * s) <= 0.5 + 1e-9 or p.new_h == 1
        if center:
            assert abs((dst_w - p.new_w) - 2 * p.pad_x) <= 1 and abs((dst_h - p.new_h) - 2 * p.pad_y) <= 1
        else:
            assert p.pad_x == 0 and p.pad_y == 0
    # The whole source lands exactly on the resized rectangle.
    corners = p.to_model(np.array([[0, 0, src_w, src_h]], np.float32))[0]
    np.testing.assert_allclose(corners, [p.pad_x, p.pad_y, p.pad_x + p.new_w, p.pad_y + p.new_h], atol=1e-3)


@st.composite
def placed_boxes(draw: st.DrawFn) -> tuple:
    src_w, src_h = draw(sizes), draw(sizes)
    p = place(src_w, src_h, draw(model_sizes), draw(model_sizes), draw(st.sampled_from(["letterbox", "stretch"])),
              draw(st.booleans()))
    n = draw(st.integers(0, 8))
    boxes = []
    for _ in range(n):
        x1 = draw(st.floats(0, src_w, allow_nan=False))
        y1 = draw(st.floats(0, src_h, allow_nan=False))
        x2 = draw(st.floats(x1, src_w, allow_nan=False))
        y2 = draw(st.floats(y1, src_h, allow_nan=False))
        boxes.append([x1, y1, x2, y2])
    return p, np.array(boxes, np.float32).reshape(-1, 4)


@settings(max_examples=300, deadline=None)
@given(data=placed_boxes())
def test_round_trip_source_model_source(data: tuple) -> None:
    p, boxes = data
    assert isinstance(p, Placement)
    back = p.to_source(p.to_model(boxes))
    tol = 1e-5 * max(p.src_w, p.src_h) + 1e-3  # float32 rounding, relative to the coordinates
    np.testing.assert_allclose(back, boxes, atol=tol)


@settings(max_examples=200, deadline=None)
@given(data=placed_boxes())
def test_round_trip_model_source_model_inside_the_image(data: tuple) -> None:
    p, src_boxes = data
    model_boxes = p.to_model(src_boxes)  # boxes inside the resized image, so clipping changes nothing
    again = p.to_model(p.to_source(model_boxes))
    np.testing.assert_allclose(again, model_boxes, atol=1e-2)

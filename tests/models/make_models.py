"""Generate tiny ONNX test models with the ``onnx`` helper API (no binaries are checked in).

Every model takes one input and returns fixed tensors planted by the test, so a decoder's
answer is known exactly while the model still goes through a real ONNX Runtime session.
The outputs depend on the input only through its batch size (``sum(x) * 0`` is added), so a
dynamic-batch model returns one copy of the planted tensors per image.

    python tests/models/make_models.py OUT_DIR     # writes every model below into OUT_DIR

Tests load this file by path and call :func:`write_all` into a pytest tmp dir (see ``load_make_models``
in ``tests/unit/test_decoders.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

OPSET = 13
Dim = Union[int, str]

# Tiny detector geometry: a 64x64 input with strides 8/16/32 has 64 + 16 + 4 = 84 grid cells.
SIZE = 64
STRIDES = (8, 16, 32)
CELLS = sum((SIZE // s) ** 2 for s in STRIDES)
NUM_CLASSES = 3


def constant_model(
    path: Path,
    outputs: Mapping[str, np.ndarray],
    input_shape: Sequence[Dim] = (1, 3, SIZE, SIZE),
    input_name: str = "images",
    input_dtype: type = np.float32,
    dynamic_batch: bool = False,
) -> Path:
    """A model returning ``outputs`` (each with a leading batch dim of 1) for any input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(input_dtype))
    in_shape: List[Dim] = list(input_shape)
    if dynamic_batch:
        in_shape[0] = "batch"
    nodes = [
        # zero[b] = 0 * sum(x[b]): ties every output's batch dim to the input's.
        helper.make_node("Cast", [input_name], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["x_f"], ["x_flat"], axis=1),
        helper.make_node("ReduceSum", ["x_flat", "axis1"], ["x_sum"], keepdims=1),
        helper.make_node("Mul", ["x_sum", "zero_f"], ["zero_b"]),  # [B, 1]
    ]
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.zeros((1,), np.float32), "zero_f"),
    ]
    graph_outputs = []
    for i, (name, value) in enumerate(outputs.items()):
        value = np.asarray(value)
        if value.shape[0] != 1:
            raise ValueError(f"output {name}: planted tensors need a batch dim of 1, got {value.shape}")
        rank = value.ndim
        shape_name, const_name, zero_name, sum_name = f"s{i}", f"c{i}", f"z{i}", f"y{i}"
        inits.append(numpy_helper.from_array(np.array([-1] + [1] * (rank - 1), np.int64), shape_name))
        inits.append(numpy_helper.from_array(value.astype(np.float32), const_name))
        nodes.append(helper.make_node("Reshape", ["zero_b", shape_name], [zero_name]))
        nodes.append(helper.make_node("Add", [const_name, zero_name], [sum_name]))
        out_type = helper.np_dtype_to_tensor_dtype(value.dtype)
        nodes.append(helper.make_node("Cast", [sum_name], [name], to=out_type))
        out_shape: List[Dim] = list(value.shape)
        if dynamic_batch:
            out_shape[0] = "batch"
        graph_outputs.append(helper.make_tensor_value_info(name, out_type, out_shape))
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(input_name, elem, in_shape)],
        graph_outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-tests")
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------- planted outputs
def yolov5_output(rows: Sequence[Tuple[float, float, float, float, float, int, float]]) -> np.ndarray:
    """[1, 3*CELLS, 5+C]: each row (cx, cy, w, h, objectness, class, class prob); the rest zero."""
    t = np.zeros((1, 3 * CELLS, 5 + NUM_CLASSES), np.float32)
    for i, (cx, cy, w, h, obj, cls, p) in enumerate(rows):
        t[0, 7 * i + 3, :5] = (cx, cy, w, h, obj)
        t[0, 7 * i + 3, 5 + cls] = p
    return t


def yolov8_output(cols: Sequence[Tuple[float, float, float, float, int, float]]) -> np.ndarray:
    """[1, 4+C, CELLS]: each column (cx, cy, w, h, class, score); the rest zero."""
    t = np.zeros((1, 4 + NUM_CLASSES, CELLS), np.float32)
    for i, (cx, cy, w, h, cls, s) in enumerate(cols):
        t[0, :4, 5 * i + 2] = (cx, cy, w, h)
        t[0, 4 + cls, 5 * i + 2] = s
    return t


def end2end_output(rows: Sequence[Tuple[float, float, float, float, float, int]], k: int = 20) -> np.ndarray:
    """[1, K, 6]: (x1, y1, x2, y2, score, class) rows, zero-padded."""
    t = np.zeros((1, k, 6), np.float32)
    for i, r in enumerate(rows):
        t[0, i] = r
    return t


def efficientnms_outputs(
    rows: Sequence[Tuple[float, float, float, float, float, int]], k: int = 10
) -> Dict[str, np.ndarray]:
    """EfficientNMS_TRT's outputs: num_dets [1,1] int32, boxes [1,K,4], scores [1,K], classes [1,K] int32."""
    boxes = np.zeros((1, k, 4), np.float32)
    scores = np.zeros((1, k), np.float32)
    classes = np.zeros((1, k), np.int32)
    for i, (x1, y1, x2, y2, s, c) in enumerate(rows):
        boxes[0, i] = (x1, y1, x2, y2)
        scores[0, i] = s
        classes[0, i] = c
    return {
        "num_dets": np.array([[len(rows)]], np.int32),
        "det_boxes": boxes,
        "det_scores": scores,
        "det_classes": classes,
    }


# The planted answers the tests check against (model-input pixels).
YOLOV5_ROWS = [
    (20.0, 30.0, 10.0, 20.0, 0.9, 1, 0.8),  # score 0.72, box (15, 20, 25, 40)
    (21.0, 31.0, 10.0, 20.0, 0.9, 1, 0.5),  # 0.45, overlaps the first: suppressed by NMS
    (40.0, 40.0, 8.0, 8.0, 0.5, 2, 0.9),  # 0.45, box (36, 36, 44, 44)
    (50.0, 10.0, 4.0, 4.0, 0.2, 0, 0.9),  # 0.18: below a 0.25 threshold
]
YOLOV8_COLS = [
    (20.0, 30.0, 10.0, 20.0, 1, 0.72),
    (21.0, 31.0, 10.0, 20.0, 1, 0.45),
    (40.0, 40.0, 8.0, 8.0, 2, 0.45),
    (50.0, 10.0, 4.0, 4.0, 0, 0.18),
]
END2END_ROWS = [
    (15.0, 20.0, 25.0, 40.0, 0.72, 1),
    (36.0, 36.0, 44.0, 44.0, 0.45, 2),
    (0.0, 0.0, 4.0, 4.0, 0.18, 0),
]


def unknown_op_model(path: Path) -> Path:
    """A well-formed ONNX file using an operator no runtime has (session creation must fail)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FrobnicateBoxes", ["images"], ["out"], domain="com.example.nothing")
    graph = helper.make_graph(
        [node],
        "unknown_op",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 10, 6])],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.example.nothing", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="edge-tests")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write_all(out: Path) -> Dict[str, Path]:
    """Write every test model into ``out``; returns name → path."""
    out.mkdir(parents=True, exist_ok=True)
    made = {
        "yolov5": constant_model(out / "yolov5.onnx", {"output0": yolov5_output(YOLOV5_ROWS)}),
        "yolov8": constant_model(out / "yolov8.onnx", {"output0": yolov8_output(YOLOV8_COLS)}),
        "end2end": constant_model(out / "end2end.onnx", {"output0": end2end_output(END2END_ROWS)}),
        "efficientnms": constant_model(out / "efficientnms.onnx", efficientnms_outputs(END2END_ROWS)),
        "yolov8_dynamic": constant_model(
            out / "yolov8_dynamic.onnx", {"output0": yolov8_output(YOLOV8_COLS)}, dynamic_batch=True
        ),
        # Not a detector: a feature vector in, one output whose shape matches no layout.
        "not_image": constant_model(
            out / "not_image.onnx", {"logits": np.zeros((1, 10), np.float32)}, input_shape=(1, 16), input_name="x"
        ),
        "unknown_layout": constant_model(out / "unknown_layout.onnx", {"feat": np.zeros((1, 7, 9, 5), np.float32)}),
        "uint8_input": constant_model(
            out / "uint8_input.onnx", {"output0": end2end_output([])}, input_dtype=np.uint8
        ),
        "unknown_op": unknown_op_model(out / "unknown_op.onnx"),
    }
    return made


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: make_models.py OUT_DIR", file=sys.stderr)
        return 2
    for name, path in write_all(Path(args[0])).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tiny ONNX models for the TensorRT contract tests, generated on the fly (never checked in)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

Dim = Union[int, str]


def _save(graph: object, path: Path, opset: int) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])  # type: ignore[arg-type]
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_detector(path: Path, batch: Dim = 1, size: int = 32, opset: int = 13) -> Path:
    """images [B,3,S,S] → scores [B,N,2] (sigmoid of pooled input) and boxes [B,N,4]: enough for IO checks."""
    from onnx import TensorProto, helper

    n = (size // 8) ** 2
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, n, 2])
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, n, 4])
    shape2 = helper.make_tensor("shape2", TensorProto.INT64, [3], [0, n, -1])
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], name="pool", kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Transpose", ["pooled"], ["hwc"], name="to_hwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["hwc", "shape2"], ["flat"], name="flatten"),
        helper.make_node("Sigmoid", ["flat"], ["sig"], name="sigmoid"),
        helper.make_node("Slice", ["sig", "s0", "s2", "ax"], ["scores"], name="take_scores"),
        helper.make_node("Concat", ["flat", "sig"], ["cat"], name="concat", axis=2),
        helper.make_node("Slice", ["cat", "s0", "s4", "ax"], ["boxes"], name="take_boxes"),
    ]
    inits = [shape2, helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
             helper.make_tensor("s2", TensorProto.INT64, [1], [2]),
             helper.make_tensor("s4", TensorProto.INT64, [1], [4]),
             helper.make_tensor("ax", TensorProto.INT64, [1], [2])]
    graph = helper.make_graph(nodes, "tiny", [x], [scores, boxes], inits)
    return _save(graph, path, opset)


def efficientnms_model(path: Path, size: int = 64, keep: int = 20) -> Path:
    """images → EfficientNMS_TRT plugin with its four outputs (the order TensorRT fixes)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    outs = [
        helper.make_tensor_value_info("num_dets", TensorProto.INT32, [1, 1]),
        helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [1, keep, 4]),
        helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [1, keep]),
        helper.make_tensor_value_info("det_classes", TensorProto.INT32, [1, keep]),
    ]
    node = helper.make_node("EfficientNMS_TRT", ["images"], [o.name for o in outs], name="nms", max_output_boxes=keep)
    return _save(helper.make_graph([node], "nms", [x], outs), path, 13)


def broken_model(path: Path, op: str = "NotARealOp") -> Path:
    """A model with an operator no parser knows."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])
    nodes = [helper.make_node("Relu", ["images"], ["r"], name="relu_0"),
             helper.make_node(op, ["r"], ["out"], name="mystery_1")]
    return _save(helper.make_graph(nodes, "broken", [x], [y]), path, 13)


def qdq_model(path: Path, size: int = 16, opset: int = 13) -> Path:
    """images → QuantizeLinear → DequantizeLinear → Relu: an explicitly quantized model."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, size, size])
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 127.0]),
             helper.make_tensor("zero", TensorProto.INT8, [], [0])]
    nodes = [helper.make_node("QuantizeLinear", ["images", "scale", "zero"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"], name="dq"),
             helper.make_node("Relu", ["dq"], ["out"], name="relu")]
    return _save(helper.make_graph(nodes, "qdq", [x], [y], inits), path, opset)


def nms_executor(keep: int = 20, found: int = 3, seed: Optional[int] = 0):  # type: ignore[no-untyped-def]
    """An executor for :func:`efficientnms_model`: ``found`` fixed detections, zero padding."""
    rng = np.random.default_rng(seed)
    boxes = np.zeros((1, keep, 4), np.float32)
    xy = rng.uniform(0, 40, (found, 2)).astype(np.float32)
    boxes[0, :found, :2], boxes[0, :found, 2:] = xy, xy + 10
    scores = np.zeros((1, keep), np.float32)
    scores[0, :found] = np.linspace(0.9, 0.6, found)
    classes = np.zeros((1, keep), np.int32)
    classes[0, :found] = [0, 2, 0][:found] if found <= 3 else np.arange(found) % 80

    def run(inputs):  # type: ignore[no-untyped-def]
        return {"num_dets": np.array([[found]], np.int32), "det_boxes": boxes, "det_scores": scores,
                "det_classes": classes}

    return run

"""Q/DQ models: the -inf Pad trap repaired or refused, TensorRT-style placement, exclusions, checks."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.calibrate import graph, qdq
from edge.calibrate.mixed import unquantize
from edge.calibrate.workflow import calibrate_model
from edge.errors import ModelError


def _model(pool: bool = True) -> onnx.ModelProto:
    """x → Conv → LeakyRelu → Pad(-inf) → MaxPool (or Conv) → Conv → Sigmoid, like the shared model's stem."""
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32), "w2")
    w3 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 4, 3, 3)).astype(np.float32), "w3")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    value = numpy_helper.from_array(np.array(-np.inf, np.float32), "value")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c1"], ["r1"], name="relu1", alpha=0.1),
        helper.make_node("Pad", ["r1", "pads", "value"], ["padded"], name="pad"),
        helper.make_node("MaxPool", ["padded"], ["pooled"], name="pool", kernel_shape=[3, 3], strides=[2, 2])
        if pool else helper.make_node("Conv", ["padded", "w3"], ["pooled"], name="conv_pad"),
        helper.make_node("Conv", ["pooled", "w2"], ["c2"], name="conv2"),
        helper.make_node("Sigmoid", ["c2"], ["y"], name="sig"),
    ]
    g = helper.make_graph(nodes, "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [w1, w2, w3, pads, value] if not pool else [w1, w2, pads, value])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _batches(n: int = 6) -> List[np.ndarray]:
    rng = np.random.default_rng(2)
    return [rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32) for _ in range(n)]


def test_neg_inf_pad_folds_into_maxpool_bit_identically() -> None:
    m = _model()
    before = [_run(m, b) for b in _batches(3)]
    notes = graph.fold_neg_inf_pads(m)
    assert notes and "folded the -inf Pad 'pad'" in notes[0]
    assert not any(n.op_type == "Pad" for n in m.graph.node)
    assert {i.name for i in m.graph.initializer} == {"w1", "w2"}  # the pad constants went with it
    for b, y in zip(_batches(3), before):
        assert np.array_equal(_run(m, b), y)


def test_unrepaired_inf_range_never_reaches_a_scale(tmp_path: Path) -> None:
    m = _model(pool=False)  # -inf Pad feeding a Conv: nothing to fold
    assert graph.fold_neg_inf_pads(m) == []
    stats = qdq.collect_stats(m, _batches(), graph.activations(m))
    assert "padded" in stats.nonfinite()
    with pytest.raises(ModelError, match="no usable INT8 range"):
        qdq.quantize(m, tmp_path / "bad.onnx", {"x": 3.0, "padded": float("inf"), "pooled": 1.0}, _batches()[0])
    assert not (tmp_path / "bad.onnx").exists()


def test_calibration_repairs_or_keeps_the_consumer_in_float(tmp_path: Path) -> None:
    for pool, name in ((True, "pooled.onnx"), (False, "conv.onnx")):
        src = tmp_path / name
        onnx.save(_model(pool), str(src))
        rec = calibrate_model(src, _batches(), tmp_path / name.split(".")[0], source="test", seed=0,
                              frames=["a"], probe_frames=2)
        q = onnx.load(str(tmp_path / name.split(".")[0] / str(rec.qdq_model)))
        assert qdq.check_qdq(q) > 0
        if pool:
            assert any("folded" in r for r in rec.repairs) and rec.kept_float == []
            assert set(qdq.qdq_nodes(q)) == {"conv1", "conv2"}
        else:
            # NaN flows on from the Pad: every consumer of a non-finite tensor stays in float.
            assert rec.kept_float == ["conv_pad", "conv2"] and any("inf/NaN" in r for r in rec.repairs)
            assert qdq.qdq_nodes(q) == ["conv1"]


def test_tensorrt_style_placement_and_exclusion(tmp_path: Path) -> None:
    m = _model()
    graph.fold_neg_inf_pads(m)
    amax = {"x": 4.0, "pooled": 2.0}
    q = qdq.quantize(m, tmp_path / "q.onnx", amax, _batches()[0])
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") == 2  # conv inputs only: outputs, Sigmoid and biases stay float
    for node in q.graph.node:
        if node.op_type == "Sigmoid":
            producer = next(n for n in q.graph.node if node.input[0] in n.output)
            assert producer.op_type == "Conv"
    scales = [numpy_helper.to_array(i) for i in q.graph.initializer if i.name.endswith("_scale")]
    assert any(np.isclose(s, 4.0 / 127).all() for s in scales if s.size == 1)
    part = qdq.quantize(m, tmp_path / "p.onnx", amax, _batches()[0], exclude_nodes=["conv2"])
    assert qdq.qdq_nodes(part) == ["conv1"]
    edited = unquantize(q, m, ["conv2"])
    x = _batches()[0]
    assert np.array_equal(_run(edited, x), _run(part, x))


def test_check_refuses_infinite_scales_and_zero_points(tmp_path: Path) -> None:
    m = _model()
    graph.fold_neg_inf_pads(m)
    q = qdq.quantize(m, tmp_path / "q.onnx", {"x": 4.0, "pooled": 2.0}, _batches()[0])
    bad = onnx.ModelProto()
    bad.CopyFrom(q)
    scale = next(i for i in bad.graph.initializer if i.name.endswith("_scale") and not i.dims)
    scale.CopyFrom(numpy_helper.from_array(np.array(np.inf, np.float32), scale.name))
    with pytest.raises(ModelError, match="unusable scale"):
        qdq.check_qdq(bad)
    bad.CopyFrom(q)
    zp = next(i for i in bad.graph.initializer if i.name.endswith("_zero_point") and not i.dims)
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
    with pytest.raises(ModelError, match="symmetric"):
        qdq.check_qdq(bad)


def test_record_keeps_every_range_for_an_offline_tensorrt_cache(tmp_path: Path) -> None:
    from edge.calibrate.calibrator import CalibrationCache, cache_from_ranges

    src = tmp_path / "m.onnx"
    onnx.save(_model(), str(src))
    rec = calibrate_model(src, _batches(), tmp_path / "out", source="test", seed=0, frames=["a"], probe_frames=2)
    assert {"x", "c1", "r1", "pooled", "c2", "y"} <= set(rec.all_ranges)  # every activation, not only Q/DQ inputs
    assert rec.all_ranges["x"] == pytest.approx(rec.ranges["x"])
    cache = CalibrationCache.parse(cache_from_ranges(rec.all_ranges, "8.5.2").to_bytes())
    assert cache.scales["x"] == pytest.approx(rec.ranges["x"] / 127, rel=1e-6)
    assert [n for n, _ in rec.sensitivity] and set(n for n, _ in rec.sensitivity) == {"conv1", "conv2"}
    back = type(rec).load(rec.save(tmp_path / "out"))
    assert back == rec

"""Explicitly quantized (Q/DQ) ONNX models, the INT8 route of every TensorRT version.

The placement is TensorRT's recommended one: Q/DQ pairs only on the activation input and
the weights of compute ops (Conv, Gemm, MatMul), symmetric signed INT8 with zero points
of 0, per-channel weights, per-tensor activations. Everything else (Sigmoid, Reshape,
Transpose of the head, the outputs) stays in float, so scores never leave the model as
INT8. Ranges come from :mod:`edge.calibrate.stats`; onnxruntime's ``quantize_static``
writes the graph, with each range passed as a tensor override.

A model is never written with an infinite, NaN or zero scale: :func:`check_qdq` refuses it.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from edge.calibrate import graph
from edge.calibrate.stats import StatsCollector
from edge.errors import EdgeError, HardwareError, ModelError

log = logging.getLogger(__name__)

MIN_ORT = (1, 17)  # TensorQuantOverrides with rmin/rmax


def _ort_version() -> tuple:
    import onnxruntime

    parts = []
    for p in onnxruntime.__version__.split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _session(model: Any, threads: int = 0) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Keep every tensor the graph names: fusions could drop the ones being measured.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


def collect_stats(
    model: Any,
    batches: Iterable[np.ndarray],
    names: Optional[Sequence[str]] = None,
    threads: int = 0,
    tick: Optional[Callable[[int], None]] = None,
) -> StatsCollector:
    """Run ``model`` on preprocessed ``batches`` and accumulate statistics of ``names``.

    Memory stays bounded: one batch's activations at a time, plus fixed-size histograms.
    """
    names = list(names) if names is not None else graph.activations(model)
    sess = _session(graph.augmented(model, names), threads)
    input_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    wanted = set(names)
    stats = StatsCollector(names)
    for batch in batches:
        values = sess.run(out_names, {input_name: batch})
        stats.update({n: v for n, v in zip(out_names, values) if n in wanted})
        if tick:
            tick(int(batch.shape[0]))
    return stats


class _OneBatch:
    """The calibration reader onnxruntime wants; ranges come from overrides, so one batch does."""

    def __init__(self, name: str, batch: np.ndarray) -> None:
        self._items = [{name: batch}]

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return self._items.pop() if self._items else None

    def rewind(self) -> None:  # pragma: no cover - part of onnxruntime's reader protocol
        pass


def quantize(
    model: Any,
    out_path: Path,
    amax: Dict[str, float],
    sample: np.ndarray,
    exclude_nodes: Sequence[str] = (),
    per_channel: bool = True,
    op_types: Sequence[str] = graph.QUANTIZED_OPS,
) -> Any:
    """Write a symmetric INT8 Q/DQ model of ``model`` (repaired, named) to ``out_path``.

    ``amax`` gives the clipping value of every activation that feeds a quantized node;
    ``exclude_nodes`` stay in float (mixed precision). Returns the written ModelProto.
    """
    if _ort_version() < MIN_ORT:
        raise HardwareError(
            "onnxruntime is too old for explicit quantization with measured ranges",
            f"pip install 'onnxruntime>={MIN_ORT[0]}.{MIN_ORT[1]}'",
        )
    import onnxruntime

    onnx = graph._onnx()
    excluded = set(exclude_nodes)
    needed = {t for n, t in graph.quantizable_nodes(model, op_types) if n not in excluded}
    missing = sorted(t for t in needed if t not in amax)
    if missing:
        raise ModelError(f"no calibration range for tensor {missing[0]!r}", "calibrate again with this model")
    bad = sorted(t for t in needed if not (math.isfinite(amax[t]) and amax[t] > 0))
    if bad:
        raise ModelError(
            f"tensor {bad[0]!r} has no usable INT8 range ({amax[bad[0]]})",
            "it holds inf/NaN or is always 0 on the calibration frames; its consumers must stay in float",
        )
    overrides: Dict[str, Any] = {t: [{"rmin": np.float32(-amax[t]), "rmax": np.float32(amax[t])}]
                                 for t in sorted(needed)}
    # onnxruntime derives parameters for every tensor it looked at, quantized or not; a tensor
    # that is NaN on the sample (downstream of an unrepaired -inf) would trip it. Fixed
    # placeholder parameters for those keep it from computing any (they are never used).
    for t in graph.activations(model):
        overrides.setdefault(t, [{"scale": np.array(1.0, np.float32), "zero_point": np.array(0, np.int8)}])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnxruntime.set_default_logger_severity(3)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static logs advice through the root logger
    try:
        qmodel = _quantize_static(model, amax_overrides=overrides, sample=sample, excluded=sorted(excluded),
                                  op_types=list(op_types), per_channel=per_channel)
    finally:
        root.setLevel(level)
    if excluded:
        from edge.calibrate.mixed import unquantize

        # onnxruntime leaves an excluded node reading a Q/DQ pair it shares with a quantized node.
        qmodel = unquantize(qmodel, model, excluded)
    check_qdq(qmodel)
    onnx.save(qmodel, str(out_path))
    return qmodel


def _quantize_static(model: Any, *, amax_overrides: Dict[str, Any], sample: np.ndarray, excluded: List[str],
                     op_types: List[str], per_channel: bool) -> Any:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    onnx = graph._onnx()
    with tempfile.TemporaryDirectory(prefix="edge-qdq-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its own calibrator's NaN statistics: unused
        src = Path(tmp) / "model.onnx"
        onnx.save(model, str(src))
        tmp_out = Path(tmp) / "qdq.onnx"
        quantize_static(
            str(src),
            str(tmp_out),
            _OneBatch(model.graph.input[0].name, sample),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,  # TensorRT wants float biases
                "OpTypesToExcludeOutputQuantization": list(op_types),
                "TensorQuantOverrides": amax_overrides,
            },
        )
        return onnx.load(str(tmp_out))


def check_qdq(model: Any) -> int:
    """Refuse a Q/DQ model TensorRT would reject or that computes garbage; returns the Q/DQ count.

    Every scale finite and > 0, every zero point 0, every quantized type signed INT8.
    """
    onnx = graph._onnx()
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        count += 1
        scale = consts.get(node.input[1])
        if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ModelError(
                f"quantized model has an unusable scale at {node.name!r} ({scale})",
                "a calibration range is infinite, NaN or zero; the model was not written",
            )
        if len(node.input) > 2 and node.input[2]:
            zp = consts.get(node.input[2])
            if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
                raise ModelError(
                    f"quantized model has a non-symmetric or non-int8 zero point at {node.name!r}",
                    "TensorRT accepts only symmetric signed INT8",
                )
    if count == 0:
        raise EdgeError("the quantized model has no Q/DQ nodes", "nothing in the model could be quantized")
    return count


def qdq_nodes(model: Any) -> List[str]:
    """Names of the compute nodes of a Q/DQ model whose activation input is dequantized."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = []
    for node in model.graph.node:
        if node.op_type in graph.QUANTIZED_OPS and node.input:
            p = producers.get(node.input[0])
            if p is not None and p.op_type == "DequantizeLinear":
                out.append(node.name)
    return out

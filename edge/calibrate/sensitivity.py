"""Per-layer quantization error, measured in isolation against FP32 on calibration batches.

One probe model holds the FP32 graph plus, for every quantized node and every candidate
clipping value of its input, a copy of that node fed with its FP32 input through
``QuantizeLinear → DequantizeLinear`` and with per-channel fake-quantized weights. One pass
over a few calibration batches gives, per node and per candidate, the relative squared
error of the node's output (what INT8 costs that layer alone). The best candidate per
node chooses its range; the error at that range ranks the nodes for mixed precision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edge.calibrate import graph
from edge.calibrate.qdq import _session

log = logging.getLogger(__name__)


def fake_quant_weights(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """Symmetric per-channel INT8 round trip of a weight tensor (what the Q/DQ model computes)."""
    w = w.astype(np.float32)
    red = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.max(np.abs(w), axis=red, keepdims=True) if red else np.abs(w)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


@dataclass
class LayerError:
    """Relative squared error of one node's output with INT8 inputs, per candidate range."""

    node: str
    tensor: str  # the activation input
    amax: List[float]
    error: List[float]  # ‖y_q − y‖² / ‖y − mean_c(y)‖² per candidate (per-channel mean removed)

    @property
    def best(self) -> int:
        return int(np.argmin(self.error))


def probe_model(model: Any, candidates: Dict[str, Sequence[float]], op_types: Sequence[str] = graph.QUANTIZED_OPS,
                weights: bool = True, activations: bool = True) -> Tuple[Any, Dict[Tuple[str, int], Tuple[str, str]]]:
    """The FP32 model plus quantized copies of each node; returns it and (node, j) → (ref, copy) outputs."""
    onnx = graph._onnx()
    helper, nph = onnx.helper, onnx.numpy_helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    outputs: Dict[Tuple[str, int], Tuple[str, str]] = {}
    new_nodes, new_inits = [], []
    for node in list(m.graph.node):
        if node.op_type not in op_types or not node.input or node.input[0] in inits:
            continue
        x = node.input[0]
        if x not in candidates:
            continue
        params = list(node.input[1:])
        if weights and params and params[0] in inits:
            w = nph.to_array(inits[params[0]])
            axis = 1 if node.op_type in ("ConvTranspose", "MatMul") else 0
            wq = nph.from_array(fake_quant_weights(w, axis), f"{node.name}__wq")
            new_inits.append(wq)
            params[0] = wq.name
        zp = nph.from_array(np.zeros((), np.int8), f"{node.name}__zp")
        new_inits.append(zp)
        for j, a in enumerate(candidates[x]):
            s = nph.from_array(np.array(max(a, 1e-12) / 127.0, np.float32), f"{node.name}__s{j}")
            new_inits.append(s)
            q, dq, y = f"{node.name}__q{j}", f"{node.name}__dq{j}", f"{node.name}__y{j}"
            if activations:
                new_nodes.append(helper.make_node("QuantizeLinear", [x, s.name, zp.name], [q]))
                new_nodes.append(helper.make_node("DequantizeLinear", [q, s.name, zp.name], [dq]))
            copy = helper.make_node(node.op_type, [dq if activations else x, *params], [y],
                                    name=f"{node.name}__copy{j}")
            copy.attribute.extend(node.attribute)
            new_nodes.append(copy)
            outputs[(node.name, j)] = (node.output[0], y)
    m.graph.node.extend(new_nodes)
    m.graph.initializer.extend(new_inits)
    names = sorted({n for pair in outputs.values() for n in pair})
    return graph.augmented(m, names), outputs


def layer_errors(
    model: Any,
    candidates: Dict[str, Sequence[float]],
    batches: Iterable[np.ndarray],
    threads: int = 0,
    tick: Optional[Callable[[int], None]] = None,
    weights: bool = True,
    activations: bool = True,
) -> List[LayerError]:
    """Isolated INT8 error of every quantizable node for each candidate clipping value of its input."""
    probe, pairs = probe_model(model, candidates, weights=weights, activations=activations)
    sess = _session(probe, threads)
    in_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    num: Dict[Tuple[str, int], float] = {k: 0.0 for k in pairs}
    moments: Dict[str, List[Any]] = {}  # node → [count per channel, sum, sum of squares]
    for batch in batches:
        vals = dict(zip(out_names, sess.run(out_names, {in_name: batch})))
        done = set()
        for (node, j), (ref, cand) in pairs.items():
            r = vals[ref].astype(np.float64)
            num[(node, j)] += float(np.sum((vals[cand] - r) ** 2))
            if node not in done:
                axes = tuple(i for i in range(r.ndim) if i != 1) if r.ndim > 1 else (0,)
                m = moments.setdefault(node, [0, 0.0, 0.0])
                m[0] += r.size // (r.shape[1] if r.ndim > 1 else 1)
                m[1] = m[1] + r.sum(axis=axes)
                m[2] = m[2] + (r * r).sum(axis=axes)
                done.add(node)
        if tick:
            tick(int(batch.shape[0]))
    out = []
    for node, x in graph.quantizable_nodes(model):
        if x not in candidates:
            continue
        amaxes = list(candidates[x])
        # Energy of the output around its per-channel mean: a channel that is a near-constant
        # offset (background logits of a detection head) must not hide the error that matters.
        n, s1, s2 = moments.get(node, [0, 0.0, 0.0])
        d = max(float(np.sum(s2 - s1 * s1 / max(n, 1))), 1e-30)
        out.append(LayerError(node, x, amaxes, [num[(node, j)] / d for j in range(len(amaxes))]))
    return out


def choose_ranges(errors: Sequence[LayerError]) -> Dict[str, float]:
    """Per activation tensor, the candidate clipping value with the least error over its consumers."""
    by_tensor: Dict[str, List[LayerError]] = {}
    for e in errors:
        by_tensor.setdefault(e.tensor, []).append(e)
    out = {}
    for tensor, errs in by_tensor.items():
        total = np.sum([e.error for e in errs], axis=0)
        out[tensor] = errs[0].amax[int(np.argmin(total))]
    return out


def ranking(errors: Sequence[LayerError], chosen: Dict[str, float]) -> List[Tuple[str, float]]:
    """Nodes from most to least sensitive: (node, relative error at the chosen range)."""
    rows = []
    for e in errors:
        j = e.amax.index(chosen[e.tensor]) if chosen.get(e.tensor) in e.amax else e.best
        rows.append((e.node, e.error[j]))
    return sorted(rows, key=lambda r: -r[1])

"""Mixed precision: keep the fewest sensitive layers out of INT8 until the budget is met.

1. Rank: starting from the fully quantized Q/DQ model, take one quantized node at a time
   back to float (its input and weights without Q/DQ) and measure how much closer the
   model's outputs come to FP32 on calibration batches. The nodes whose return helps most
   are the most sensitive to quantization. The graph edits are in memory, so ranking
   costs one short inference pass per node, not one quantization run.
2. Search: keep the top-k nodes in float (``nodes_to_exclude`` for Q/DQ models, layer
   precision constraints for TensorRT implicit INT8), with k found by doubling then
   bisection on the accuracy budget, measured on the evaluation set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edge.calibrate import graph
from edge.calibrate.qdq import _session

log = logging.getLogger(__name__)


def unquantize(qmodel: Any, fp32: Any, nodes: Iterable[str]) -> Any:
    """A copy of Q/DQ model ``qmodel`` with ``nodes`` computing in float again.

    Their activation input is rewired to the float tensor before its Q/DQ pair and their
    weights to the original float initializers of ``fp32``; Q/DQ nodes left without a
    consumer are removed.
    """
    onnx = graph._onnx()
    m = onnx.ModelProto()
    m.CopyFrom(qmodel)
    wanted = set(nodes)
    producers = {o: n for n in m.graph.node for o in n.output}
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    have = {i.name for i in m.graph.initializer}
    for node in m.graph.node:
        if node.name not in wanted:
            continue
        orig = fp32_nodes.get(node.name)
        if orig is None:
            continue
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            src = orig.input[i] if i < len(orig.input) else None
            if src is None:
                continue
            node.input[i] = src
            if src in fp32_inits and src not in have:
                m.graph.initializer.append(fp32_inits[src])
                have.add(src)
    _prune(m)
    return m


def _prune(m: Any) -> None:
    """Drop nodes whose outputs nobody uses (dangling Q/DQ) and unused initializers."""
    outputs = {o.name for o in m.graph.output}
    while True:
        used = {i for n in m.graph.node for i in n.input} | outputs
        dead = [n for n in m.graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            m.graph.node.remove(n)
    used = {i for n in m.graph.node for i in n.input}
    for init in [i for i in m.graph.initializer if i.name not in used]:
        m.graph.initializer.remove(init)


SCORE_FLOOR = 0.05  # score outputs: only elements above this (in FP32 or the candidate) count


def output_error(ref: Sequence[Dict[str, np.ndarray]], cand: Sequence[Dict[str, np.ndarray]]) -> float:
    """How far a candidate's outputs are from FP32, weighted to what detection uses.

    Score-like outputs (FP32 values within [0, 1], e.g. sigmoid class scores): mean squared
    error over the elements where FP32 or the candidate scores at least ``SCORE_FLOOR``;
    the sea of background zeros would otherwise hide the errors that move detections.
    Other outputs (box regressions, logits): relative squared error. Summed over outputs.
    """
    num: Dict[str, float] = {}
    den: Dict[str, float] = {}
    bounded: Dict[str, bool] = {}
    for r in ref:
        for k, v in r.items():
            bounded[k] = bounded.get(k, True) and bool(v.size) and float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    for r, c in zip(ref, cand):
        for k, v in r.items():
            v64 = v.astype(np.float64)
            d = c[k].astype(np.float64) - v64
            if bounded[k]:
                active = (v64 >= SCORE_FLOOR) | (c[k] >= SCORE_FLOOR)
                num[k] = num.get(k, 0.0) + float(np.sum(d[active] ** 2))
                den[k] = den.get(k, 0.0) + float(np.count_nonzero(active))
            else:
                num[k] = num.get(k, 0.0) + float(np.sum(d * d))
                den[k] = den.get(k, 0.0) + float(np.sum(v64 * v64))
    return float(sum(num[k] / max(den[k], 1e-30) for k in num))


def _run(model: Any, batches: Sequence[np.ndarray], threads: int) -> List[Dict[str, np.ndarray]]:
    sess = _session(model, threads)
    name = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]
    return [dict(zip(outs, sess.run(outs, {name: b}))) for b in batches]


@dataclass
class Ranking:
    """Quantized nodes, most sensitive first, with the output error they leave when alone in float."""

    base_error: float  # output error of the fully quantized model
    nodes: List[Tuple[str, float]] = field(default_factory=list)  # (node, output error with it in float)

    @property
    def order(self) -> List[str]:
        return [n for n, _ in self.nodes]


Distance = Callable[[Sequence[Dict[str, np.ndarray]], Sequence[Dict[str, np.ndarray]]], float]


def rank_layers(
    qmodel: Any,
    fp32: Any,
    batches: Sequence[np.ndarray],
    candidates: Sequence[str],
    threads: int = 0,
    tick: Optional[Callable[[int], None]] = None,
    distance: Optional[Distance] = None,
) -> Ranking:
    """Leave-one-out sensitivity: distance to FP32 with each node alone taken back to float.

    ``distance`` compares FP32 and candidate outputs (default :func:`output_error`; the
    calibrate command passes :func:`detection_distance` over the daemon's decoder).
    """
    dist = distance or output_error
    ref = _run(fp32, batches, threads)
    base = dist(ref, _run(qmodel, batches, threads))
    rows = []
    for node in candidates:
        err = dist(ref, _run(unquantize(qmodel, fp32, [node]), batches, threads))
        rows.append((node, err))
        if tick:
            tick(1)
    rows.sort(key=lambda r: r[1])
    return Ranking(base, rows)


Score = Callable[[List[str]], Tuple[bool, Any]]  # excluded nodes → (within budget, result)


def search(order: Sequence[str], within: Score, max_keep: Optional[int] = None) -> Tuple[int, Dict[int, Any]]:
    """The fewest top-k nodes of ``order`` to keep in float so that ``within`` passes.

    Doubling (1, 2, 4, ...) until it passes, then bisection between the last failure and
    the first pass. Returns (k, results by k); k is -1 when even ``max_keep`` fails.
    """
    limit = len(order) if max_keep is None else min(max_keep, len(order))
    results: Dict[int, Any] = {}

    def test(k: int) -> bool:
        ok, res = within(list(order[:k]))
        results[k] = (ok, res)
        return ok

    lo, k = 0, 1  # lo: known failure (k=0 is the fully quantized model, known to miss)
    hi = -1
    while k <= limit:
        if test(k):
            hi = k
            break
        lo = k
        k = min(limit, k * 2) if k < limit else limit + 1
    if hi < 0:
        return -1, results
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if test(mid):
            hi = mid
        else:
            lo = mid
    return hi, results


def detection_distance(decode_ref: Callable[[Dict[str, np.ndarray]], List[Any]],
                       decode_low: Callable[[Dict[str, np.ndarray]], List[Any]]) -> Distance:
    """How far a candidate's detections are from FP32's, per FP32 detection (0 = the same).

    Each detection FP32 publishes (``decode_ref``) is matched to the candidate's best box of
    the same class among its low-threshold detections (``decode_low``); it costs
    ``1 - IoU`` plus the score difference, or ``1 + score`` when nothing matches. Unlike
    mAP this is continuous and weighted by instance, so it ranks layers on few frames.
    """
    from edge.calibrate.evaluate import _iou

    def distance(ref: Sequence[Dict[str, np.ndarray]], cand: Sequence[Dict[str, np.ndarray]]) -> float:
        total, count = 0.0, 0
        for r_out, c_out in zip(ref, cand):
            for r, c in zip(decode_ref(r_out), decode_low(c_out)):
                if not len(r):
                    continue
                count += len(r)
                if not len(c):
                    total += float(np.sum(1.0 + r.scores))
                    continue
                iou = _iou(r.boxes, c.boxes)
                iou[r.class_ids[:, None] != c.class_ids[None, :]] = 0.0
                j = np.argmax(iou, axis=1)
                best = iou[np.arange(len(r)), j]
                cost = np.where(best > 0, 1.0 - best + np.abs(r.scores - c.scores[j]), 1.0 + r.scores)
                total += float(np.sum(cost))
        return total / max(count, 1)

    return distance

"""ONNX graph helpers for calibration: repairs, activation listing and augmentation.

A detector converted from another framework can carry values no INT8 scale can express.
The known case is a ``Pad`` with ``-inf`` in front of a ``MaxPool`` (a TF ``PadV2``):
its range is ``[-inf, x]`` and any calibrator derives an infinite scale from it. That Pad
folds into the MaxPool's own ``pads`` (ONNX MaxPool pads with ``-inf`` implicitly), which
is bit-identical in float. Other non-finite tensors are reported by the statistics pass.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

log = logging.getLogger(__name__)

# Ops whose inputs get Q/DQ nodes in a TensorRT-style explicitly quantized model.
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        from edge.errors import HardwareError

        raise HardwareError(
            "the onnx package is not installed", "pip install 'edge-detector[calibrate]'"
        ) from None
    return onnx


def load(path: Any) -> Any:
    from edge.errors import ModelError

    onnx = _onnx()
    try:
        return onnx.load(str(path))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read ONNX model {path}: {exc}", "is it a valid .onnx file?") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, not a ValueError
        raise ModelError(f"cannot parse ONNX model {path}: {type(exc).__name__}", "is it a valid .onnx file?") from None


def _const(model: Any, name: str) -> Optional[np.ndarray]:
    onnx = _onnx()
    for init in model.graph.initializer:
        if init.name == name:
            return np.asarray(onnx.numpy_helper.to_array(init))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for a in node.attribute:
                if a.name == "value":
                    return np.asarray(onnx.numpy_helper.to_array(a.t))
    return None


def consumers(model: Any) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for node in model.graph.node:
        for i in node.input:
            out.setdefault(i, []).append(node)
    return out


def _attr(node: Any, name: str, default: Any = None) -> Any:
    onnx = _onnx()
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def fold_neg_inf_pads(model: Any) -> List[str]:
    """Fold ``Pad(-inf) → MaxPool`` pairs into the MaxPool; returns a note per fold.

    Done only where it is exactly equivalent: constant mode, ``-inf`` value, padding on the
    spatial axes only, every consumer a MaxPool without padding of its own, and the pads
    smaller than the kernel.
    """
    onnx = _onnx()
    notes: List[str] = []
    users = consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    remove: List[Any] = []
    for node in model.graph.node:
        if node.op_type != "Pad" or node.output[0] in graph_outputs:
            continue
        if (_attr(node, "mode", b"constant") or b"constant") not in (b"constant", "constant"):
            continue
        pads = _attr(node, "pads")
        value: Optional[float] = _attr(node, "value")
        if pads is None and len(node.input) > 1:
            arr = _const(model, node.input[1])
            pads = None if arr is None else [int(v) for v in arr.ravel()]
        if len(node.input) > 2 and node.input[2]:
            arr = _const(model, node.input[2])
            value = None if arr is None or arr.size != 1 else float(arr.ravel()[0])
        if len(node.input) > 3 and node.input[3]:
            continue  # explicit axes: not worth the bookkeeping
        if pads is None or value is None or not np.isneginf(value) or len(pads) % 2:
            continue
        rank = len(pads) // 2
        begin, end = pads[:rank], pads[rank:]
        if rank < 3 or any(begin[:2]) or any(end[:2]) or min(pads) < 0:
            continue
        spatial = list(begin[2:]) + list(end[2:])
        pools = users.get(node.output[0], [])
        if not pools or any(p.op_type != "MaxPool" for p in pools):
            continue
        ok = True
        for p in pools:
            kernel = _attr(p, "kernel_shape", [])
            own = _attr(p, "pads", [0] * len(spatial))
            auto = _attr(p, "auto_pad", b"NOTSET")
            fits = len(kernel) == rank - 2 and all(b < k and e < k for b, e, k in zip(begin[2:], end[2:], kernel))
            if any(own) or auto not in (b"NOTSET", "NOTSET") or not fits:
                ok = False
        if not ok:
            continue
        for p in pools:
            kept = [a for a in p.attribute if a.name not in ("pads", "auto_pad")]
            del p.attribute[:]
            p.attribute.extend(kept)
            p.attribute.append(onnx.helper.make_attribute("pads", spatial))
            p.input[0] = node.input[0]
        remove.append(node)
        notes.append(f"folded the -inf Pad {node.name!r} into MaxPool {', '.join(repr(p.name) for p in pools)}")
    for node in remove:
        model.graph.node.remove(node)
    if remove:
        used = {i for n in model.graph.node for i in n.input}
        for init in [i for i in model.graph.initializer if i.name not in used]:
            model.graph.initializer.remove(init)
    return notes


def activations(model: Any) -> List[str]:
    """Every float tensor computed at run time (graph input and node outputs), in graph order."""
    onnx = _onnx()
    inits = {i.name for i in model.graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model)
    types: Dict[str, int] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    names: List[str] = []
    seen: Set[str] = set()
    for vi in model.graph.input:
        if vi.name not in inits and types.get(vi.name) in float_types:
            names.append(vi.name)
            seen.add(vi.name)
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for o in node.output:
            if o and o not in seen and types.get(o) in float_types:
                names.append(o)
                seen.add(o)
    return names


def quantizable_nodes(model: Any, op_types: Sequence[str] = QUANTIZED_OPS) -> List[Tuple[str, str]]:
    """(node name, its activation input) for every node that gets INT8 inputs, in graph order."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in op_types and node.input and node.input[0] not in inits:
            out.append((node.name, node.input[0]))
    return out


def augmented(model: Any, names: Sequence[str]) -> Any:
    """A copy of ``model`` that also outputs the tensors ``names``."""
    onnx = _onnx()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    for n in names:
        if n not in present:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    return m


def ensure_node_names(model: Any) -> None:
    """Give every unnamed node a stable name (exclusion lists and reports name nodes)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)

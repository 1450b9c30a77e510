"""Recognise a detector's output layout from its output shapes (or take the configured one).

Grid sizes follow from the input size and the strides: G = Σ ceil(W/s)·ceil(H/s) cells.
  NanoDet/GFL  pairs [B,G_s,C] + [B,G_s,4(R+1)] per stride, or fused [B,G,C+4(R+1)]
  YOLOv5/v7    [B,3G,5+C]          (three anchors per cell)
  YOLOv8/11    [B,4+C,G]
  end-to-end   [B,K,6]             (x1,y1,x2,y2,score,class; K not tied to the grid)
  EfficientNMS [B,1], [B,K,4], [B,K], [B,K]
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edge.errors import ModelError
from edge.infer.base import TensorSpec
from edge.postprocess.decoder import Decoder
from edge.postprocess.end2end import EfficientNmsDecoder, End2EndDecoder
from edge.postprocess.nanodet import NanoDetDecoder
from edge.postprocess.yolo import Yolov5Decoder, Yolov8Decoder

FORMATS = ("nanodet", "yolov5", "yolov8", "end2end", "efficientnms")


def _grid(w: int, h: int, strides: Sequence[int]) -> List[int]:
    return [(-(-w // s)) * (-(-h // s)) for s in strides]


def _describe(outputs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{o.name} {list(o.shape)}" for o in outputs)


def _dims(spec: TensorSpec) -> Tuple[int, ...]:
    return tuple(d if isinstance(d, int) else -1 for d in spec.shape[1:])


def _is_int(spec: TensorSpec) -> bool:
    return spec.dtype.startswith(("int", "uint"))


class _Recogniser:
    def __init__(self, outputs: Sequence[TensorSpec], w: int, h: int, strides: Sequence[int], classes: int):
        self.outputs = list(outputs)
        self.w, self.h = w, h
        self.strides = list(strides)
        self.grids = _grid(w, h, strides)
        self.cells = sum(self.grids)
        self.classes = classes  # number of labels, 0 if unknown

    def check_classes(self, found: int) -> int:
        if self.classes and found != self.classes:
            raise ModelError(
                f"the model predicts {found} classes but model.labels has {self.classes}",
                "set model.labels to the model's class names",
            )
        return found

    def nanodet(self, reg_max: Optional[int]) -> Optional[Decoder]:
        outs = self.outputs
        if len(outs) == 1 and len(_dims(outs[0])) == 2:
            return self._nanodet_fused(outs[0], reg_max)
        if len(outs) != 2 * len(self.strides) or any(len(_dims(o)) != 2 for o in outs):
            return None
        pairs = []
        for cells in self.grids:
            same = [o for o in outs if _dims(o)[0] == cells]
            if len(same) != 2:
                return None
            pairs.append(same)
        widths = {frozenset(_dims(o)[1] for o in pair) for pair in pairs}
        if len(widths) != 1:
            return None
        pair_widths = sorted(next(iter(widths)))
        if len(pair_widths) != 2:
            return None  # both tensors of a level have the same width: not a scores + distributions pair
        c, dist_w = self._split_widths(pair_widths[0], pair_widths[1], reg_max)
        if dist_w % 4 or dist_w < 8:
            return None
        levels = []
        for pair in pairs:
            cls = pair[0] if _dims(pair[0])[1] == c else pair[1]
            dist = pair[1] if cls is pair[0] else pair[0]
            levels.append((cls.name, dist.name))
        return NanoDetDecoder(levels, self.strides, self.w, self.h, c, dist_w // 4 - 1)

    def _split_widths(self, a: int, b: int, reg_max: Optional[int]) -> Tuple[int, int]:
        """(class count, distribution width) of a level whose two tensors have widths a and b."""
        if reg_max is not None and 4 * (reg_max + 1) in (a, b):
            dist_w = 4 * (reg_max + 1)
            return self.check_classes(b if dist_w == a else a), dist_w
        if self.classes in (a, b):
            return self.classes, b if self.classes == a else a
        multiples = [w for w in (a, b) if w % 4 == 0]
        if len(multiples) == 1:
            dist_w = multiples[0]
            return self.check_classes(b if dist_w == a else a), dist_w
        if self.classes:
            raise ModelError(
                f"the model's NanoDet outputs have {a} and {b} columns; neither matches the "
                f"{self.classes} names in model.labels",
                "set model.labels to the model's class names; set model.reg_max if the distribution width is unusual",
            )
        return b, a  # no labels to go by: take the narrower one as the distributions

    def _nanodet_fused(self, out: TensorSpec, reg_max: Optional[int]) -> Optional[Decoder]:
        n, a = _dims(out)
        if n != self.cells:
            return None
        if reg_max is not None:
            c = self.check_classes(a - 4 * (reg_max + 1))
        elif self.classes:
            c = self.classes
        else:
            return None
        dist_w = a - c
        if c < 1 or dist_w % 4 or dist_w < 8:
            return None
        return NanoDetDecoder([(out.name, out.name)], self.strides, self.w, self.h, c, dist_w // 4 - 1, fused=True)

    def _one_3d(self) -> Optional[Tuple[TensorSpec, int, int]]:
        if len(self.outputs) != 1 or len(_dims(self.outputs[0])) != 2:
            return None
        o = self.outputs[0]
        n, a = _dims(o)
        return o, n, a

    def auto_single(self) -> Optional[Decoder]:
        """A single [B,N,A] output recognised from the grid size."""
        one = self._one_3d()
        if one is None:
            return None
        o, n, a = one
        if n == 3 * self.cells and a > 5:
            return Yolov5Decoder(o.name, self.check_classes(a - 5))
        if a == self.cells and n > 4:
            return Yolov8Decoder(o.name, self.check_classes(n - 4))
        if a == 6 and n > 0:
            return End2EndDecoder(o.name, self.classes or 80)
        return None

    def yolov5(self) -> Optional[Decoder]:
        """Forced: any single [B,N,5+C] output (N need not match the grid)."""
        one = self._one_3d()
        if one is None or one[2] <= 5:
            return None
        return Yolov5Decoder(one[0].name, self.check_classes(one[2] - 5))

    def yolov8(self) -> Optional[Decoder]:
        """Forced: any single [B,4+C,N] output."""
        one = self._one_3d()
        if one is None or one[1] <= 4:
            return None
        return Yolov8Decoder(one[0].name, self.check_classes(one[1] - 4))

    def end2end(self) -> Optional[Decoder]:
        one = self._one_3d()
        if one is None or one[2] != 6:
            return None
        return End2EndDecoder(one[0].name, self.classes or 80)

    def efficientnms(self) -> Optional[Decoder]:
        """num_detections [B,1], boxes [B,K,4], scores [B,K], classes [B,K], in any order."""
        if len(self.outputs) != 4:
            return None
        boxes = [o for o in self.outputs if len(_dims(o)) == 2 and _dims(o)[1] == 4]
        if len(boxes) != 1:
            return None
        k = _dims(boxes[0])[:1]
        rest = [o for o in self.outputs if o is not boxes[0]]
        if any(_dims(o) not in ((), (1,), k) for o in rest):
            return None
        num = [o for o in rest if _dims(o) != k]
        if not num:  # K == 1: every other output is [B,1]; go by name, then by position
            num = [o for o in rest if "num" in o.name.lower()] or rest[:1]
        if len(num) != 1:
            return None
        scores, classes = [o for o in rest if o is not num[0]]
        # Class ids are the integer tensor; if both are float, go by name, then by position.
        if _is_int(scores) != _is_int(classes):
            swap = _is_int(scores)
        else:
            swap = any(w in scores.name.lower() for w in ("class", "label"))
        if swap:
            scores, classes = classes, scores
        return EfficientNmsDecoder(num[0].name, boxes[0].name, scores.name, classes.name, self.classes or 80)


def make_decoder(
    outputs: Sequence[TensorSpec],
    input_w: int,
    input_h: int,
    num_classes: int,
    fmt: str = "auto",
    strides: Sequence[int] = (8, 16, 32),
    reg_max: Optional[int] = None,
) -> Decoder:
    """The decoder for these outputs; ModelError naming the shapes when none fits.

    ``auto`` recognises the layout from the output shapes and the grid the input size and
    strides imply. A named ``fmt`` forces that layout and needs only its output ranks and
    widths to fit (e.g. a YOLOv5 head whose row count matches no grid). ``num_classes`` is
    the number of labels (0: unknown); a model predicting another number is a ModelError.
    """
    r = _Recogniser(outputs, input_w, input_h, strides, num_classes)
    tries: Dict[str, Callable[[], Optional[Decoder]]] = {
        "nanodet": lambda: r.nanodet(reg_max),
        "yolov5": r.yolov5,
        "yolov8": r.yolov8,
        "end2end": r.end2end,
        "efficientnms": r.efficientnms,
    }
    if fmt == "auto":
        order = [lambda: r.nanodet(reg_max), r.auto_single, r.efficientnms]
    elif fmt in tries:
        order = [tries[fmt]]
    else:
        raise ModelError(f"unknown model.format {fmt!r}", f"use auto or one of {', '.join(FORMATS)}")
    for attempt in order:
        dec = attempt()
        if dec is not None:
            return dec
    what = "a known detector output layout" if fmt == "auto" else f"the {fmt} layout"
    raise ModelError(
        f"model outputs ({_describe(outputs)}) for a {input_w}x{input_h} input do not match {what}",
        "set model.format (nanodet, yolov5, yolov8, end2end, efficientnms) and check model.strides",
    )

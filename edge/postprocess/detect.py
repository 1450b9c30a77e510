"""Recognise a detector's output layout from its output shapes (or take the configured one).

Grid sizes follow from the input size and the strides: G = Σ ceil(W/s)·ceil(H/s) cells.
  NanoDet/GFL  pairs [B,G_s,C] + [B,G_s,4(R+1)] per stride, or fused [B,G,C+4(R+1)]
  YOLOv5/v7    [B,3G,5+C]          (three anchors per cell)
  YOLOv8/11    [B,4+C,G]
  end-to-end   [B,K,6]             (x1,y1,x2,y2,score,class; K not tied to the grid)
  EfficientNMS [B,1], [B,K,4], [B,K], [B,K]
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

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
            n, a = _dims(outs[0])
            if n != self.cells or not self.classes or (a - self.classes) % 4 or a - self.classes < 8:
                return None
            r = reg_max if reg_max is not None else (a - self.classes) // 4 - 1
            return NanoDetDecoder([(outs[0].name, outs[0].name)], self.strides, self.w, self.h,
                                  self.classes, r, fused=True)
        if len(outs) != 2 * len(self.strides) or any(len(_dims(o)) != 2 for o in outs):
            return None
        levels = []
        for cells in self.grids:
            same = [o for o in outs if _dims(o)[0] == cells]
            if len(same) != 2:
                return None
            # Class scores have C columns; distributions have 4(R+1), a multiple of 4.
            a, b = same
            if self.classes:
                cls = a if _dims(a)[1] == self.classes else b if _dims(b)[1] == self.classes else None
            else:
                cls = a if _dims(a)[1] % 4 else b if _dims(b)[1] % 4 else None
            if cls is None:
                return None
            dist = b if cls is a else a
            levels.append((cls.name, dist.name))
        c = self.check_classes(_dims(outs[[o.name for o in outs].index(levels[0][0])])[1])
        dist_w = _dims(next(o for o in outs if o.name == levels[0][1]))[1]
        if dist_w % 4:
            return None
        return NanoDetDecoder(levels, self.strides, self.w, self.h, c, reg_max if reg_max else dist_w // 4 - 1)

    def single(self) -> Optional[Decoder]:
        if len(self.outputs) != 1 or len(_dims(self.outputs[0])) != 2:
            return None
        o = self.outputs[0]
        n, a = _dims(o)
        if n == 3 * self.cells and a > 5:
            return Yolov5Decoder(o.name, self.check_classes(a - 5))
        if a == self.cells and n > 4:
            return Yolov8Decoder(o.name, self.check_classes(n - 4))
        if a == 6 and n > 0:
            return End2EndDecoder(o.name, self.classes or 80)
        return None

    def efficientnms(self) -> Optional[Decoder]:
        if len(self.outputs) != 4:
            return None
        num, boxes, scores, classes = self.outputs
        nd, bd, sd, cd = (_dims(x) for x in self.outputs)
        if len(nd) <= 1 and len(bd) == 2 and bd[1] == 4 and sd == cd == bd[:1]:
            return EfficientNmsDecoder(num.name, boxes.name, scores.name, classes.name, self.classes or 80)
        return None


def make_decoder(
    outputs: Sequence[TensorSpec],
    input_w: int,
    input_h: int,
    num_classes: int,
    fmt: str = "auto",
    strides: Sequence[int] = (8, 16, 32),
    reg_max: Optional[int] = None,
) -> Decoder:
    """The decoder for these outputs; ModelError naming the shapes when none fits."""
    r = _Recogniser(outputs, input_w, input_h, strides, num_classes)
    tries = {
        "nanodet": lambda: r.nanodet(reg_max),
        "yolov5": lambda: _only(r.single(), Yolov5Decoder),
        "yolov8": lambda: _only(r.single(), Yolov8Decoder),
        "end2end": lambda: _only(r.single(), End2EndDecoder) or _end2end(outputs, num_classes),
        "efficientnms": r.efficientnms,
    }
    order = list(tries) if fmt == "auto" else [fmt]
    for name in order:
        dec = tries[name]()
        if dec is not None:
            return dec
    what = "a known detector output layout" if fmt == "auto" else f"the {fmt} layout"
    raise ModelError(
        f"model outputs ({_describe(outputs)}) for a {input_w}x{input_h} input do not match {what}",
        "set model.format (nanodet, yolov5, yolov8, end2end, efficientnms) and check model.strides",
    )


def _only(dec: Optional[Decoder], kind: type) -> Optional[Decoder]:
    return dec if isinstance(dec, kind) else None


def _end2end(outputs: Sequence[TensorSpec], classes: int) -> Optional[Decoder]:
    if len(outputs) == 1 and len(_dims(outputs[0])) == 2 and _dims(outputs[0])[1] == 6:
        return End2EndDecoder(outputs[0].name, classes or 80)
    return None

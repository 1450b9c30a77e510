"""NanoDet / GFL heads: per-level class scores (after sigmoid) and box distributions."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from edge.postprocess.decoder import Candidates, Decoder, empty, select_scores


class NanoDetDecoder(Decoder):
    """Decodes GFL outputs: distances to the box sides as a softmax over ``reg_max + 1`` bins.

    ``levels`` lists, per stride, the names of the class-score tensor [B, H*W, C] and the
    distribution tensor [B, H*W, 4*(reg_max+1)]. A single fused output [B, N, C + 4*(R+1)]
    (NanoDet-Plus export) is given as the same name twice.
    """

    name = "nanodet"

    def __init__(
        self,
        levels: Sequence[Tuple[str, str]],
        strides: Sequence[int],
        input_w: int,
        input_h: int,
        num_classes: int,
        reg_max: int,
        fused: bool = False,
    ) -> None:
        self.levels = list(levels)
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.fused = fused
        self._bins = np.arange(reg_max + 1, dtype=np.float32)
        centers: List[np.ndarray] = []
        for stride in strides:
            gw, gh = -(-input_w // stride), -(-input_h // stride)
            ys, xs = np.mgrid[0:gh, 0:gw]
            c = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], 1).astype(np.float32)
            centers.append(np.concatenate([c, np.full((c.shape[0], 1), stride, np.float32)], 1))
        # Per level, N×3: cx, cy, stride. A fused output holds every level's cells in one tensor.
        self._centers = [np.concatenate(centers, 0)] if fused else centers

    def _levels(self, outputs: Dict[str, np.ndarray], index: int) -> List[Tuple[np.ndarray, np.ndarray]]:
        if self.fused:
            t = outputs[self.levels[0][0]][index]
            return [(t[:, : self.num_classes], t[:, self.num_classes :])]
        return [(outputs[s][index], outputs[d][index]) for s, d in self.levels]

    def decode(self, outputs: Dict[str, np.ndarray], index: int, thresholds: np.ndarray) -> Candidates:
        # Level by level: concatenating the levels' score tensors would copy every score
        # of every frame, while only a handful of cells pass the threshold.
        parts = []
        for (scores, dists), centers in zip(self._levels(outputs, index), self._centers):
            rows, cls, conf = select_scores(scores, thresholds)
            if rows.size:
                parts.append((self._boxes(dists, centers, rows), conf, cls))
        if not parts:
            return empty()
        if len(parts) == 1:
            return parts[0]
        boxes, conf, cls = zip(*parts)
        return np.concatenate(boxes, 0), np.concatenate(conf), np.concatenate(cls)

    def _boxes(self, dists: np.ndarray, centers: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # Only the cells that passed get the softmax and the box maths.
        cells, inverse = np.unique(rows, return_inverse=True)
        d = dists[cells].astype(np.float32).reshape(-1, 4, self.reg_max + 1)
        d = np.exp(d - d.max(axis=2, keepdims=True))
        d /= d.sum(axis=2, keepdims=True)
        dist = d @ self._bins  # K×4: left, top, right, bottom in stride units
        cx, cy, stride = centers[cells].T
        boxes = np.stack(
            [cx - dist[:, 0] * stride, cy - dist[:, 1] * stride, cx + dist[:, 2] * stride, cy + dist[:, 3] * stride],
            1,
        )
        return boxes[inverse.reshape(-1)].astype(np.float32)

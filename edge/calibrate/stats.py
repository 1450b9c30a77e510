"""Streaming activation statistics and the clipping range (amax) they lead to.

Each tensor keeps its min, max, a count of non-finite values, and a histogram of ``|x|``
with fixed-width bins that grows as larger values appear (bins are merged pairwise
when there are too many). Memory per tensor is bounded (a few tens of KB) whatever the
number of frames, so calibrating on 500 frames costs no more memory than on 5; onnxruntime's
own entropy/percentile calibrators keep every intermediate tensor of every frame.

Ranges are symmetric (TensorRT needs zero points of 0): ``amax`` is the clipping value,
``scale = amax / 127``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional

import numpy as np

METHODS = ("max", "percentile", "entropy", "mse")
_MAX_BINS = 4096
_FIRST_BINS = 2048


@dataclass
class TensorStats:
    """Running statistics of one tensor over the calibration frames."""

    name: str
    lo: float = math.inf
    hi: float = -math.inf
    nonfinite: int = 0
    count: int = 0
    width: float = 0.0  # histogram bin width (0 until the first non-zero value)
    hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def update(self, x: np.ndarray) -> None:
        a = np.asarray(x, dtype=np.float32).ravel()
        finite = np.isfinite(a)
        bad = int(a.size - np.count_nonzero(finite))
        if bad:
            self.nonfinite += bad
            a = a[finite]
        if a.size == 0:
            return
        self.count += int(a.size)
        self.lo = min(self.lo, float(a.min()))
        self.hi = max(self.hi, float(a.max()))
        mag = np.abs(a)
        top = float(mag.max())
        if top == 0.0:
            self._add_zeros(int(a.size))
            return
        if self.width == 0.0:
            self.width = top / _FIRST_BINS
            self.hist = np.zeros(_FIRST_BINS, np.int64) if self.hist.size == 0 else self.hist
        need = int(math.floor(top / self.width)) + 1
        while need > _MAX_BINS:
            self._merge()
            need = int(math.floor(top / self.width)) + 1
        if need > self.hist.size:
            self.hist = np.concatenate([self.hist, np.zeros(need - self.hist.size, np.int64)])
        idx = np.minimum((mag / self.width).astype(np.int64), self.hist.size - 1)
        self.hist += np.bincount(idx, minlength=self.hist.size)

    def _add_zeros(self, n: int) -> None:
        if self.hist.size == 0:
            self.hist = np.zeros(1, np.int64)
        self.hist[0] += n

    def _merge(self) -> None:
        h = self.hist
        if h.size % 2:
            h = np.concatenate([h, np.zeros(1, np.int64)])
        self.hist = h.reshape(-1, 2).sum(1)
        self.width *= 2

    @property
    def absmax(self) -> float:
        return max(abs(self.lo), abs(self.hi)) if self.count else 0.0

    @property
    def finite(self) -> bool:
        return self.nonfinite == 0 and math.isfinite(self.lo) and math.isfinite(self.hi)

    def amax(self, method: str = "max", percentile: float = 99.99) -> float:
        """The clipping value for symmetric INT8 by ``method`` (see :data:`METHODS`)."""
        if self.count == 0 or self.width == 0.0:
            return self.absmax
        if method == "max":
            return self.absmax
        if method == "percentile":
            return _percentile(self.hist, self.width, percentile, self.absmax)
        if method == "entropy":
            return _entropy(self.hist, self.width, self.absmax)
        if method == "mse":
            return _mse(self.hist, self.width, self.absmax)
        raise ValueError(f"unknown calibration method {method!r}; one of {', '.join(METHODS)}")


def _percentile(hist: np.ndarray, width: float, pct: float, absmax: float) -> float:
    cdf = np.cumsum(hist)
    k = int(np.searchsorted(cdf, cdf[-1] * pct / 100.0))
    return min(absmax, (k + 1) * width)


def _mse(hist: np.ndarray, width: float, absmax: float) -> float:
    """The clip value that minimises the expected squared error of 8-bit symmetric rounding."""
    centers = (np.arange(hist.size) + 0.5) * width
    weights = hist.astype(np.float64)
    best, best_err = absmax, math.inf
    n = hist.size
    for stop in np.unique(np.linspace(max(8, n // 64), n, 128).astype(int)):
        amax = stop * width
        step = amax / 127.0
        inside = centers <= amax
        err_in = (step * step / 12.0) * weights[inside].sum()
        err_out = float(((centers[~inside] - amax) ** 2 * weights[~inside]).sum())
        err = err_in + err_out
        if err < best_err:
            best, best_err = amax, err
    return min(best, absmax)


def _entropy(hist: np.ndarray, width: float, absmax: float, levels: int = 128) -> float:
    """TensorRT-style KL-divergence calibration on the |x| histogram."""
    h = hist.astype(np.float64)
    n = h.size
    if n <= levels:
        return absmax
    best, best_kl = n, math.inf
    for stop in range(levels, n + 1, max(1, (n - levels) // 256)):
        p = h[:stop].copy()
        p[stop - 1] += h[stop:].sum()
        nz = p > 0
        # Quantize the first `stop` bins into `levels` groups, expand back uniformly over non-zero bins.
        edges = np.linspace(0, stop, levels + 1).astype(int)
        src = h[:stop]
        used = src > 0
        sums = np.add.reduceat(src, edges[:-1])
        counts = np.add.reduceat(used.astype(np.float64), edges[:-1])
        mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        q = np.repeat(mean, np.diff(edges)) * used
        ps, qs = p.sum(), q.sum()
        if ps == 0 or qs == 0:
            continue
        pn, qn = p / ps, q / qs
        ok = nz & (qn > 0)
        kl = float(np.sum(pn[ok] * np.log(pn[ok] / qn[ok]))) + float(pn[nz & (qn == 0)].sum()) * 10.0
        if kl < best_kl:
            best, best_kl = stop, kl
    return min(absmax, (best + 0.5) * width)


class StatsCollector:
    """Statistics for a set of named tensors, fed one inference result at a time."""

    def __init__(self, names: Iterable[str]) -> None:
        self.stats: Dict[str, TensorStats] = {n: TensorStats(n) for n in names}
        self.frames = 0

    def update(self, outputs: Dict[str, np.ndarray]) -> None:
        for name, st in self.stats.items():
            x = outputs.get(name)
            if x is not None:
                st.update(x)
        self.frames += 1

    def amax(self, method: str, percentile: float = 99.99) -> Dict[str, float]:
        return {n: s.amax(method, percentile) for n, s in self.stats.items() if s.count}

    def nonfinite(self) -> Dict[str, TensorStats]:
        """Tensors that held inf or NaN in any calibration frame."""
        return {n: s for n, s in self.stats.items() if not s.finite}

    def get(self, name: str) -> Optional[TensorStats]:
        return self.stats.get(name)

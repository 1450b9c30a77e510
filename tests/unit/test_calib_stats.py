"""Streaming activation statistics and the clipping rules."""

from __future__ import annotations

import numpy as np
import pytest

from edge.calibrate.stats import StatsCollector, TensorStats


def test_max_percentile_and_bounded_memory() -> None:
    rng = np.random.default_rng(0)
    st = TensorStats("x")
    chunks = [rng.normal(0, 1, 50_000).astype(np.float32) for _ in range(20)]
    chunks.append(np.array([40.0, -60.0], np.float32))  # rare outliers that grow the histogram
    for c in chunks:
        st.update(c)
    allv = np.abs(np.concatenate(chunks))
    assert st.amax("max") == pytest.approx(60.0)
    assert st.lo == pytest.approx(-60.0) and st.hi == pytest.approx(40.0)
    assert st.hist.size <= 4096  # bins merge instead of growing without bound
    p = st.amax("percentile", 99.9)
    assert abs(p - np.percentile(allv, 99.9)) <= 2 * st.width
    for rule in ("mse", "entropy"):
        a = st.amax(rule)
        assert 2.0 < a < 60.0  # clips the outliers, keeps the bulk of a unit normal


def test_nonfinite_values_are_counted_not_binned() -> None:
    col = StatsCollector(["a", "b"])
    col.update({"a": np.array([1.0, -np.inf, 2.0], np.float32), "b": np.zeros(4, np.float32)})
    col.update({"a": np.array([np.nan, 0.5], np.float32)})
    assert col.get("a").nonfinite == 2 and col.get("a").amax("max") == pytest.approx(2.0)
    assert set(col.nonfinite()) == {"a"}
    assert col.get("b").amax("max") == 0.0 and col.frames == 2
    with pytest.raises(ValueError, match="unknown calibration method"):
        col.get("a").amax("magic")

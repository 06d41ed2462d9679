"""Statistics the benchmark scripts and the report share (one copy each, on scipy)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def geomean(values):
    """Geometric mean of the positive values (``None`` and non-positive ones are left out); None if none."""
    kept = [float(v) for v in values if v is not None and v > 0]
    return float(stats.gmean(kept)) if kept else None


def r2_linear(x, y):
    """``(R², slope, intercept)`` of the least-squares line through ``(x, y)``."""
    fit = stats.linregress(np.asarray(x, float), np.asarray(y, float))
    return float(fit.rvalue) ** 2, float(fit.slope), float(fit.intercept)

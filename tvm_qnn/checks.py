"""Argument checks at the public boundary: one place for the type/range/finite tests.

Every public function (``compile``, ``quantize``, ``calibrate``, ``from_torch``, ``benchmark``,
remote runs) and every CLI flag calls these first, so a wrong argument is one line naming the
argument and what was expected, not a traceback from deep inside TVM or torch.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import ArgumentError, QuantizationError

__all__ = ["ArgumentError", "check_finite_input", "check_module", "non_negative_int",
           "positive_float", "positive_int"]


def positive_int(value, name):
    """``value`` as an int >= 1 (ArgumentError naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ArgumentError(f"{name}={value!r}; expected an integer >= 1")
    return int(value)


def non_negative_int(value, name):
    """``value`` as an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ArgumentError(f"{name}={value!r}; expected an integer >= 0")
    return int(value)


def positive_float(value, name):
    """``value`` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ArgumentError(f"{name}={value!r}; expected a finite number > 0")
    return float(value)


def nonfinite_counts(array):
    """``(NaN count, +-inf count)`` of a float array (0, 0 for integer arrays)."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.complexfloating):
        return 0, 0
    return int(np.count_nonzero(np.isnan(array))), int(np.count_nonzero(np.isinf(array)))


RUN_CONSEQUENCE = ("quantized layers would clip them to finite codes and answer wrongly "
                   "(pass check_finite=False to run anyway)")


def check_finite_input(array, where, consequence=RUN_CONSEQUENCE):
    """QuantizationError naming ``where`` and the NaN/inf counts if ``array`` is not all finite."""
    nans, infs = nonfinite_counts(array)
    if nans or infs:
        raise QuantizationError(f"{where} holds {nans} NaN and {infs} inf value(s) of {np.size(array)}; "
                                f"{consequence}")
    return array


def check_module(mod, where):
    """ArgumentError unless ``mod`` is a Relax IRModule with a ``main`` function."""
    import tvm

    if not isinstance(mod, tvm.IRModule):
        got = f"{type(mod).__name__} {mod!r}"[:80] if mod is not None else "None"
        raise ArgumentError(f"{where}: expected a Relax IRModule (from tvm_qnn.from_torch / from_onnx / "
                            f"quantize), got {got}")
    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise ArgumentError(f"{where}: the IRModule has no 'main' function")
    return mod

"""Post-training quantization (the baseline QAT is measured against).

``ptq(model, loader, w_bits, a_bits, scheme)`` folds BN, takes the weight LUTs straight from the
trained weights (k-quantile or NICE uniform, ``reference``'s quantizers) and each quantized
layer's clamp from the statistics of its float input on ``batches`` calibration batches
(``initial_clamp``: least-MSE percentile by default) -- no training. It is the same code path
QAT uses before its first step, so QAT's gain over PTQ is the gain of training alone.
"""

from __future__ import annotations

import itertools

from .export import export_recipe
from .qmodel import QuantConfig, calibrate_clamps, prepare_qat


def ptq(model, loader, w_bits=2, a_bits=2, scheme="kquantile", per_channel=False, fp32_layers=None,
        batches=8, clamp_init="mse", model_name=""):
    """Recipe from a trained float model and a few calibration batches (see module doc)."""
    config = QuantConfig(w_bits, a_bits, scheme, per_channel, fp32_layers, clamp_init=clamp_init)
    qat = prepare_qat(model, config)
    calibrate_clamps(qat, itertools.islice(loader, batches))
    return export_recipe(qat, model_name)

"""Random QnnLayers built from reference data (weights quantized by the reference's own LUTs)."""

from __future__ import annotations

import numpy as np

from tvm_qnn import reference
from tvm_qnn.layer import QnnLayer

EPILOGUES = {"none": (None, None), "relu": (0.0, None), "relu6": (0.0, 6.0)}


def random_layer(rng, *, kind="conv2d", batch=1, channels=8, out_channels=8, size=6, kernel=3, stride=1,
                 padding=1, groups=1, w_bits=2, a_bits=2, scheme="kquantile", per_channel=True,
                 bias=True, epilogue="relu", a_clamp=2.0, a_zero_point=0):
    if kind == "dense":
        weight = rng.normal(size=(out_channels, channels))
        input_shape = (batch, channels)
    else:
        weight = rng.normal(size=(out_channels, channels // groups, kernel, kernel))
        input_shape = (batch, channels, size, size)
    make_lut = reference.kquantile_lut if scheme == "kquantile" else reference.uniform_lut
    idx, lut = make_lut(weight, w_bits, per_channel=per_channel)
    lo, hi = EPILOGUES[epilogue]
    extra = dict(stride=(stride, stride), padding=reference.padding4(padding), groups=groups) if kind == "conv2d" else {}
    # uniform layers must take the bit-plane path and k-quantile ones the one-hot path
    assert reference.lut_is_affine(lut) == (scheme == "uniform" or w_bits == 1), f"{scheme} LUT at w{w_bits}"
    return QnnLayer(name="test.layer", kind=kind, weight_idx=idx.astype(np.uint8), lut=lut,
                    bias=rng.normal(size=out_channels).astype(np.float32) if bias else None,
                    w_bits=w_bits, w_scheme=scheme, a_bits=a_bits, a_clamp=a_clamp,
                    input_shape=input_shape, out_min=lo, out_max=hi, a_zero_point=a_zero_point, **extra)


def random_input(rng, layer):
    # spread over [-0.5 - 1.3 z s_a, 1.3 * clamp]: negative, in-range and clipped activations all occur
    low = -0.5 - 1.3 * layer.a_zero_point * float(layer.s_a)
    return rng.uniform(low, 1.3 * layer.a_clamp, size=layer.input_shape).astype(np.float32)

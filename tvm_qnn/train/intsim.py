"""The deployed integer-only arithmetic (DESIGN's integer-only mode), in torch.

Two parts:

* **bit-exact kernels** -- :func:`qconv2d_int` / :func:`qdense_int`: int32 accumulator
  ``acc[o] = sum lut_int[o, idx] (q_a - z) + bias_int[o]`` (exact: formed in float64, whose
  53-bit mantissa holds every int32 sum, then checked against the int32 range) and the
  fixed-point requant ``clip(((acc M[o] + 2^(sh-1)) >> sh) + z_next, lo, hi)`` in int64, as
  ``tvm_qnn.reference.qconv2d_int`` and the ``fpga`` / ``cpu integer_only`` targets compute it;
* **training simulation** -- :func:`integer_weight_bias`, used by a QAT layer with
  ``integer_sim`` set (``qmodel.set_integer_sim``; the gradual schedule sets it for its last
  epoch with ``integer_final=True``): the layer computes with the weights ``s_w[o] lut_int[o, idx]``
  and the bias ``s_a s_w[o] bias_int[o]`` of ``reference.integer_requant_params`` -- the int8
  LUT rounding and the int32 bias rounding the accelerator applies -- with straight-through
  gradients to the float weight and bias. The layer's output is then ``s_a s_w acc`` (the
  accumulator the core computes, dequantized); the next layer's activation quantizer
  ``floor(y / s_next + 0.5)`` is the requant ``(acc M + 2^(sh-1)) >> sh`` up to the rounding of
  ``M`` to 31 bits (relative error < 2^-30), i.e. only at exact code ties.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import reference
from ..errors import QuantizationError
from .quantizers import straight_through

INT32 = 2**31


def _acc_check(acc, where):
    if bool((acc.abs() >= INT32).any()):
        raise QuantizationError(f"{where}: accumulator overflows int32")
    return acc.to(torch.int64)


def requantize(acc, multiplier, shift, out_bits, upper=None, zero_point=0):
    """``clip(((acc M[o] + 2^(sh-1)) >> sh) + z, 0, hi)`` (uint8) in int64 torch; channels on axis 1."""
    out_bits = reference.check_bits(out_bits, "a_bits")
    shape = (1, -1) + (1,) * (acc.dim() - 2)
    m = torch.as_tensor(np.asarray(multiplier, dtype=np.int64)).reshape(shape)
    sh = torch.as_tensor(np.asarray(shift, dtype=np.int64)).reshape(shape)
    rounding = torch.where(sh > 0, torch.ones_like(sh) << (sh - 1).clamp_min(0), torch.zeros_like(sh))
    value = ((acc.to(torch.int64) * m + rounding) >> sh) + int(zero_point)
    hi = (1 << out_bits) - 1 if upper is None else min((1 << out_bits) - 1, int(upper))
    return value.clamp(0, hi).to(torch.uint8)


def _int_weight(idx, lut_int):
    idx = torch.as_tensor(np.asarray(idx)).to(torch.int64)
    rows = torch.as_tensor(np.atleast_2d(np.asarray(lut_int, dtype=np.float64)))
    rows = rows.expand(idx.shape[0], rows.shape[1])
    flat = idx.reshape(idx.shape[0], -1)
    return torch.gather(rows, 1, flat).reshape(idx.shape)


def qconv2d_int_acc(act_codes, idx, lut_int, bias_int, stride=1, padding=0, groups=1, dilation=1, zero_point=0):
    """int32 accumulator (as int64 tensor) of a conv in integer-only mode."""
    codes = torch.as_tensor(np.asarray(act_codes)).to(torch.float64) - float(zero_point)
    pad = reference.padding4(padding)  # (top, left, bottom, right)
    if pad[0] != pad[2] or pad[1] != pad[3]:
        codes = F.pad(codes, (pad[1], pad[3], pad[0], pad[2]))
        pad = (0, 0, 0, 0)
    acc = F.conv2d(codes, _int_weight(idx, lut_int), torch.as_tensor(np.asarray(bias_int, dtype=np.float64)),
                   stride, (pad[0], pad[1]), dilation, groups)
    return _acc_check(acc, "qconv2d_int")


def qdense_int_acc(act_codes, idx, lut_int, bias_int, zero_point=0):
    codes = torch.as_tensor(np.asarray(act_codes)).to(torch.float64) - float(zero_point)
    acc = F.linear(codes, _int_weight(idx, lut_int), torch.as_tensor(np.asarray(bias_int, dtype=np.float64)))
    return _acc_check(acc, "qdense_int")


def qconv2d_int(act_codes, idx, lut_int, bias_int, multiplier, shift, out_bits, stride=1, padding=0, groups=1,
                dilation=1, upper=None):
    """Integer-only conv to the next layer's codes (uint8 tensor); equals ``reference.qconv2d_int``."""
    acc = qconv2d_int_acc(act_codes, idx, lut_int, bias_int, stride, padding, groups, dilation)
    return requantize(acc, multiplier, shift, out_bits, upper)


def qdense_int(act_codes, idx, lut_int, bias_int, multiplier, shift, out_bits, upper=None):
    return requantize(qdense_int_acc(act_codes, idx, lut_int, bias_int), multiplier, shift, out_bits, upper)


# --------------------------------------------------------------------------- training simulation
def act_scale_of(act_quant):
    """``s_a`` of a LearnedClampAct (the range width over ``2^b - 1`` when signed)."""
    width = act_quant.signed_params()[0] if act_quant.signed else act_quant.clamp_value()
    return float(reference.act_scale(width, act_quant.bits))


def integer_params_of(layer):
    """``reference.integer_requant_params`` of a QAT layer (its recipe LUT, ``s_a`` and bias)."""
    weight = layer.weight.detach().cpu().numpy()
    lut, thresholds = layer.weight_quant.params(weight)
    bias = None if layer.bias is None else layer.bias.detach().double().cpu().numpy()
    try:
        params = reference.integer_requant_params(lut, act_scale_of(layer.act_quant), bias,
                                                  out_channels=weight.shape[0])
    except QuantizationError as err:
        raise QuantizationError(f"layer {layer.layer_name!r}: {err}") from None
    params["idx"] = reference.assign_indices(weight, thresholds)
    return params


def integer_weight_bias(layer, weight, bias):
    """Weight ``s_w lut_int[idx]`` and bias ``s_a s_w bias_int`` of the deployed arithmetic (see module doc).

    ``weight`` is the layer's fake-quantized weight (its gradient path is kept: straight-through).
    """
    params = integer_params_of(layer)
    s_w = torch.as_tensor(params["s_w"], dtype=torch.float64)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    value = (_int_weight(params["idx"], params["lut_int"]) * s_w.reshape(shape)).to(weight.dtype)
    weight = straight_through(value.to(weight.device), weight)
    if bias is not None:
        bias_value = (torch.as_tensor(params["bias_int"], dtype=torch.float64) * act_scale_of(layer.act_quant) * s_w)
        bias = straight_through(bias_value.to(bias.dtype).to(bias.device), bias)
    return weight, bias

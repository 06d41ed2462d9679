"""Eval-only torch fake-quant model of a recipe: the float twin of the compiled model.

``apply_recipe(model, recipe)`` returns a BN-folded deep copy in which every layer the recipe
quantizes computes exactly ``tvm_qnn.layer.QnnLayer.reference`` (up to float32 summation order):

* its weight is replaced by ``lut[o, idx]`` with ``idx = LayerQuant.indices(weight)`` (the
  recipe's bin edges applied to the folded float weight);
* its input is replaced by ``(act_codes(x) - z) * s_a`` computed in float32 as ``reference.act_codes``
  does: ``s_a = float32(c) / float32(2^b - 1)``, ``(clip(floor(x / s_a + 0.5) + z, 0, 2^b - 1) - z) * s_a``
  with the recipe's zero point ``z`` (0 for unsigned inputs)
  (a forward pre-hook, so parameter names stay those of the folded model);
* a recipe ``bias_correction`` is added to its bias (as ``quantize`` does).

The compiled TVM model (``tvm_qnn.quantize`` + ``compile``) is compared against this.
``exact=True`` gives the twin of the compiled arithmetic: every quantized layer computes
``float32(conv_float64(x_hat, lut[o, idx])) + float32 bias``, as the compiled layers compute
``float32(s_a * sum lut * S)`` from exact integer sums and then add the bias in float32 (DESIGN's
float contract). A float32 convolution rounds in its own summation order instead; in a deep
network those differences move activations across rounding boundaries in several layers at once.
For the same reason the fp32 layers (``recipe.fp32_layers``) of an ``exact`` twin compute
``float32(conv_float64(x, w)) + float32 bias`` too, as ``quantize(..., exact_float_layers=True)``
compiles them.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .. import reference
from ..errors import QnnError, RecipeError
from ..models import quantizable_layers
from ..recipe import load as load_recipe
from .fold_bn import fold_batchnorm


def _codes(x, clamp, bits, zero_point):
    """``(act_codes(x) - z, s_a)``: the centred codes as a float32 tensor of integers and the float32 scale."""
    s_a = torch.tensor(reference.act_scale(clamp, bits), dtype=torch.float32)
    z = reference.check_zero_point(zero_point, bits)
    codes = torch.floor(x.float() / s_a + 0.5) + float(z)
    codes = torch.nan_to_num(codes, nan=0.0).clamp(0, (1 << bits) - 1)
    return codes - float(z), s_a


def act_fake_quant(x, clamp, bits, zero_point=0):
    """``(act_codes(x, clamp, bits, z) - z) * s_a`` in float32 torch, identical to the numpy reference."""
    centred, s_a = _codes(x, clamp, bits, zero_point)
    return centred * s_a


def lut_weight(layer_quant, weight):
    """``lut[o, idx(weight)]`` as float32 numpy (the weight every backend rebuilds)."""
    weight = np.asarray(weight, dtype=np.float32)
    idx = layer_quant.indices(weight)
    return reference.dequant_weight(idx, layer_quant.lut).astype(np.float32)


class _ActQuantHook:
    """Forward pre-hook replacing a layer's input by its fake-quantized activation."""

    def __init__(self, clamp, bits, zero_point=0):
        self.clamp, self.bits, self.zero_point = float(clamp), int(bits), int(zero_point)

    def __call__(self, module, args):
        return (act_fake_quant(args[0], self.clamp, self.bits, self.zero_point),) + tuple(args[1:])


class _ExactFloatLayer:
    """An fp32 layer's forward as ``exact_float_layers`` compiles it: ``float32(x conv w, in float64)
    + float32 bias``."""

    def __init__(self, module):
        self.core = copy.deepcopy(module).double()
        self.core.bias = None
        self.bias = None if module.bias is None else module.bias.detach()

    def _round_and_add_bias(self, wide):
        out = wide.float()
        if self.bias is None:
            return out
        return out + (self.bias.view(1, -1, 1, 1) if out.ndim == 4 else self.bias)

    def __call__(self, x, *rest):
        return self._round_and_add_bias(self.core(x.double(), *rest))


class _ExactLayer(_ExactFloatLayer):
    """A quantized layer's forward as compiled: ``float32(s_a (q - z) conv lut[o, idx], in float64) +
    float32 bias`` (``x_hat`` formed exactly in float64, one rounding at the end)."""

    def __init__(self, module, clamp, bits, zero_point):
        super().__init__(module)
        self.clamp, self.bits, self.zero_point = float(clamp), int(bits), int(zero_point)

    def __call__(self, x, *rest):
        centred, s_a = _codes(x, self.clamp, self.bits, self.zero_point)
        return self._round_and_add_bias(self.core(centred.double() * s_a.double(), *rest))


def layer_modules(model):
    """``{weight name: module}`` of every Conv2d / Linear of ``model``."""
    modules = dict(model.named_modules())
    return {name: modules[name[: -len(".weight")]] for name in quantizable_layers(model)}


def apply_recipe(model, recipe, exact=False):
    """BN-folded, eval-mode fake-quant deep copy of ``model`` under ``recipe`` (see module doc;
    ``exact``: every conv/linear, quantized or fp32, sums in float64 and rounds once, as the
    compiled quantized layers do and the fp32 layers do under ``quantize(exact_float_layers=True)``).

    The recipe must cover exactly the model's conv/linear weights (quantized or fp32_layers);
    otherwise RecipeError names the missing/extra layers. NaN/inf weights raise
    QuantizationError naming the layer.
    """
    recipe = load_recipe(recipe)
    folded = fold_batchnorm(model)
    modules = layer_modules(folded)
    recipe.check_covers(modules, where="torch model")
    for name, layer_quant in recipe.layers.items():
        module = modules[name]
        try:
            weight = lut_weight(layer_quant, module.weight.detach().cpu().numpy())
        except QnnError as err:
            message = str(err) if repr(name) in str(err) else f"layer {name!r}: {err}"
            raise type(err)(message) from None
        if weight.shape != tuple(module.weight.shape):
            raise RecipeError(f"layer {name!r}: quantized weight shape {weight.shape} != {tuple(module.weight.shape)}")
        module.weight = nn.Parameter(torch.from_numpy(weight), requires_grad=False)
        if layer_quant.bias_correction is not None:
            if module.bias is None:
                raise RecipeError(f"layer {name!r} has a bias_correction in the recipe but no bias")
            # summed in float64 and rounded once, as quantize does
            corrected = module.bias.detach().double() + torch.from_numpy(layer_quant.bias_correction)
            module.bias = nn.Parameter(corrected.to(module.bias.dtype), requires_grad=False)
        if exact:  # the instance attribute replaces the class's forward for this module only
            module.forward = _ExactLayer(module, layer_quant.a_clamp, layer_quant.a_bits, layer_quant.a_zero_point)
        else:
            module.register_forward_pre_hook(_ActQuantHook(layer_quant.a_clamp, layer_quant.a_bits,
                                                           layer_quant.a_zero_point))
    if exact:
        for name in recipe.fp32_layers:
            modules[name].forward = _ExactFloatLayer(modules[name])
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded.eval()

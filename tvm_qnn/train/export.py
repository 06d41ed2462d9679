"""From a trained QAT model to what the compiler consumes: a recipe and a plain float model.

* ``export_recipe(qat_model)`` -> ``Recipe`` keyed by the weight names of the BN-folded model,
  exactly as torch.export names them (``layer1.0.conv1.weight``). Each quantized layer's LUT and
  bin edges come from ``LayerQuant.from_weight`` on its current float weight -- the same numpy
  code the eval-mode quantizers run -- and its ``a_clamp`` is the learned clamp. Layers kept in
  fp32 (or still in ``fp32`` mode) are listed in ``fp32_layers``.
* ``export_float_model(qat_model)`` -> the BN-folded float model (plain Conv2d/Linear holding
  the trained float weights) that ``tvm_qnn.from_torch`` imports together with the recipe.

``apply_recipe(export_float_model(m), export_recipe(m))`` equals ``m.eval()``.
"""

from __future__ import annotations

import copy

import numpy as np

from torch import nn

from .. import reference
from ..errors import QnnError
from ..models import quantizable_layers
from ..recipe import LayerQuant, Recipe
from .qmodel import QConv2d, QLinear, quant_layers


def int8_exact_lut(lut):
    """``s_w[o] lut_int[o, q]`` (float32): the LUT the integer-only mode computes with.

    A LUT already on this grid is unchanged by the integer-only mode's rounding
    (``reference.integer_requant_params`` gives back the same ``lut_int``), so the float contract
    and the ``fpga`` / ``cpu integer_only`` path use the same weights.
    """
    params = reference.integer_requant_params(lut, 1.0)
    return (params["lut_int"].astype(np.float64) * params["s_w"][:, None]).astype(np.float32)


def export_recipe(model, model_name="", int8_lut=False):
    """Recipe of a QAT model (see the module doc); ``model_name`` goes to the recipe's ``model``.

    ``int8_lut=True`` stores every non-affine (k-quantile) LUT on the int8 grid of the
    integer-only mode (:func:`int8_exact_lut`; the bin edges, hence the indices, are unchanged):
    the model fine-tuned with ``integer_sim`` then computes the same weights on every target.
    Affine (uniform, LSQ) LUTs are kept affine: the CPU's bit-plane kernels need them.
    """
    layers = {}
    for name, layer in quant_layers(model).items():
        if layer.weight_quant.mode == "fp32":
            continue
        if layer.act_quant.signed:  # both clamps learned: the range width and its zero point
            a_clamp, a_zero_point = layer.act_quant.signed_params()
        else:
            a_clamp, a_zero_point = layer.act_quant.clamp_value(), 0
        try:
            # the quantizer's own LUT and bin edges (the reference code its eval mode runs): a
            # learned step (LSQ) is kept, not re-derived from the weight
            lut, thresholds = layer.weight_quant.params(layer.weight.detach().cpu().numpy())
            if int8_lut and not reference.lut_is_affine(lut):
                lut = int8_exact_lut(lut)
            layers[name] = LayerQuant(name, layer.weight_quant.bits, layer.weight_quant.scheme, lut,
                                      layer.act_quant.bits, a_clamp, thresholds, a_zero_point,
                                      weight_shape=tuple(layer.weight.shape))
        except QnnError as err:
            message = str(err) if repr(name) in str(err) else f"layer {name!r}: {err}"
            raise type(err)(message) from None
    fp32 = tuple(name for name in quantizable_layers(model) if name not in layers)
    return Recipe(layers, fp32, model_name)


def export_float_model(model):
    """Deep copy with QConv2d/QLinear turned back into plain Conv2d/Linear (same names, weights)."""
    plain = copy.deepcopy(model).eval()
    for name, layer in list(quant_layers(plain).items()):
        module_path = name[: -len(".weight")]
        if isinstance(layer, QConv2d):
            new = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                            layer.dilation, layer.groups, layer.bias is not None)
        elif isinstance(layer, QLinear):
            new = nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
        new.weight, new.bias = layer.weight, layer.bias
        parent_path, _, child = module_path.rpartition(".")
        setattr(plain.get_submodule(parent_path) if parent_path else plain, child, new)
    for attribute in ("qat_config", "fp32_layers"):
        if attribute in plain.__dict__:
            delattr(plain, attribute)
    for parameter in plain.parameters():
        parameter.requires_grad_(True)
    return plain.eval()

"""Fold eval-mode BatchNorm into the preceding convolution: THE folding every path uses.

The torch fake-quant model (``fakequant.apply_recipe``), QAT (which starts from a folded fp32
model), ``export_recipe`` and the TVM frontend all call :func:`fold_batchnorm`, so the weights a
recipe was computed from are bit-identical to the ones the compiler sees. The arithmetic is
done once, here, in float64 and rounded to float32:

    scale = gamma / sqrt(running_var + eps)
    w'    = w * scale[o]
    b'    = (b - running_mean) * scale + beta          (b = 0 when the conv has no bias)

Conv -> BN pairs are found on the ``torch.fx`` graph (a BN whose only input is a conv whose only
user is that BN), so module registration order does not matter; the BN module is replaced by
``nn.Identity`` and the conv gains a bias. The input model is never modified.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from ..errors import UnsupportedOpError


class _ConvLeafTracer(fx.Tracer):
    """fx tracer that keeps every ``nn.Conv2d`` subclass a leaf module.

    The default tracer only stops at modules defined in ``torch.nn``; a subclass such as
    efficientnet's ``Conv2dStaticSamePadding`` (TF "same" padding, then ``F.conv2d``) would be
    traced through, its conv would become a ``call_function`` and its BN would not be folded.
    """

    def is_leaf_module(self, module, qualified_name):
        return isinstance(module, nn.Conv2d) or super().is_leaf_module(module, qualified_name)


def _conv_bn_pairs(model):
    try:
        graph = _ConvLeafTracer().trace(model)
    except Exception as err:  # fx cannot trace data-dependent control flow
        raise UnsupportedOpError(
            f"fold_batchnorm: cannot trace {type(model).__name__} with torch.fx ({err}); "
            "BatchNorm folding needs a traceable model"
        ) from err
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        if (isinstance(source, fx.Node) and source.op == "call_module"
                and isinstance(modules.get(source.target), nn.Conv2d) and len(source.users) == 1):
            pairs.append((source.target, node.target))
    return pairs


@torch.no_grad()
def fold_conv_bn(conv, bn):
    """Fold ``bn`` (eval statistics) into ``conv`` in place (float64 math, float32 result)."""
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.affine else torch.ones_like(bias)
    beta = bn.bias.detach().double() if bn.affine else torch.zeros_like(bias)
    scale = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    new_weight = (weight * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype)
    new_bias = ((bias - bn.running_mean.detach().double()) * scale + beta).to(conv.weight.dtype)
    conv.weight = nn.Parameter(new_weight, requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)


def _set_submodule(model, name, module):
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def fold_batchnorm(model):
    """Deep copy of ``model`` in eval mode with every conv -> BatchNorm2d pair folded.

    Folded BNs become ``nn.Identity`` (their parameters disappear from ``state_dict``); BNs not
    fed by a conv are left as they are. A model without BN comes back as an eval-mode copy.
    """
    folded = copy.deepcopy(model).eval()
    if not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules()):
        return folded
    for conv_name, bn_name in _conv_bn_pairs(folded):
        fold_conv_bn(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
        _set_submodule(folded, bn_name, nn.Identity())
    return folded

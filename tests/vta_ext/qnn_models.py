"""Quantized zoo models for the FPGA tests: a recipe calibrated on sample inputs, then quantize()."""

from __future__ import annotations

import numpy as np
import torch

import tvm_qnn
from tvm_qnn.recipe import LayerQuant, Recipe
from tvm_qnn.train.fold_bn import fold_batchnorm


def layer_inputs(model, x):
    """``{weight name: input activation}`` of every conv/linear layer of ``model`` on ``x``."""
    seen, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            def hook(_m, args, name=name):
                seen[f"{name}.weight"] = args[0].detach().numpy()
            hooks.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    assert len(seen) == len(hooks), "a conv/linear layer was not reached by the forward pass"
    return seen


def calibrated_recipe(model, x, w_bits, a_bits, fp32=("conv1.weight", "fc.weight"), percentile=99.9,
                      w_scheme="kquantile"):
    """A recipe quantizing every layer but ``fp32`` with clamps at the ``percentile`` of its inputs."""
    folded = fold_batchnorm(model)
    inputs = layer_inputs(folded, x)
    weights = dict(folded.named_parameters())
    layers = {}
    for name, act in inputs.items():
        if name in fp32:
            continue
        clamp = float(np.percentile(act, percentile)) or 1.0
        layers[name] = LayerQuant.from_weight(name, weights[name].detach().numpy(), w_bits, a_bits, clamp, w_scheme)
    return Recipe(layers, tuple(n for n in inputs if n in fp32), type(model).__name__)


def quantized(model, x, w_bits=2, a_bits=2, **kw):
    """``(qmod, recipe)`` of ``model`` at batch ``x.shape[0]``."""
    model = model.eval()
    recipe = calibrated_recipe(model, x, w_bits, a_bits, **kw)
    mod, params = tvm_qnn.from_torch(model, torch.from_numpy(x))
    return tvm_qnn.quantize(mod, params, recipe), recipe

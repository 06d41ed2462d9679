"""Quantization-aware training (UNIQ k-quantile weights, NICE uniform weights and learned clamps).

Submodules: ``fold_bn`` (the one BatchNorm folding), ``fakequant`` (eval-only fake-quant model of
a recipe), ``quantizers`` (trainable weight/activation quantizers), ``qmodel`` (wrapping a model
for QAT), ``schedule`` (gradual quantization stages), ``trainer``, ``export`` (recipe from a
trained model), ``ptq`` (post-training baseline).
"""

from .fakequant import act_fake_quant, apply_recipe
from .fold_bn import fold_batchnorm

__all__ = ["fold_batchnorm", "apply_recipe", "act_fake_quant"]

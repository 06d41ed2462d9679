"""Quantization-aware training (UNIQ k-quantile weights, NICE uniform weights and learned clamps).

Submodules: ``fold_bn`` (the one BatchNorm folding), ``fakequant`` (eval-only fake-quant model of
a recipe), ``quantizers`` (trainable weight/activation quantizers), ``qmodel`` (wrapping a model
for QAT), ``schedule`` (gradual quantization stages), ``trainer``, ``export`` (recipe and float
model from a trained QAT model), ``ptq`` (post-training baseline), ``baseline`` (the cached,
trained fp32 starting point), ``intsim`` (the deployed integer arithmetic in torch).

Typical use::

    qat = prepare_qat(fp32_model, QuantConfig(w_bits=2, a_bits=2, w_scheme="kquantile"))
    calibrate_clamps(qat, first_batches)
    Trainer(qat, train_loader, test_loader, TrainConfig(lr=5e-3),
            schedule=GradualSchedule.for_model(qat, n_stages=2)).fit()
    recipe, float_model = export_recipe(qat, "fmnist_resnet"), export_float_model(qat)
"""

from .export import export_float_model, export_recipe
from .fakequant import act_fake_quant, apply_recipe
from .fold_bn import fold_batchnorm
from .ptq import ptq
from .qmodel import (QConv2d, QLinear, QuantConfig, calibrate_clamps, prepare_qat, quant_layers, set_integer_sim,
                     set_modes)
from .quantizers import KQuantileWeight, LearnedClampAct, LSQWeight, UniformNoisyWeight, initial_clamp
from .schedule import GradualSchedule, split_stages
from .trainer import TrainConfig, Trainer, distillation_loss, evaluate, init_distributed

__all__ = [
    "fold_batchnorm", "apply_recipe", "act_fake_quant", "export_recipe", "export_float_model", "ptq",
    "QConv2d", "QLinear", "QuantConfig", "calibrate_clamps", "prepare_qat", "quant_layers", "set_modes",
    "set_integer_sim", "KQuantileWeight", "UniformNoisyWeight", "LSQWeight", "LearnedClampAct", "initial_clamp",
    "GradualSchedule", "split_stages", "TrainConfig", "Trainer", "evaluate", "distillation_loss",
    "init_distributed",
]

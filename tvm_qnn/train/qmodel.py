"""Turn a float model into a QAT model: BN folded, Conv2d/Linear -> QConv2d/QLinear.

QAT starts from a *trained fp32 model with BatchNorm folded* (``fold_batchnorm``): the QAT model
then trains exactly the weights the TVM frontend later sees (it folds with the same function),
so the exported recipe's LUTs, bin edges and clamps apply to those weights unchanged. Training
without BN is a fine-tuning from a converged fp32 model at a small learning rate, but at 2 bits
it starts far from a minimum: it is stable only with the Trainer's gradient-norm bound
(``trainer.QAT_MAX_GRAD_NORM``; without it the digits w2a2 run collapsed to chance).

``QConv2d`` / ``QLinear`` keep the module paths and the ``weight`` / ``bias`` parameter names of
the folded model (``layer1.0.conv1.weight``), and add ``weight_quant`` and ``act_quant``
submodules (the learned clamp is ``layer1.0.conv1.act_quant.clamp``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import reference
from ..errors import QuantizationError, RecipeError
from ..models import default_fp32_layers, quantizable_layers
from .fold_bn import fold_batchnorm
from .quantizers import WEIGHT_QUANTIZERS, LearnedClampAct, initial_clamp, make_weight_quantizer


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a model: bits, weight scheme, which layers stay fp32, noise and clamp init.

    ``fp32_layers=None`` keeps the first conv and the last linear in fp32 (NICE/UNIQ default).
    ``layer_bits`` overrides ``(w_bits, a_bits)`` for named layers. ``int8_grid`` puts uniform
    (NICE) weight levels on the integer-only mode's int8 grid (``reference.uniform_params``), so
    the float contract and the integer-only mode compute the same weights (k-quantile LUTs get
    there at export: ``export_recipe(int8_lut=True)``).
    """

    w_bits: int = 2
    a_bits: int = 2
    w_scheme: str = "kquantile"
    per_channel: bool = False
    fp32_layers: tuple | None = None
    noise_fraction: float = 0.05
    clamp_init: str = "mse"
    layer_bits: tuple = ()  # ((name, w_bits, a_bits), ...)
    int8_grid: bool = False  # uniform weights: levels on the int8 grid of the integer-only mode

    def __post_init__(self):
        reference.check_bits(self.w_bits, "w_bits")
        reference.check_bits(self.a_bits, "a_bits")
        if self.w_scheme not in WEIGHT_QUANTIZERS:
            raise QuantizationError(f"w_scheme={self.w_scheme!r}; expected one of {sorted(WEIGHT_QUANTIZERS)}")
        if self.fp32_layers is not None:
            object.__setattr__(self, "fp32_layers", tuple(self.fp32_layers))
        for name, w_bits, a_bits in self.layer_bits:
            reference.check_bits(w_bits, "w_bits", name)
            reference.check_bits(a_bits, "a_bits", name)

    def bits_of(self, name):
        for layer, w_bits, a_bits in self.layer_bits:
            if layer == name:
                return w_bits, a_bits
        return self.w_bits, self.a_bits

    @property
    def tag(self):
        return f"w{self.w_bits}a{self.a_bits}-{self.w_scheme}"


class _QuantMixin:
    integer_sim = False  # simulate the deployed integer arithmetic (int8 LUT, rounded bias)

    def _attach(self, name, config):
        w_bits, a_bits = config.bits_of(name)
        self.layer_name = name
        self.weight_quant = make_weight_quantizer(config.w_scheme, w_bits, config.per_channel, name,
                                                  noise_fraction=config.noise_fraction, rows=self.weight.shape[0],
                                                  int8_grid=config.int8_grid)
        if hasattr(self.weight_quant, "reset"):
            self.weight_quant.reset(self.weight)
        self.act_quant = LearnedClampAct(a_bits, 1.0, name)

    def set_mode(self, mode):
        self.weight_quant.set_mode(mode)
        self.act_quant.set_mode("fp32" if mode == "fp32" else "quant")

    def quantized_weight_bias(self):
        """The weight and bias this layer computes with (fake-quantized; integer-simulated if set)."""
        weight = self.weight_quant(self.weight)
        if self.integer_sim and self.weight_quant.mode != "fp32":
            from .intsim import integer_weight_bias  # the simulation needs the layer's recipe numbers

            return integer_weight_bias(self, weight, self.bias)
        return weight, self.bias


class QConv2d(_QuantMixin, nn.Conv2d):
    def forward(self, x):
        weight, bias = self.quantized_weight_bias()
        return self._conv_forward(self.act_quant(x), weight, bias)


class QLinear(_QuantMixin, nn.Linear):
    def forward(self, x):
        weight, bias = self.quantized_weight_bias()
        return F.linear(self.act_quant(x), weight, bias)


def _quantized_copy(module, name, config):
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise QuantizationError(f"layer {name!r}: padding_mode={module.padding_mode!r}; only 'zeros' is quantizable")
        new = QConv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                      module.dilation, module.groups, module.bias is not None)
    else:
        new = QLinear(module.in_features, module.out_features, module.bias is not None)
    new.weight = module.weight
    new.bias = module.bias
    new._attach(name, config)
    return new


def quant_layers(model):
    """``{weight name: QConv2d/QLinear}`` of a QAT model, in module order."""
    return {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, _QuantMixin)}


def prepare_qat(model, config=QuantConfig()):
    """BN-folded deep copy of ``model`` with every non-fp32 Conv2d/Linear made quantizable.

    All quantizers start in ``quant`` mode with clamp 1.0: call :func:`calibrate_clamps` (the
    Trainer does) before training. The copy records ``model.qat_config`` and ``model.fp32_layers``.
    """
    folded = fold_batchnorm(model)
    names = quantizable_layers(folded)
    fp32 = list(default_fp32_layers(folded) if config.fp32_layers is None else config.fp32_layers)
    unknown = sorted(set(fp32) - set(names))
    if unknown:
        raise RecipeError(f"fp32_layers {unknown} are not conv/linear weights of the model; known: {names}")
    for name in names:
        if name in fp32:
            continue
        module_path = name[: -len(".weight")]
        parent_path, _, child = module_path.rpartition(".")
        parent = folded.get_submodule(parent_path) if parent_path else folded
        setattr(parent, child, _quantized_copy(getattr(parent, child), name, config))
    folded.qat_config = config
    folded.fp32_layers = tuple(n for n in names if n in fp32)
    return folded.train()


@torch.no_grad()
def calibrate_clamps(model, batches, method=None):
    """Initialise every learned clamp from the statistics of its layer's float input.

    ``batches`` is an iterable of input tensors (or (x, y) pairs). Inputs are collected with all
    quantizers in fp32 mode (pre-quantization statistics, as NICE), then modes are restored.
    A layer whose input has negative values gets signed clamps (both ends learned, zero point;
    ``LearnedClampAct.make_signed``), each end initialised like the unsigned clamp from its side
    of the distribution: a signed input is never clipped to 0.
    """
    layers = quant_layers(model)
    method = method or getattr(model, "qat_config", QuantConfig()).clamp_init
    modes = {name: (layer.weight_quant.mode, layer.act_quant.mode) for name, layer in layers.items()}
    samples = {name: [] for name in layers}
    handles = [layer.register_forward_pre_hook(lambda m, args, name=name: samples[name].append(args[0].detach()))
               for name, layer in layers.items()]
    was_training = model.training
    try:
        model.eval()
        for layer in layers.values():
            layer.set_mode("fp32")
        for index, batch in enumerate(batches):
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not bool(torch.isfinite(inputs).all()):
                from ..checks import check_finite_input

                check_finite_input(inputs.detach().cpu().numpy(), f"calibrate_clamps: batch {index}",
                                   "calibration data must be finite: a clamp computed from it would be NaN/inf")
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        for name, layer in layers.items():
            layer.weight_quant.set_mode(modes[name][0])
            layer.act_quant.set_mode(modes[name][1])
        model.train(was_training)
    for name, layer in layers.items():
        if not samples[name]:
            raise QuantizationError(f"layer {name!r}: no calibration input reached it")
        values = torch.cat([s.reshape(-1) for s in samples[name]])
        upper = initial_clamp(values, layer.act_quant.bits, method)
        if float(values.min()) < 0:
            lower = -initial_clamp(-values, layer.act_quant.bits, method)
            layer.act_quant.make_signed(lower, upper)
        else:
            layer.act_quant.clamp.fill_(upper)
    return model


def set_modes(model, modes, frozen=()):
    """Set each quantized layer's mode (``{name: mode}``) and freeze (no grad) the ``frozen`` ones."""
    layers = quant_layers(model)
    unknown = sorted(set(modes) - set(layers))
    if unknown:
        raise QuantizationError(f"set_modes: unknown layer(s) {unknown}; quantized layers: {list(layers)}")
    for name, mode in modes.items():
        layers[name].set_mode(mode)
    for name, layer in layers.items():
        trainable = name not in frozen
        for parameter in layer.parameters():  # weight, bias, clamps, learned weight step
            parameter.requires_grad_(trainable)
    return model


def set_integer_sim(model, enabled=True):
    """Turn the integer-arithmetic simulation (``train.intsim``) of every quantized layer on/off."""
    for layer in quant_layers(model).values():
        layer.integer_sim = bool(enabled)
    return model

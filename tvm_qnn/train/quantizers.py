"""Trainable quantizers: UNIQ k-quantile weights, NICE uniform weights, NICE learned clamps.

Every quantizer has a ``mode``:

* ``"fp32"``  -- pass-through (layer not quantized yet in the gradual schedule);
* ``"noise"`` -- training-time noise instead of rounding (UNIQ / NICE); the gradient is straight
  (identity) with respect to the float weight;
* ``"quant"`` -- hard quantization with a straight-through gradient.

In eval mode a quantizer in ``noise`` or ``quant`` mode is *exactly* the recipe the layer
exports: weights are ``lut[o, idx]`` with the LUT and bin edges of ``reference.kquantile_params``
/ ``reference.uniform_params`` computed from the current float weight (the same numpy code
``export_recipe`` calls), activations are ``act_fake_quant(x, c, b)``. So the eval-mode QAT
model, ``apply_recipe(export_float_model(m), export_recipe(m))`` and the compiled model agree.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from .. import reference
from ..errors import QuantizationError
from .fakequant import act_fake_quant

MODES = ("fp32", "noise", "quant")
CDF_EPS = 1e-4  # keeps Phi^-1 finite: the noisy outer bins reach about +-3.7 sigma


def _check_mode(mode, where):
    if mode not in MODES:
        raise QuantizationError(f"{where}: mode={mode!r}; expected one of {list(MODES)}")
    return mode


def straight_through(value, surrogate):
    """Forward ``value``, backward the gradient of ``surrogate`` (both the same shape)."""
    return value.detach() + (surrogate - surrogate.detach())


class _WeightQuantizer(nn.Module):
    scheme = ""

    def __init__(self, bits, per_channel=False, layer=""):
        super().__init__()
        self.layer = layer
        self.bits = reference.check_bits(bits, "w_bits", layer)
        self.per_channel = bool(per_channel)
        self.mode = "quant"

    def set_mode(self, mode):
        self.mode = _check_mode(mode, f"layer {self.layer!r} weight quantizer")

    def params(self, weight):
        """``(lut float32 (rows, 2^b), thresholds float64 (rows, 2^b - 1))`` of the float weight."""
        raise NotImplementedError

    def hard(self, weight):
        """``lut[o, idx]`` with the exact reference bin edges (float32, no gradient)."""
        array = weight.detach().cpu().numpy()
        try:
            lut, thresholds = self.params(reference.check_finite(array, "weight", self.layer))
        except QuantizationError as err:
            raise QuantizationError(f"layer {self.layer!r}: {err}" if self.layer not in str(err) else str(err)) from None
        idx = reference.assign_indices(array, thresholds)
        return torch.from_numpy(reference.dequant_weight(idx, lut)).to(weight.device)

    def noisy(self, weight):
        raise NotImplementedError

    def forward(self, weight):
        if self.mode == "fp32":
            return weight
        if self.mode == "noise" and self.training:
            return straight_through(self.noisy(weight.detach()), weight)
        return straight_through(self.hard(weight), weight)

    def extra_repr(self):
        return f"bits={self.bits}, scheme={self.scheme}, per_channel={self.per_channel}, mode={self.mode}"


class KQuantileWeight(_WeightQuantizer):
    """UNIQ: k-quantile weights of a per-layer (or per-channel) Gaussian fit N(mu, sigma).

    Training noise (UNIQ): ``u = Phi((w - mu) / sigma)`` falls in bin ``q = floor(2^b u)``; it is
    replaced by the bin centre plus uniform noise of one bin width, ``u' = (q + 1/2 + U(-1/2,
    1/2)) / 2^b``, and mapped back ``w' = mu + sigma Phi^-1(u')``: the noise follows the
    quantizer's own (non-uniform) bins. Gradient: straight (dw'/dw = 1).
    """

    scheme = "kquantile"

    def params(self, weight):
        return reference.kquantile_params(weight, self.bits, self.per_channel)

    def _rows(self, weight):
        return weight.reshape(weight.shape[0], -1) if self.per_channel else weight.reshape(1, -1)

    def noisy(self, weight):
        rows = self._rows(weight.double())
        mu = rows.mean(dim=1, keepdim=True)
        sigma = rows.std(dim=1, unbiased=False, keepdim=True).clamp_min(np.finfo(np.float32).tiny)
        levels = 1 << self.bits
        u = torch.special.ndtr((rows - mu) / sigma)
        bin_index = torch.clamp(torch.floor(u * levels), 0, levels - 1)
        u_noisy = (bin_index + 0.5 + (torch.rand_like(u) - 0.5)) / levels
        u_noisy = u_noisy.clamp(CDF_EPS, 1 - CDF_EPS)
        noisy = mu + sigma * torch.special.ndtri(u_noisy)
        return noisy.reshape(weight.shape).to(weight.dtype)


class UniformNoisyWeight(_WeightQuantizer):
    """NICE: symmetric uniform weights in ``[-clip, clip]`` with NICE's clip ``|mu + sign(mu) 3.45 sigma|``.

    Training noise (NICE): a random ``noise_fraction`` (~5%) of the weights get uniform noise of
    one quantization step added to their clipped value instead of being rounded; the rest are
    rounded with a straight-through gradient. ``int8_grid=True``: the levels of
    ``reference.uniform_params(..., int8_grid=True)`` (on the integer-only mode's int8 grid, one end
    2 int8 units short of the clip at 2-3 bits), so the integer-only mode computes the same weights.
    """

    scheme = "uniform"

    def __init__(self, bits, per_channel=False, layer="", noise_fraction=0.05, int8_grid=False):
        super().__init__(bits, per_channel, layer)
        if not 0.0 <= float(noise_fraction) <= 1.0:
            raise QuantizationError(f"layer {layer!r}: noise_fraction={noise_fraction!r} must be in [0, 1]")
        self.noise_fraction = float(noise_fraction)
        self.int8_grid = bool(int8_grid)

    def params(self, weight):
        return reference.uniform_params(weight, self.bits, None, self.per_channel, int8_grid=self.int8_grid)

    def noisy(self, weight):
        lut, _ = self.params(weight.cpu().numpy())
        lut = torch.from_numpy(lut).to(weight.device)
        low, high = lut[:, :1], lut[:, -1:]  # (rows, 1); -clip and clip without int8_grid
        step = lut[:, 1:2] - low if lut.shape[1] > 1 else high - low
        rows = weight.reshape(weight.shape[0], -1) if self.per_channel else weight.reshape(1, -1)
        clipped = torch.maximum(torch.minimum(rows, high), low)
        noise = (torch.rand_like(rows) - 0.5) * step
        chosen = torch.rand_like(rows) < self.noise_fraction
        rounded = self.hard(weight).reshape(rows.shape)
        return torch.where(chosen, clipped + noise, rounded).reshape(weight.shape)


class _LsqRound(torch.autograd.Function):
    """LSQ forward ``s * (clip(floor(w/s + L/2), 0, L-1) - (L-1)/2)``; LSQ backward (see LSQWeight)."""

    @staticmethod
    def forward(ctx, weight, step, levels, grad_scale):
        half = (levels - 1) / 2.0
        scaled = weight / step
        codes = torch.clamp(torch.floor(scaled + levels / 2.0), 0, levels - 1)
        ctx.save_for_backward(scaled, codes)
        ctx.levels, ctx.grad_scale, ctx.step_shape = levels, grad_scale, step.shape
        return (codes - half) * step

    @staticmethod
    def backward(ctx, grad):
        scaled, codes = ctx.saved_tensors
        half = (ctx.levels - 1) / 2.0
        inside = (scaled > -half) & (scaled < half)
        dstep = torch.where(inside, (codes - half) - scaled, codes - half)
        gstep = (grad * dstep * ctx.grad_scale).reshape(ctx.step_shape[0], -1).sum(dim=1).reshape(ctx.step_shape)
        return grad * inside, gstep, None, None


class LSQWeight(_WeightQuantizer):
    """Learned step size (LSQ, Esser et al.) on symmetric uniform levels ``s * (q - (2^b - 1)/2)``.

    ``step`` (a parameter, one per output channel with ``per_channel``) is initialised from NICE's
    clip (``s = 2 clip / (2^b - 1)``, :meth:`reset`) and learned with LSQ's gradient
    ``d w_hat / d s = (q - (2^b-1)/2) - w/s`` inside the range, ``+-(2^b-1)/2`` at the clip,
    scaled by ``1 / sqrt(n (2^b-1)/2)`` (``n`` weights per row); ``d w_hat / d w = 1`` inside,
    0 outside. No noise stage (``noise`` trains like ``quant``). In eval mode and on export it is
    exactly ``reference.uniform_params(w, b, clip = s (2^b-1)/2)``: a uniform LUT the recipe
    stores as ``w_scheme="uniform"``.
    """

    scheme = "uniform"
    name = "lsq"

    def __init__(self, bits, per_channel=False, layer="", rows=1):
        super().__init__(bits, per_channel, layer)
        self.step = nn.Parameter(torch.ones(rows if per_channel else 1, 1))

    @torch.no_grad()
    def reset(self, weight):
        """``s`` from NICE's clip of ``weight`` (per row)."""
        lut, _ = reference.uniform_params(weight.detach().cpu().numpy(), self.bits, None, self.per_channel)
        self.step.copy_(torch.from_numpy(2.0 * np.abs(lut[:, :1].astype(np.float64)) / ((1 << self.bits) - 1)))
        return self

    def step_values(self):
        step = self.step.detach().double().cpu().numpy()
        if not np.all(np.isfinite(step)) or np.any(step <= 0):
            raise QuantizationError(f"layer {self.layer!r}: learned weight step {step.ravel()[:4]} is not > 0")
        return step

    def params(self, weight):
        clip = self.step_values() * ((1 << self.bits) - 1) / 2.0
        return reference.uniform_params(weight, self.bits, clip, self.per_channel)

    def forward(self, weight):
        if self.mode == "fp32":
            return weight
        if not (self.training and torch.is_grad_enabled()):
            return straight_through(self.hard(weight), weight)
        self.step_values()
        rows = weight.reshape(weight.shape[0], -1) if self.per_channel else weight.reshape(1, -1)
        levels = 1 << self.bits
        grad_scale = 1.0 / float(np.sqrt(rows.shape[1] * max((levels - 1) / 2.0, 0.5)))
        return _LsqRound.apply(rows, self.step, levels, grad_scale).reshape(weight.shape)


WEIGHT_QUANTIZERS = {"kquantile": KQuantileWeight, "uniform": UniformNoisyWeight, "lsq": LSQWeight}


def make_weight_quantizer(scheme, bits, per_channel=False, layer="", **options):
    """``scheme``: ``kquantile`` (UNIQ), ``uniform`` (NICE; ``int8_grid``), ``lsq`` (learned step; ``rows`` = out channels)."""
    if scheme not in WEIGHT_QUANTIZERS:
        raise QuantizationError(f"layer {layer!r}: w_scheme={scheme!r}; expected one of {sorted(WEIGHT_QUANTIZERS)}")
    if scheme == "uniform":
        return UniformNoisyWeight(bits, per_channel, layer, options.get("noise_fraction", 0.05),
                                  options.get("int8_grid", False))
    if scheme == "lsq":
        return LSQWeight(bits, per_channel, layer, options.get("rows", 1))
    return KQuantileWeight(bits, per_channel, layer)


# --------------------------------------------------------------------------- activation clamps
def _clamp_mse(samples, bits):
    """Clamp minimizing the quantization MSE of non-negative ``samples`` over 48 percentiles."""
    positive = samples[samples > 0]
    if positive.numel() == 0:
        return 1.0
    candidates = torch.quantile(positive, torch.linspace(0.5, 1.0, 48, dtype=positive.dtype)).unique()
    best, best_err = float(candidates[-1]), float("inf")
    for c in candidates.tolist():
        if c <= 0:
            continue
        err = float(((act_fake_quant(samples, c, bits) - samples) ** 2).mean())
        if err < best_err:
            best, best_err = c, err
    return best


def _clamp_sigma(samples, bits, k_sigma=3.0):
    """NICE-style ``mean + k * std`` of the (post-ReLU) activations."""
    value = float(samples.mean() + k_sigma * samples.std())
    return value if value > 0 else 1.0


CLAMP_INIT = {"mse": _clamp_mse, "sigma": _clamp_sigma}


def initial_clamp(x, bits, method="mse", max_samples=50_000, seed=0):
    """Initial activation clamp from pre-quantization statistics of the layer input ``x``.

    ``method``: ``"mse"`` (default) picks, among 48 percentiles (50..100%) of the positive
    values, the clamp with the least quantization MSE at ``bits`` -- low-bit layers get tighter
    clamps; ``"sigma"`` is ``mean + 3 std`` of ``relu(x)``. Negative inputs count as 0 (the codes
    are unsigned, the clamp includes the ReLU).
    """
    if method not in CLAMP_INIT:
        raise QuantizationError(f"clamp init method={method!r}; expected one of {sorted(CLAMP_INIT)}")
    flat = x.detach().reshape(-1).float()
    if flat.numel() > max_samples:  # a seeded random subsample (with replacement: cheap)
        generator = torch.Generator().manual_seed(seed)
        flat = flat[torch.randint(flat.numel(), (max_samples,), generator=generator)]
    flat = torch.relu(flat)
    return CLAMP_INIT[method](flat, bits)


class _ClampQuantSTE(torch.autograd.Function):
    """``act_fake_quant`` forward; straight-through / LSQ backward in one fused step (see LearnedClampAct)."""

    @staticmethod
    def forward(ctx, x, clamp, bits):
        ctx.save_for_backward(x, clamp)
        ctx.bits = bits
        return act_fake_quant(x, float(clamp), bits)

    @staticmethod
    def backward(ctx, grad):
        x, clamp = ctx.saved_tensors
        levels = (1 << ctx.bits) - 1
        inside = (x > 0) & (x < clamp)
        scaled = x / (clamp / levels)
        lsq = (torch.floor(scaled + 0.5) - scaled) / levels
        dclamp = torch.where(x >= clamp, torch.ones_like(x), torch.where(inside, lsq, torch.zeros_like(x)))
        return grad * inside, (grad * dclamp).sum().reshape(clamp.shape), None


def _round_ste(value):
    return value + (torch.floor(value + 0.5) - value).detach()


class LearnedClampAct(nn.Module):
    """NICE: activation quantizer with a learned clamp ``c`` (a parameter).

    Forward (``quant``/``noise`` modes; activations are never noised): exactly
    ``act_fake_quant(x, c, b) = clip(floor(x / s_a + 0.5), 0, 2^b - 1) * s_a``, ``s_a = c / (2^b - 1)``.
    Backward (straight-through rounding): ``dy/dx = 1`` on ``0 < x < c`` (0 outside);
    ``dy/dc = 1`` for ``x >= c`` and ``(round(x/s_a) - x/s_a) / (2^b - 1)`` inside (the step-size
    gradient of LSQ), so the clamp trades clipping against rounding error. ``c`` is initialised
    from the layer input's statistics (:func:`initial_clamp`) before training.

    Signed inputs (``signed=True``, or :meth:`make_signed`): two learned clamps, ``lower < 0 <
    clamp``, give the contract's zero point (``reference.signed_act_params``): ``s_a = (c - l) /
    (2^b - 1)``, ``z = round(-l / s_a)``, ``x_hat = s_a (clip(floor(x/s_a + 0.5) + z, 0, 2^b-1) - z)``.
    Training: straight-through rounding with ``s_a`` differentiable in both clamps (``z`` held
    constant within a step), so each end trades its clipping against rounding error.
    """

    def __init__(self, bits, clamp=1.0, layer="", signed=False, lower=None):
        super().__init__()
        self.layer = layer
        self.bits = reference.check_bits(bits, "a_bits", layer)
        reference.check_clamp(clamp, "a_clamp", layer)
        self.clamp = nn.Parameter(torch.tensor(float(clamp), dtype=torch.float32))
        self.lower = None
        if signed:
            self.make_signed(-float(clamp) if lower is None else float(lower), float(clamp))
        self.mode = "quant"

    @property
    def signed(self):
        return self.lower is not None

    @torch.no_grad()
    def make_signed(self, lower, upper):
        """Switch to (or re-initialise) signed mode with clamps ``[lower, upper]``."""
        reference.signed_act_params(lower, upper, self.bits)  # validates lower < 0 < upper
        if self.lower is None:
            self.lower = nn.Parameter(torch.tensor(float(lower), dtype=torch.float32, device=self.clamp.device))
        self.lower.fill_(float(lower))
        self.clamp.fill_(float(upper))
        return self

    def set_mode(self, mode):
        self.mode = _check_mode(mode, f"layer {self.layer!r} activation quantizer")

    def clamp_value(self):
        value = float(self.clamp.detach())
        if not np.isfinite(value) or value <= 0:
            raise QuantizationError(f"layer {self.layer!r}: learned a_clamp={value!r} is not > 0 (lower the clamp lr)")
        return value

    def signed_params(self):
        """``(width, zero point)`` of a signed quantizer (``reference.signed_act_params``)."""
        try:
            return reference.signed_act_params(float(self.lower.detach()), self.clamp_value(), self.bits)
        except QuantizationError as err:
            raise QuantizationError(f"layer {self.layer!r}: {err} (lower the clamp lr)") from None

    def forward(self, x):
        if self.mode == "fp32":
            return x
        clamp = self.clamp_value()  # validates c > 0 (and is the value the recipe exports)
        training = self.training and torch.is_grad_enabled()
        if self.signed:
            width, zero_point = self.signed_params()
            if not training:
                return act_fake_quant(x, width, self.bits, zero_point)
            levels = (1 << self.bits) - 1
            step = (self.clamp - self.lower) / levels
            codes = torch.clamp(_round_ste(x / step) + zero_point, 0, levels)
            return (codes - zero_point) * step
        if not training:
            return act_fake_quant(x, clamp, self.bits)
        return _ClampQuantSTE.apply(x, self.clamp, self.bits)

    def extra_repr(self):
        lower = f"lower={float(self.lower.detach()):.4g}, " if self.signed else ""
        return f"bits={self.bits}, {lower}clamp={float(self.clamp.detach()):.4g}, mode={self.mode}"

"""``tvm_qnn.calibrate``: a post-training recipe for a float Relax module.

* Weights: LUT and bin edges from the reference quantizers (``LayerQuant.from_weight``:
  UNIQ k-quantile or NICE uniform), computed from the weight each layer really uses (after
  FoldBatchNorm when the graph still carries BN).
* Activation clamps: statistics of each quantized layer's *input*, collected by running the float
  module built with ``relay_passes.ExposeLayerInputs`` (which returns those inputs as extra
  outputs) on the calibration batches, with tqdm. The clamp is a high percentile of the input
  values (``percentile``), so rare outliers do not stretch the few activation levels.
* Zero points (``activation_range``): an input that is never negative gets ``z = 0`` and the
  clamp above (today's unsigned codes). An input with negative values (linear bottlenecks,
  residual streams, normalised images) gets a zero point, so its negative half is not clipped to
  0: ``zero_point="asymmetric"`` (default) maps ``[lo, hi]`` (the ``100 - percentile`` and
  ``percentile`` percentiles; ``lo`` is the minimum when that percentile is not negative) onto
  the codes, ``a_clamp = hi - lo``, ``z = round(-lo / s_a)``; ``"symmetric"`` uses
  ``z = 2^(b-1)`` and ``s_a = max(-lo, hi) / (2^(b-1) - 1)`` (needs ``a_bits >= 2``).
  ``signed=False`` clips negatives to 0 (z = 0) on request; ``signed=True`` gives every layer a
  zero point from its range.
* Bias correction (``bias_correction=True``; Nagel et al. 2019, "Data-Free Quantization Through
  Weight Equalization and Bias Correction", the empirical variant): rounding a layer's weights
  shifts the mean of each output channel by ``E[(W - W_q) x]``, which is not noise but a bias, and
  a network of depthwise convs (few weights per channel whose rounding errors do not average out)
  compounds it layer after layer. With the mean input image of each layer over the calibration
  data, ``m``, the shift is exactly ``mean over positions of conv(m, W - W_q)`` (padding, stride
  and groups as the layer has them); it goes into the recipe as ``bias_correction`` and
  ``quantize`` adds it to the layer's bias. Layers without a bias are left as they are.
* First layer (``first_layer_bits=b``): NICE keeps the first conv in fp32 (the default); with ``b``
  it is quantized instead, at ``w_bits = a_bits = b`` with uniform per-channel weights whatever the
  other layers use, its input (the normalised image, usually signed) getting a zero point like any
  other. At 8 bits the ``cpu`` target runs it on the int8 VNNI kernel, where the fp32 first conv
  is the largest float op of a quantized CNN.
"""

from __future__ import annotations


import numpy as np

from . import reference
from .errors import QnnError, QuantizationError, RecipeError, ShapeError
from .recipe import LayerQuant, Recipe

_SAMPLES_PER_BATCH = 200_000  # values kept per layer and batch for the percentile
ZERO_POINTS = ("asymmetric", "symmetric")


def activation_range(values, a_bits, percentile=99.99, signed=None, zero_point="asymmetric", layer=None):
    """``(a_clamp, a_zero_point)`` of a layer input from samples ``values`` (module doc).

    ``signed``: None = a zero point exactly when some value is negative; True = always; False =
    never (negatives clip to code 0).
    """
    where = f"layer {layer!r}: " if layer else ""
    if zero_point not in ZERO_POINTS:
        raise RecipeError(f"calibrate: zero_point={zero_point!r}; expected one of {list(ZERO_POINTS)}")
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0:
        raise ShapeError(f"calibrate: {where}no input values to calibrate the activation range")
    if not np.isfinite(flat).all():  # finite inputs overflowed to inf/nan inside the float model
        raise QuantizationError(f"calibrate: {where}its input holds {int((~np.isfinite(flat)).sum())} non-finite "
                                "values (the float model overflows on the calibration data); no finite range exists")
    top = (1 << int(a_bits)) - 1
    hi = float(np.percentile(flat, percentile))
    has_negatives = bool(flat.min() < 0)
    if signed is False or (signed is None and not has_negatives):
        clamp = hi
        if not clamp > 0:  # an input that is never positive (and unsigned by request): any clamp gives code 0
            clamp = float(max(flat.max(), 1.0))
        return clamp, 0
    lo = float(np.percentile(flat, 100.0 - percentile))
    if lo >= 0:  # negatives only in the tail the percentile drops: keep them rather than clip to 0
        lo = min(float(flat.min()), 0.0)
    hi = max(hi, 0.0)
    if zero_point == "symmetric":
        if a_bits < 2:
            raise RecipeError(f"calibrate: {where}zero_point='symmetric' needs a_bits >= 2 (a_bits={a_bits}); "
                              "use zero_point='asymmetric'")
        half = (1 << (int(a_bits) - 1)) - 1
        magnitude = max(-lo, hi)
        magnitude = magnitude if magnitude > 0 else 1.0
        return magnitude / half * top, 1 << (int(a_bits) - 1)
    width = hi - lo
    if not width > 0:
        width = 1.0
    s_a = float(reference.act_scale(width, a_bits))
    z = int(np.clip(np.round(-lo / s_a), 0, top))
    return width, z


def _batches(data):
    """Yield numpy float32 arrays from an array, a list of arrays or a loader of (x, y) pairs."""
    if hasattr(data, "shape"):
        yield _as_numpy(data)
        return
    for item in data:
        if isinstance(item, (tuple, list)):
            item = item[0]
        yield _as_numpy(item)


def _as_numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _chunks(batch, shape):
    """Split ``batch`` into pieces of the module's input shape (the batch dim may differ)."""
    if batch.shape[1:] != tuple(shape[1:]):
        raise ShapeError(f"calibrate: data has sample shape {batch.shape[1:]}; the module expects {tuple(shape[1:])}")
    size = shape[0]
    for start in range(0, batch.shape[0] - size + 1, size):
        yield batch[start:start + size]


def auto_fp32_layers(kinds):
    """First conv2d and last dense layer (NICE/UNIQ keep them in fp32), in graph order."""
    names = list(kinds)
    convs = [n for n in names if kinds[n] == "conv2d"]
    denses = [n for n in names if kinds[n] == "dense"]
    return ([convs[0]] if convs else []) + ([denses[-1]] if denses else [])


def calibrate(mod, params, data, w_bits=2, a_bits=2, w_scheme="kquantile", per_channel=False,
              fp32_layers="auto", percentile=99.99, max_batches=None, model_name="", progress=True,
              signed=None, zero_point="asymmetric", bias_correction=False, first_layer_bits=None):
    """Post-training recipe for ``mod`` (``from_torch``/``from_onnx`` output) from ``data``.

    ``data``: an array ``(N, ...)``, a list of arrays, or a loader yielding ``(x, y)``; batches
    are cut to the module's batch size. ``fp32_layers``: "auto" (first conv + last dense), a
    list of names, or None. ``signed`` / ``zero_point``: how a layer input with negative values
    is coded (module doc; by default it gets an asymmetric zero point, never a clip to 0).
    ``bias_correction``: compensate the mean output shift of weight rounding (module doc).
    ``first_layer_bits``: quantize the first conv at that many bits (uniform, per channel) instead
    of keeping it fp32 (module doc).
    Returns a ``Recipe`` covering every conv2d/dense layer.
    """
    import tvm
    from tqdm import tqdm
    from tvm import relax

    import relay_passes
    from relay_passes import patterns

    from .quantize import check_params
    from .targets import host_target

    from .checks import check_finite_input, check_module, positive_int

    check_module(mod, "calibrate")
    if data is None:
        raise ShapeError("calibrate: data is None; pass an array (N, ...), a list of arrays or a loader of (x, y)")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise RecipeError(f"calibrate: percentile={percentile!r}; expected a number in (0, 100]")
    if zero_point not in ZERO_POINTS:
        raise RecipeError(f"calibrate: zero_point={zero_point!r}; expected one of {list(ZERO_POINTS)}")
    if signed not in (None, True, False):
        raise RecipeError(f"calibrate: signed={signed!r}; expected None (from the data), True or False")
    if max_batches is not None:
        max_batches = positive_int(max_batches, "calibrate: max_batches")
    values = check_params(mod, dict(params or {}))
    kinds = patterns.quantizable_layers(mod["main"])
    if fp32_layers == "auto":
        fp32 = auto_fp32_layers(kinds)
    else:
        fp32 = list(fp32_layers or [])
        unknown = sorted(set(fp32) - set(kinds))
        if unknown:
            raise RecipeError(f"calibrate: fp32_layers names {unknown}, not conv2d/dense layers of the module")
    first = None
    if first_layer_bits is not None:
        if isinstance(first_layer_bits, bool) or not isinstance(first_layer_bits, int) or not 1 <= first_layer_bits <= 8:
            raise RecipeError(f"calibrate: first_layer_bits={first_layer_bits!r}; expected None or an integer in 1..8")
        convs = [n for n in kinds if kinds[n] == "conv2d"]
        if not convs:
            raise RecipeError("calibrate: first_layer_bits is set but the module has no conv2d layer")
        first = convs[0]
        if fp32_layers == "auto":
            fp32 = [n for n in fp32 if n != first]
        elif first in fp32:
            raise RecipeError(f"calibrate: fp32_layers keeps {first!r} float and first_layer_bits="
                              f"{first_layer_bits} quantizes it; drop one of the two")
    quantized = [name for name in kinds if name not in fp32]
    exposed = tvm.transform.Sequential([
        relay_passes.FoldBatchNorm(),
        relay_passes.LowerBatchNorm(),
        relay_passes.ExposeLayerInputs(quantized),
        relax.transform.BindParams("main", values),
    ])(mod)
    target = tvm.target.Target(host_target())
    try:
        executable = tvm.compile(exposed, target=target, relax_pipeline=relax.get_default_pipeline(target))
    except Exception as err:
        raise QnnError(f"calibrate: building the float module with exposed layer inputs failed: {err}") from err
    vm = relax.VirtualMachine(executable, tvm.cpu())
    input_shape = [int(d) for d in mod["main"].params[0].ty.shape]
    rng = np.random.default_rng(0)
    samples = {name: [] for name in quantized}
    input_sums = {}  # layer -> sum over calibration samples of its input (bias correction)
    weights = {}
    seen = 0
    batches = _batches(data)
    for index, batch in enumerate(tqdm(batches, desc="calibrate", unit="batch", disable=not progress)):
        if max_batches is not None and index >= max_batches:
            break
        check_finite_input(batch, f"calibrate: batch {index}",
                           "calibration data must be finite: a clamp computed from it would be NaN/inf")
        for chunk in _chunks(batch, input_shape):
            outputs = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(chunk)))
            fields = [outputs[i].numpy() for i in range(1, 1 + 2 * len(quantized))]
            for i, name in enumerate(quantized):
                flat = fields[i].reshape(-1)
                if flat.size > _SAMPLES_PER_BATCH:
                    flat = rng.choice(flat, _SAMPLES_PER_BATCH, replace=False)
                samples[name].append(flat)
                if bias_correction:
                    total = fields[i].astype(np.float64).sum(axis=0)
                    input_sums[name] = input_sums[name] + total if name in input_sums else total
                weights.setdefault(name, fields[len(quantized) + i])
            seen += 1
    if quantized and seen == 0:
        raise ShapeError(f"calibrate: no calibration batch of at least {input_shape[0]} sample(s) of shape {input_shape[1:]}")
    layers = {}
    for name in quantized:
        flat = np.concatenate(samples[name])
        bits = (first_layer_bits, first_layer_bits, "uniform", True) if name == first else (
            w_bits, a_bits, w_scheme, per_channel)
        clamp, z = activation_range(flat, reference.check_bits(bits[1], "a_bits", name), percentile, signed,
                                    zero_point, name)
        layers[name] = LayerQuant.from_weight(name, weights[name], bits[0], bits[1], clamp, bits[2], bits[3],
                                              a_zero_point=z)
    recipe = Recipe(layers, tuple(fp32), model_name)
    if bias_correction:
        means = {name: total / (seen * input_shape[0]) for name, total in input_sums.items()}
        recipe = correct_biases(mod, recipe, weights, means)
    return recipe


def correct_biases(mod, recipe, weights, mean_inputs):
    """``recipe`` with ``bias_correction`` set on every quantized layer that has a bias (module doc).

    ``weights``: each layer's float weight as the recipe quantizes it (BN folded); ``mean_inputs``:
    each layer's input averaged over the calibration samples (without the batch axis).
    """
    import dataclasses

    import torch
    import torch.nn.functional as F

    import relay_passes
    from relay_passes import rewrite
    from relay_passes.annotate import annotated_functions

    from .train.fakequant import lut_weight

    annotated = relay_passes.AnnotateQuantLayers(recipe)(relay_passes.FoldBatchNorm()(mod))
    layers = dict(recipe.layers)
    for name, (_, func) in annotated_functions(annotated).items():
        if rewrite.bias_param(func) is None:
            continue
        weight = np.asarray(weights[name], dtype=np.float64)
        error = torch.from_numpy(weight - lut_weight(layers[name], weights[name]).astype(np.float64))
        mean = torch.from_numpy(np.asarray(mean_inputs[name], dtype=np.float64))
        call, _ = rewrite.layer_op(func)
        if call.op.name == "relax.nn.conv2d":
            attrs = call.attrs
            if str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW":
                continue  # the importers emit NCHW/OIHW; another layout is left uncorrected
            top, left, bottom, right = (int(p) for p in attrs.padding)
            padded = F.pad(mean[None], (left, right, top, bottom))
            shift = F.conv2d(padded, error, stride=[int(v) for v in attrs.strides],
                             dilation=[int(v) for v in attrs.dilation], groups=int(attrs.groups))
            shift = shift.mean(dim=(0, 2, 3))
        else:  # dense: x (..., K) @ W.T
            shift = error @ mean.reshape(-1, error.shape[1]).mean(dim=0)
        layers[name] = dataclasses.replace(layers[name], bias_correction=shift.numpy())
    return recipe.replace(layers=layers)

"""``tvm_qnn.calibrate``: a post-training recipe for a float Relax module.

* Weights: LUT and bin edges from the reference quantizers (``LayerQuant.from_weight``:
  UNIQ k-quantile or NICE uniform), computed from the weight each layer really uses (after
  FoldBatchNorm when the graph still carries BN).
* Activation clamps: statistics of each quantized layer's *input*, collected by running the float
  module built with ``relay_passes.ExposeLayerInputs`` (which returns those inputs as extra
  outputs) on the calibration batches, with tqdm. The clamp is a high percentile of the input
  values (``percentile``), so rare outliers do not stretch the few activation levels.
"""

from __future__ import annotations


import numpy as np

from .errors import QnnError, QuantizationError, RecipeError, ShapeError
from .recipe import LayerQuant, Recipe

_SAMPLES_PER_BATCH = 200_000  # values kept per layer and batch for the percentile


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
              fp32_layers="auto", percentile=99.99, max_batches=None, model_name="", progress=True):
    """Post-training recipe for ``mod`` (``from_torch``/``from_onnx`` output) from ``data``.

    ``data``: an array ``(N, ...)``, a list of arrays, or a loader yielding ``(x, y)``; batches
    are cut to the module's batch size. ``fp32_layers``: "auto" (first conv + last dense), a
    list of names, or None. Returns a ``Recipe`` covering every conv2d/dense layer.
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
    quantized = [name for name in kinds if name not in fp32]
    exposed = tvm.transform.Sequential([
        relay_passes.FoldBatchNorm(),
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
                weights.setdefault(name, fields[len(quantized) + i])
            seen += 1
    if quantized and seen == 0:
        raise ShapeError(f"calibrate: no calibration batch of at least {input_shape[0]} sample(s) of shape {input_shape[1:]}")
    layers = {}
    for name in quantized:
        flat = np.concatenate(samples[name])
        clamp = float(np.percentile(flat, percentile))
        if not np.isfinite(clamp):  # finite inputs overflowed to inf inside the float model
            raise QuantizationError(f"calibrate: layer {name!r}: its input holds non-finite values (the float "
                                    f"model overflows on the calibration data); no finite clamp exists")
        if not clamp > 0:  # an input that is never positive: any clamp gives code 0
            clamp = float(max(flat.max(), 1.0))
        layers[name] = LayerQuant.from_weight(name, weights[name], w_bits, a_bits, clamp, w_scheme, per_channel)
    return Recipe(layers, tuple(fp32), model_name)

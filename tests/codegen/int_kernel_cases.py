"""Random integer-only layers for the int8/depthwise kernel tests, and their reference outputs."""

import numpy as np
import tvm

from tvm_qnn import reference


def random_case(rng, wl, next_bits=4, out_min=0.0, out_max=None):
    """Random weights/LUT/bias of ``wl`` and the integer params the accelerator compiler would make."""
    o, levels = wl.out_channels, 1 << wl.w_bits
    shape = (o, wl.channels_per_group, *wl.kernel) if wl.kind == "conv2d" else (o, wl.in_channels)
    idx = rng.integers(0, levels, shape).astype(np.uint8)
    lut = np.sort(rng.normal(size=(o if rng.integers(2) else 1, levels)), axis=1).astype(np.float32)
    s_a = float(reference.act_scale(rng.uniform(0.5, 3.0), wl.a_bits))
    s_next = float(reference.act_scale(rng.uniform(0.5, 3.0), next_bits))
    p = dict(reference.integer_requant_params(lut, s_a, rng.normal(size=o), s_next, o), s_a=s_a, out_min=out_min,
             out_max=out_max, lo=0, hi=(1 << next_bits) - 1)
    assert np.abs(p["lut_int"]).max() <= 127, "the integer-only mode's LUT must fit int8"
    return idx, p


def run_kernel(kernel, executable, inputs, args):
    out = tvm.runtime.empty(kernel.output_shape, kernel.output_dtype)
    executable["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in [*inputs, *args]], out)
    return out.numpy()


def expected_output(kernel, codes, idx, p, next_bits):
    wl = kernel.wl
    if kernel.output == "codes":
        if wl.kind == "conv2d":
            return reference.qconv2d_int(codes, idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"],
                                         next_bits, wl.stride, wl.padding, wl.groups, wl.dilation)
        return reference.qdense_int(codes, idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"], next_bits)
    if wl.kind == "conv2d":
        acc = reference.qconv2d_int_acc(codes, idx, p["lut_int"], p["bias_int"], wl.stride, wl.padding, wl.groups,
                                        wl.dilation)
    else:
        acc = reference.qdense_int_acc(codes, idx, p["lut_int"], p["bias_int"])
    scale = (p["s_a"] * p["s_w"]).reshape((1, -1) + (1,) * (acc.ndim - 2))
    lo = -np.inf if p["out_min"] is None else p["out_min"]
    hi = np.inf if p["out_max"] is None else p["out_max"]
    return np.clip(acc * scale, lo, hi).astype(np.float32)


def random_inputs(rng, kernel, p):
    wl = kernel.wl
    s_a = np.float32(p["s_a"])
    clamp = float(s_a * np.float32((1 << wl.a_bits) - 1))
    x = rng.uniform(-0.3, 1.2 * clamp, wl.input_shape).astype(np.float32)
    codes = reference.act_codes(x, clamp, wl.a_bits)
    return ([x, np.array([s_a], np.float32)] if kernel.input == "float" else [codes]), codes

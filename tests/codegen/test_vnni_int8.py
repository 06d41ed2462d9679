"""int8 VNNI kernels (codegen.vnni_int8) against tvm_qnn.reference's integer-only oracle, bit for bit.

The VNNI build runs only where the CPU has AVX-512 VNNI (running it elsewhere would be an illegal
instruction); its assembly is checked on any machine, and the plain fallback runs everywhere.
"""

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.build import cpu_target, generic_x86_target, kernel_asm
from codegen.vnni_int8 import Int8Kernel, int8_kernel_args
from codegen.vnni_schedule import scheduled_int8_primfunc, target_has_vnni
from codegen.workload import ConvWorkload
from tvm_qnn import reference
from tvm_qnn.errors import QuantizationError

NATIVE = cpu_target()
ZNVER4 = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 2})
ZNVER4_NO_VNNI = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4",
                                    "mattr": ["-avx512vnni"], "num-cores": 2})
needs_vnni = pytest.mark.skipif(not target_has_vnni(NATIVE), reason="this CPU has no AVX-512 VNNI")


def _build(kernel, target):
    func = scheduled_int8_primfunc(kernel).with_attr("global_symbol", "main")
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


def _case(rng, wl, next_bits=4, out_min=0.0, out_max=None):
    """Random weights/LUT/bias of ``wl`` and the integer params the accelerator compiler would make."""
    o, levels = wl.out_channels, 1 << wl.w_bits
    shape = (o, wl.channels_per_group, *wl.kernel) if wl.kind == "conv2d" else (o, wl.in_channels)
    idx = rng.integers(0, levels, shape).astype(np.uint8)
    lut = np.sort(rng.normal(size=(o if rng.integers(2) else 1, levels)), axis=1).astype(np.float32)
    s_a = float(reference.act_scale(rng.uniform(0.5, 3.0), wl.a_bits))
    s_next = float(reference.act_scale(rng.uniform(0.5, 3.0), next_bits))
    p = dict(reference.integer_requant_params(lut, s_a, rng.normal(size=o), s_next, o), s_a=s_a, out_min=out_min,
             out_max=out_max, lo=0, hi=(1 << next_bits) - 1)
    return idx, p


def _run(kernel, executable, inputs, args):
    out = tvm.runtime.empty(kernel.output_shape, kernel.output_dtype)
    executable["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in [*inputs, *args]], out)
    return out.numpy()


def _expected(kernel, codes, idx, p, next_bits):
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


def _inputs(rng, kernel, p):
    wl = kernel.wl
    s_a = np.float32(p["s_a"])
    clamp = float(s_a * np.float32((1 << wl.a_bits) - 1))
    x = rng.uniform(-0.3, 1.2 * clamp, wl.input_shape).astype(np.float32)
    codes = reference.act_codes(x, clamp, wl.a_bits)
    return ([x, np.array([s_a], np.float32)] if kernel.input == "float" else [codes]), codes


@st.composite
def int8_cases(draw):
    kind = draw(st.sampled_from(["conv2d", "conv2d", "dense"]))
    w_bits, a_bits = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    groups = draw(st.sampled_from([1, 1, 2, 3])) if kind == "conv2d" else 1
    cg = draw(st.integers(1, 21))  # channels per group: often not a multiple of 4 or 16
    og = draw(st.sampled_from([1, 5, 16, 17, 33]))
    common = dict(batch=draw(st.integers(1, 2)), in_channels=cg * groups, out_channels=og * groups,
                  a_bits=a_bits, w_bits=w_bits, groups=groups)
    if kind == "conv2d":
        k = draw(st.integers(1, 3))
        pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
        h, w = draw(st.integers(k, 9)), draw(st.integers(k, 9))
        stride = draw(st.integers(1, 2))
        wl = ConvWorkload("conv2d", height=h, width=w, kernel=(k, k), stride=(stride, stride), padding=pad, **common)
    else:
        wl = ConvWorkload("dense", height=1, width=1, **common)
    ends = (draw(st.sampled_from(["float", "codes"])), draw(st.sampled_from(["float", "codes"])))
    return wl, ends, draw(st.integers(1, 8)), draw(st.integers(0, 2**16))


def _check(case, vnni, target):
    wl, (input_kind, output_kind), next_bits, seed = case
    rng = np.random.default_rng(seed)
    kernel = Int8Kernel(wl, input_kind, output_kind, vnni=vnni)
    idx, p = _case(rng, wl, next_bits, out_min=rng.choice([None, 0.0]), out_max=rng.choice([None, 1.5]))
    inputs, codes = _inputs(rng, kernel, p)
    got = _run(kernel, _build(kernel, target), inputs, int8_kernel_args("drawn", kernel, idx, p))
    want = _expected(kernel, codes, idx, p, next_bits)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@needs_vnni
@settings(max_examples=12, deadline=None)
@given(int8_cases())
def test_vnni_kernel_matches_the_integer_only_reference(case):
    _check(case, True, NATIVE)


@settings(max_examples=4, deadline=None)
@given(int8_cases())
def test_plain_fallback_matches_the_integer_only_reference_on_generic_x86(case):
    _check(case, False, generic_x86_target())


def _resnet_like():
    return Int8Kernel(ConvWorkload("conv2d", 1, 64, 8, 8, 64, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=8, w_bits=4),
                      "codes", "codes", vnni=True)


def test_vnni_kernel_emits_vpdpbusd_on_zmm():
    asm = kernel_asm(_build(_resnet_like(), ZNVER4))
    assert "vpdpbusd" in asm and "zmm" in asm
    # the register tile keeps the accumulators in registers: no vpdpbusd reads its accumulator from memory
    lines = [line for line in asm.splitlines() if "vpdpbusd" in line]
    assert lines and not any("(%" in line.split(",")[-1] for line in lines), lines[:4]


def test_targets_without_vnni_get_the_plain_kernel():
    assert target_has_vnni(ZNVER4)
    assert not target_has_vnni(ZNVER4_NO_VNNI) and not target_has_vnni(generic_x86_target())
    plain = Int8Kernel(_resnet_like().wl, "codes", "codes", vnni=False)
    for target in (ZNVER4_NO_VNNI, generic_x86_target()):
        assert "vpdpbusd" not in kernel_asm(_build(plain, target))


def test_accumulators_beyond_int32_are_named():
    wl = ConvWorkload("dense", 1, 70000, 1, 1, 2, a_bits=8, w_bits=1)
    kernel = Int8Kernel(wl, "codes", "codes")
    idx, p = _case(np.random.default_rng(0), wl)
    with pytest.raises(QuantizationError, match="layer 'huge'.*beyond int32"):
        int8_kernel_args("huge", kernel, idx, p)

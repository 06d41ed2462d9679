"""LowerQnnToBitserial: composites become call_tir kernels; the lowered module matches the stock one."""

import numpy as np
import pytest
import tvm
from codegen_composites import chain_module
from codegen_layers import random_input, random_layer
from tvm import relax

from codegen.build import cpu_target
from relay_passes.lower_bitserial import LowerQnnToBitserial, qnn_composites
from tvm_qnn.layer import QnnLayer


def _run(mod, target, x):
    ex = tvm.compile(mod, target=target, relax_pipeline=relax.get_default_pipeline(target))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _layers(rng):
    first = random_layer(rng, channels=5, out_channels=70, size=9, w_bits=2, a_bits=2, scheme="kquantile")
    second = random_layer(rng, channels=70, out_channels=16, size=9, w_bits=3, a_bits=3, scheme="uniform",
                          stride=2, epilogue="relu6")
    object.__setattr__(second, "name", "test.second")
    n, c, h, w = second.output_shape
    third = random_layer(rng, kind="dense", channels=c * h * w, out_channels=10, w_bits=1, a_bits=4, epilogue="none")
    object.__setattr__(third, "name", "test.third")
    return [first, second], third


@pytest.mark.parametrize("pass_packed", [True, False])
def test_chain_lowered_matches_reference_and_stock_build(pass_packed):
    rng = np.random.default_rng(5)
    (first, second), _ = _layers(rng)
    mod, read_layer = chain_module([first, second])
    target = cpu_target()
    # popcount on both (the packed chain is what is checked; the int8 kernel reads float)
    lowered = LowerQnnToBitserial(target=target, read_layer=read_layer, pass_packed=pass_packed, auto_int8=False)(mod)
    assert not qnn_composites(lowered)
    script = lowered.script()
    assert script.count("R.call_tir(cls.qnn_bitserial_conv2d") == 2
    # the first conv hands the second its packed codes (uint64 words), not floats
    assert ('dtype="uint64"' in script) == pass_packed
    x = random_input(rng, first)
    out = _run(lowered, target, x)
    stock = _run(mod, target, x)
    expected = second.reference(first.reference(x).astype(np.float32)) + 1.0
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(out, stock, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_dense_composite_lowered():
    rng = np.random.default_rng(6)
    _, dense = _layers(rng)
    dense = QnnLayer(**{**{f: getattr(dense, f) for f in dense.__dataclass_fields__}, "input_shape": (2, dense.in_channels)})
    mod, read_layer = chain_module([dense], tail_add=False)
    lowered = LowerQnnToBitserial(target=cpu_target(), read_layer=read_layer)(mod)
    x = random_input(rng, dense)
    np.testing.assert_allclose(_run(lowered, cpu_target(), x), dense.reference(x), rtol=1e-5, atol=1e-5)


def test_module_without_composites_unchanged():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 3), "float32"))
    with bb.function("main", [x]):
        out = bb.emit(relax.op.add(x, x))
        bb.emit_func_output(out)
    before = bb.get()
    tvm.ir.assert_structural_equal(LowerQnnToBitserial()(before), before)

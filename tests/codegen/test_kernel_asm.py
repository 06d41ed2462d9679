"""The hand-scheduled kernel uses VPOPCNTQ on znver4 and still runs exactly on a generic x86-64 CPU."""

import numpy as np
import pytest
import tvm
from codegen_kernel_cache import hand_kernel
from codegen_layers import random_input, random_layer

from codegen.build import kernel_asm
from codegen.plan import kernel_args, layer_workload


def _layer():
    return random_layer(np.random.default_rng(11), channels=128, out_channels=32, size=8, w_bits=2, a_bits=2,
                        scheme="uniform")


def test_znver4_assembly_has_vector_popcount():
    wl = layer_workload(_layer())
    znver4 = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 2})
    from codegen.build import build_kernel

    asm = kernel_asm(build_kernel(wl, znver4))
    assert "vpopcntq" in asm
    assert "zmm" in asm


@pytest.mark.parametrize("target_name", ["generic", "native"])
def test_runs_exactly_on_target(target_name):
    layer = _layer()
    wl = layer_workload(layer)
    kernel = hand_kernel(wl, target_name)
    if target_name == "generic":
        assert "vpopcntq" not in kernel_asm(kernel)
    x = random_input(np.random.default_rng(2), layer)
    x.flat[::97] = np.nan  # NaN inputs give code 0 (reference.act_codes), on every target
    out = tvm.runtime.empty(wl.output_shape, "float32")
    kernel["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in kernel_args(layer, wl).as_list()], out)
    expected = layer.reference(x)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))

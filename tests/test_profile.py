"""CompiledModel.profile: per-kernel time with the kernel kind, from TVM's VM instrument hook."""

import numpy as np
import pytest
import torch

import tvm_qnn
from tvm_qnn.checks import ArgumentError
from tvm_qnn.profile import kernel_kind


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 4)).eval()


@pytest.fixture(scope="module")
def quantized():
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, 8, 8), dtype=np.float32)
    mod, params = tvm_qnn.from_torch(_net(), torch.from_numpy(x))
    recipe = tvm_qnn.calibrate(mod, params, rng.random((4, 3, 8, 8), dtype=np.float32), w_bits=2, a_bits=2,
                               progress=False)
    return tvm_qnn.quantize(mod, params, recipe), x


def test_profile_rows_name_the_bitserial_kernels_and_add_up(quantized, capsys):
    qmod, x = quantized
    compiled = tvm_qnn.compile(qmod, target="cpu")
    result = compiled.profile(x, repeat=2)
    printed = capsys.readouterr().out
    kinds = {row["name"]: row["kind"] for row in result.rows}
    assert set(compiled.artifact.info["bitserial_kernels"]) <= {n for n, k in kinds.items() if k == "bit-serial"}
    assert "float" in kinds.values() and "runtime" in kinds.values()  # fp32 first conv / dense, VM builtins
    assert sum(row["ms"] for row in result.rows) == pytest.approx(result.total_ms)
    assert sum(row["share"] for row in result.rows) == pytest.approx(1.0)
    assert 0.0 < result.quantized_share() < 1.0 and result.plain_ms > 0
    assert "bit-serial" in printed and "quantized kernels" in printed
    # the profiled VM leaves the model's own results alone
    np.testing.assert_array_equal(compiled.run(x), compiled.run(x))


def test_profile_of_integer_only_build_names_vnni_or_popcount(quantized):
    qmod, x = quantized
    compiled = tvm_qnn.compile(qmod, target="cpu", integer_only=True)
    result = compiled.profile(x, repeat=1, show=False)
    chosen = set(compiled.artifact.info["layer_kernels"].values())
    profiled = {row["kind"] for row in result.rows} - {"float", "runtime"}
    assert profiled and profiled <= {"popcount", "vnni", "int8_avx2", "int8_plain", "depthwise"}
    assert {kind.replace("-", "_") for kind in chosen} == profiled


def test_kernel_kind_of_symbols():
    assert kernel_kind("qnn_vnni_int_conv2d") == "vnni"
    assert kernel_kind("qnn_popcount_int_dense") == "popcount"
    assert kernel_kind("qnn_bitserial_conv2d") == "bit-serial"
    assert kernel_kind("vm.builtin.alloc_tensor") == "runtime"
    assert kernel_kind("fused_conv2d_add_relu") == "float"


def test_profile_refuses_bad_repeat(quantized):
    qmod, x = quantized
    compiled = tvm_qnn.compile(qmod, target="cpu-reference")
    with pytest.raises(ArgumentError, match="profile: repeat"):
        compiled.profile(x, repeat=0)

"""A residual block's add (+ ReLU) runs in the epilogue of the conv before it: same outputs as cpu-reference,
and no separate add left over the conv's output (popcount and int8 kernels)."""

import functools

import numpy as np
import pytest
import torch

import tvm

import tvm_qnn
from codegen.build import cpu_target
from tvm_qnn.targets.cpu import cpu_pipeline
from tvm_qnn.targets.cpu_reference import strip_composite_marks
from relay_passes.lower_bitserial import LowerQnnToBitserial


class _Blocks(torch.nn.Module):
    """An fp32 stem, a BasicBlock with an identity shortcut, a strided block with a 1x1 conv shortcut
    (computed after the main branch, as torchvision's BasicBlock does) and a classifier."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, c, 3, padding=1)
        self.c1, self.b1 = torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.BatchNorm2d(c)
        self.c2, self.b2 = torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.BatchNorm2d(c)
        self.c3, self.c4 = torch.nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), torch.nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.down = torch.nn.Conv2d(c, 2 * c, 1, stride=2)
        self.fc = torch.nn.Linear(2 * c, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + x)
        z = self.c4(torch.relu(self.c3(y)))
        z = z + self.down(y)  # no ReLU after this add
        return self.fc(z.mean((2, 3)))


@functools.lru_cache(maxsize=None)
def _quantized(w_bits, a_bits):
    torch.manual_seed(0)
    model = _Blocks().eval()
    x = np.random.default_rng(0).standard_normal((9, 3, 16, 16)).astype(np.float32)
    mod, params = tvm_qnn.from_torch(model, x[:1])
    recipe = tvm_qnn.calibrate(mod, params, x[:8], w_bits=w_bits, a_bits=a_bits, w_scheme="uniform",
                               per_channel=True, progress=False)
    return tvm_qnn.quantize(mod, params, recipe), x[8:]


@pytest.mark.parametrize("bits,kind", [((1, 1), "popcount"), ((4, 4), "vnni")])
def test_residual_add_fused_and_equal_to_reference(bits, kind):
    qmod, x = _quantized(*bits)
    target = cpu_target()
    fused = LowerQnnToBitserial(target=target)(qmod).script()
    separate = LowerQnnToBitserial(target=target, fuse_residual=False)(qmod).script()
    assert separate.count("R.add(") - fused.count("R.add(") == 2  # both residual adds folded into kernels
    assert separate.count("R.nn.relu(") - fused.count("R.nn.relu(") == 1  # the ReLU after the first one too
    cm = tvm_qnn.compile(qmod, target="cpu")
    kinds = set(cm.artifact.info["layer_kernels"].values())
    assert kinds == ({kind} if kind == "popcount" else kinds & {"vnni", "int8-avx2", "int8-plain"}) and kinds, kinds
    np.testing.assert_array_equal(cm.run(x), tvm_qnn.compile(qmod, target="cpu-reference").run(x))


def test_int8_convs_chain_in_nhwc_and_transpose_only_at_the_chain_ends():
    """The 4-bit block chain runs NHWC int8 kernels: one transposition into the chain (the stem's output,
    read as data and as residual) and one out of it (the global pool's input); the same module lowered
    with NCHW kernels has none and computes the same outputs, as cpu-reference does."""
    qmod, x = _quantized(4, 4)
    target = cpu_target()
    nhwc = LowerQnnToBitserial(target=target)(qmod)
    nchw = LowerQnnToBitserial(target=target, nhwc=False)(qmod)
    assert nhwc.script().count("R.permute_dims(") == 2
    assert nchw.script().count("R.permute_dims(") == 0
    outputs = []
    for lowered in (nhwc, nchw):
        executable = tvm.compile(strip_composite_marks(lowered), target=target, relax_pipeline=cpu_pipeline(target))
        vm = tvm.relax.VirtualMachine(executable, tvm.cpu())
        outputs.append(vm["main"](tvm.runtime.tensor(x)).numpy())
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], tvm_qnn.compile(qmod, target="cpu-reference").run(x))


class _InvertedResiduals(torch.nn.Module):
    """Two MobileNetV2 blocks (1x1 expand, 3x3 depthwise, 1x1 project; the second with its shortcut)."""

    def __init__(self, c=16, wide=48):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, c, 3, padding=1)
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv2d(c, wide, 1), torch.nn.ReLU6(),
                                torch.nn.Conv2d(wide, wide, 3, padding=1, groups=wide), torch.nn.ReLU6(),
                                torch.nn.Conv2d(wide, c, 1)) for _ in range(2))
        self.fc = torch.nn.Linear(c, 10)

    def forward(self, x):
        x = self.blocks[0](torch.relu(self.stem(x)))
        x = x + self.blocks[1](x)
        return self.fc(x.mean((2, 3)))


def test_int8_convs_between_depthwise_convs_keep_nchw():
    """Every 1x1 conv of an inverted-residual chain reads or feeds a depthwise conv (an NCHW kernel): NHWC
    would need more transpositions than it saves, so nhwc_convs keeps them NCHW and none is emitted."""
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((9, 3, 12, 12)).astype(np.float32)
    mod, params = tvm_qnn.from_torch(_InvertedResiduals().eval(), x[:1])
    recipe = tvm_qnn.calibrate(mod, params, x[:8], w_bits=4, a_bits=4, w_scheme="uniform", per_channel=True,
                               progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    lower = LowerQnnToBitserial(target=cpu_target())
    lowered = lower(qmod)
    assert "depthwise" in lower.layer_kernels.values()
    assert lowered.script().count("R.permute_dims(") == 0
    np.testing.assert_array_equal(tvm_qnn.compile(qmod, target="cpu").run(x[8:]),
                                  tvm_qnn.compile(qmod, target="cpu-reference").run(x[8:]))

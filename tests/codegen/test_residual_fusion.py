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
    """The 4-bit block chain runs NHWC int8 kernels: one transposition into the chain (of the input image:
    the fp32 stem whose output the chain reads as data and as residual runs NHWC too) and one out of it
    (the global pool's input); the same module lowered with NCHW kernels has none and computes the same
    outputs, as cpu-reference does."""
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


class _PooledStem(_Blocks):
    """:class:`_Blocks` behind a ResNet stem (7x7/2 conv, batch norm, ReLU, 3x3/2 max pool). ``case``:
    "pool"; "pool_side", the stem's output also read by a float op outside the blocks (a second head);
    "side", the same without the pool (the blocks read the stem's ReLU directly)."""

    def __init__(self, case, c=16):
        super().__init__(c)
        self.case = case
        self.stem, self.bn = torch.nn.Conv2d(3, c, 7, stride=2, padding=3, bias=False), torch.nn.BatchNorm2d(c)

    def forward(self, x):
        s = torch.relu(self.bn(self.stem(x)))
        p = s if self.case == "side" else torch.nn.functional.max_pool2d(s, 3, 2, 1)
        y = torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(p))))) + p)
        z = self.c4(torch.relu(self.c3(y))) + self.down(y)
        out = self.fc(z.mean((2, 3)))
        return out if self.case == "pool" else torch.cat([out, s.mean((2, 3))], 1)


@pytest.mark.parametrize("case", ["pool", "pool_side", "side"])
def test_fp32_stem_under_an_nhwc_chain_runs_nhwc(case):
    """The int8 blocks read the max pool of an fp32 stem: the conv, its bias, ReLU and the pool are redone
    in NHWC (the only transposition into the chain is the input image's), with the same outputs as
    cpu-reference. Where the stem's NCHW output is read elsewhere as well, the conv is not computed twice:
    it stays NCHW and its output is transposed (the pool, read only by the chain, still runs NHWC)."""
    torch.manual_seed(0)
    module = _PooledStem(case)
    module.bn.running_mean.uniform_(-0.5, 0.5)
    module.bn.running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(2).standard_normal((9, 3, 32, 32)).astype(np.float32)
    mod, params = tvm_qnn.from_torch(module.eval(), x[:1])
    recipe = tvm_qnn.calibrate(mod, params, x[:8], w_bits=4, a_bits=4, w_scheme="uniform", per_channel=True,
                               progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    lines = LowerQnnToBitserial(target=cpu_target())(qmod).script().split("\n")
    convs = [line for line in lines if "R.nn.conv2d(" in line]
    pools = [line for line in lines if "R.nn.max_pool2d(" in line]
    transposed = [line for line in lines if "R.permute_dims(" in line]
    assert len(convs) == 1
    assert ('data_layout="NHWC"' in convs[0]) == (case == "pool")
    assert all('layout="NHWC"' in line for line in pools) and len(pools) == (case != "side")
    assert ("R.permute_dims(x, " in transposed[0]) == (case == "pool") and len(transposed) == 2
    np.testing.assert_array_equal(tvm_qnn.compile(qmod, target="cpu").run(x[8:]),
                                  tvm_qnn.compile(qmod, target="cpu-reference").run(x[8:]))


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

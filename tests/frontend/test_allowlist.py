"""The import allow-list (tvm_qnn.frontend.allowlist): every listed op is tested here in float
against torch and onnxruntime; every other op is refused by name and place before TVM builds.
"""

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import tvm_qnn
from tvm_qnn.errors import UnsupportedOpError
from tvm_qnn.frontend import allowlist
from tvm_qnn.frontend.cnn_ops import TESTED_OPS
from tvm_qnn.frontend.allowlist import FloatOnlyWarning


class Cnn(nn.Module):
    """conv2d, unfolded BN, relu, relu6, max/avg/adaptive pooling, add, mul, cat, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(2)  # before a conv: not folded by from_torch
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.side = nn.Conv2d(2, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.relu6 = nn.ReLU6()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.bn(x)
        a = torch.relu(self.conv(x))
        b = self.relu6(self.side(x) * 2.0)
        y = self.pool(a + b)
        y = torch.cat([y, self.avg(b)], dim=1)
        return self.fc(torch.flatten(self.gap(y), 1))


class Shapes(nn.Module):
    """view, reshape, mean over axes, dropout (eval)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.drop = nn.Dropout(0.5)  # identity in eval mode (classifier heads of torchvision models)
        self.fc = nn.Linear(4 * 6 * 6, 4)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(self.drop(y.view(1, -1))) + self.fc(y.reshape(1, 144)) + y.mean(dim=(2, 3))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 3, 3)
        self.fc = nn.Linear(3 * 14, 4)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.c1(x)), 1))


class Mixed(nn.Module):
    """An image conv2d followed by a Conv1d over the flattened positions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.c1 = nn.Conv1d(4, 3, 3)

    def forward(self, x):
        return self.c1(torch.flatten(self.conv(x), 2))


class UpNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(2, 3, 2, stride=2)

    def forward(self, x):
        return self.up(x)


class TorchvisionInplace(nn.Module):
    """What torchvision's MobileNet / EfficientNet / MNASNet / ShuffleNet blocks export to: in-place
    ReLU6, Hardswish, SiLU and Dropout (``aten.hardtanh_``, ``hardswish_``, ``silu_``, ``dropout_``),
    and ShuffleNet's ``chunk`` into two halves (``aten.chunk`` + ``getitem``) with a ``contiguous``
    channel shuffle."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(2, 2, 1)
        self.acts = nn.Sequential(nn.ReLU6(inplace=True), nn.Hardswish(inplace=True), nn.SiLU(inplace=True),
                                  nn.Dropout(0.2, inplace=True))

    def forward(self, x):
        left, right = self.acts(self.a(x)).chunk(2, dim=1)
        y = torch.cat((left, self.b(right)), dim=1)
        y = y.view(1, 2, 2, 8, 8).transpose(1, 2).contiguous()
        return y.view(1, 4, 8, 8)


class ConvBn(nn.Sequential):
    """Conv -> BN -> ReLU. Its BN bias and running mean stay equal (zero): the ONNX exporter without
    constant folding shares identical initializers through Identity nodes."""

    def __init__(self):
        super().__init__(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.ReLU())


class InplaceActs(nn.Module):
    """torchvision's in-place residual add and ReLU, and a functional ReLU6 (``aten.add_``,
    ``aten.relu_``, ``aten.relu6`` in torch.export)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3)

    def forward(self, x):
        y = self.a(x)
        y += x
        return torch.nn.functional.relu6(self.b(torch.relu_(y)))


TORCH_EXAMPLES = {
    "conv_bn": (ConvBn, (1, 2, 8, 8)),
    "inplace_acts": (InplaceActs, (1, 2, 8, 8)),
    "torchvision_inplace": (TorchvisionInplace, (1, 2, 8, 8)),
    "cnn": (Cnn, (1, 2, 8, 8)),
    "shapes": (Shapes, (1, 2, 8, 8)),
    "conv1d": (Conv1dNet, (1, 2, 16)),
    "conv_transpose2d": (UpNet, (1, 2, 5, 5)),
}


def _model(name):
    torch.manual_seed(1)
    cls, shape = TORCH_EXAMPLES[name]
    model = cls().eval()
    for module in model.modules():  # non-trivial BN statistics
        if isinstance(module, nn.BatchNorm2d):
            if not isinstance(model, ConvBn):
                module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model, torch.rand(shape, generator=torch.Generator().manual_seed(2)) * 2 - 0.5


def _exported_ops(model, x):
    from tvm_qnn.train.fold_bn import fold_batchnorm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(fold_batchnorm(model), (x,))
    return {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}


ONNX_EXPORT_OPTIONS = {"conv_bn": {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False}}


def _onnx_model(model, x, name=None):
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["x"], output_names=["y"],
                          **ONNX_EXPORT_OPTIONS.get(name, {}))
    return onnx.load_from_string(buffer.getvalue())


def test_every_allowed_op_has_a_float_example():
    torch_seen, onnx_seen = set(), set()
    for name in TORCH_EXAMPLES:
        model, x = _model(name)
        torch_seen |= _exported_ops(model, x)
        onnx_seen |= {node.op_type for node in _onnx_model(model, x, name).graph.node}
    for ops in TESTED_OPS.values():  # tests/frontend/test_cnn_ops.py runs these families in float
        torch_seen |= set(ops["aten"])
        onnx_seen |= set(ops["onnx"])
    assert set(allowlist.TORCH_OPS) <= torch_seen, sorted(set(allowlist.TORCH_OPS) - torch_seen)
    assert set(allowlist.ONNX_OPS) <= onnx_seen, sorted(set(allowlist.ONNX_OPS) - onnx_seen)


@pytest.mark.parametrize("name", sorted(TORCH_EXAMPLES))
def test_allowed_ops_match_torch_in_float(name):
    model, x = _model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FloatOnlyWarning)
        mod, params = tvm_qnn.from_torch(model, x)
    compiled = tvm_qnn.compile(mod, target="cpu", params=params)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(compiled.run(x.numpy()), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(TORCH_EXAMPLES))
def test_allowed_onnx_ops_match_onnxruntime_in_float(name):
    import onnxruntime

    model, x = _model(name)
    onnx_model = _onnx_model(model, x, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FloatOnlyWarning)
        mod, params = tvm_qnn.from_onnx(onnx_model)
    compiled = tvm_qnn.compile(mod, target="cpu", params=params)
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(compiled.run(x.numpy()), expected, rtol=1e-4, atol=1e-5)


class Wrap(nn.Module):
    def __init__(self, inner, attention=False):
        super().__init__()
        self.inner = inner
        self.attention = attention

    def forward(self, x):
        out = self.inner(x, x, x) if self.attention else self.inner(x)
        return out[0] if isinstance(out, tuple) else out


REFUSED = {
    "lstm": (lambda: Wrap(nn.LSTM(8, 8, batch_first=True)), (1, 4, 8), r"aten\.\w+\.\w+ in module 'inner' \(LSTM\)"),
    "multi-head attention": (lambda: Wrap(nn.MultiheadAttention(8, 2, batch_first=True), attention=True), (1, 4, 8),
                             r"in module 'inner' \(MultiheadAttention\)"),
    "transformer encoder layer": (lambda: Wrap(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)), (1, 4, 8),
                                  r"in module 'inner.*' \((TransformerEncoderLayer|MultiheadAttention|Linear|Dropout|"
                                  r"LayerNorm)\)"),
    # GELU and LeakyReLU are admitted since signed activations have zero points (tests/frontend/test_cnn_ops.py)
    "elu": (lambda: nn.Sequential(nn.Linear(4, 4), nn.ELU()), (1, 4), r"aten.elu.default in module '1' \(ELU\)"),
    "layer norm": (lambda: nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), (1, 4),
                   r"aten.layer_norm.default in module '1' \(LayerNorm\)"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unlisted_torch_ops_are_refused_by_name_before_any_build(case, monkeypatch):
    import tvm.relax.frontend.torch as relax_torch

    def must_not_run(*args, **kwargs):
        raise AssertionError("the Relax importer ran before the allow-list refused the graph")

    monkeypatch.setattr(relax_torch, "from_exported_program", must_not_run)
    build, shape, where = REFUSED[case]
    torch.manual_seed(0)
    with pytest.raises(UnsupportedOpError, match=rf"from_torch: .*op .*{where}.* is not supported"):
        tvm_qnn.from_torch(build().eval(), torch.rand(shape))


def test_unlisted_onnx_op_is_refused_naming_the_node(monkeypatch):
    from tvm_qnn.frontend.onnx_rewrite import fold_constant_nodes

    import tvm.relax.frontend.onnx as relax_onnx

    monkeypatch.setattr(relax_onnx, "from_onnx", lambda *a, **k: (_ for _ in ()).throw(AssertionError("built")))
    model = _onnx_model(Wrap(nn.LSTM(8, 8, batch_first=True)).eval(), torch.rand(1, 4, 8))
    assert "LSTM" in {n.op_type for n in model.graph.node}
    # the first node left after import-time folding (Shape/Expand chains of static shapes become constants)
    folded = fold_constant_nodes(model)
    index, node = next((i, n) for i, n in enumerate(folded.graph.node) if n.op_type not in allowlist.ONNX_OPS)
    with pytest.raises(UnsupportedOpError, match=rf"from_onnx: op {node.op_type} at node '{node.name}' \(#{index}\) "
                                                 rf"is not supported.*nothing was compiled"):
        tvm_qnn.from_onnx(model)


def test_unquantized_layers_are_reported_with_the_reason():
    model, x = _model("conv1d")
    with pytest.warns(FloatOnlyWarning, match=r"module 'c1' \(Conv1d\).* stays fp32: Conv1d: only conv2d and dense"):
        tvm_qnn.from_torch(model, x)
    table = tvm_qnn.bops(Mixed().eval(), (2, 8, 8))
    row = table["c1.weight"]
    assert (row.kind, row.b_w, row.b_a, row.note) == ("conv1d", 32, 32, "fp32: only conv2d and dense layers are quantized")
    assert row.shape == (3, 4, 3)
    assert row.macs == 62 * 3 * 4 * 3  # 62 positions x 3 out x 4 in x kernel 3
    assert "conv1d (fp32: only conv2d and dense layers are quantized)" in table.to_markdown()
    assert (table["conv.weight"].kind, table["conv.weight"].note) == ("conv2d", "")
    up, x = _model("conv_transpose2d")
    with pytest.warns(FloatOnlyWarning, match=r"module 'up' \(ConvTranspose2d\).* stays fp32"):
        tvm_qnn.from_torch(up, x)
    row = tvm_qnn.bops(up, (1, 2, 5, 5))["up.weight"]
    assert (row.kind, row.b_w, row.macs) == ("convtranspose2d", 32, 25 * 3 * 2 * 4)

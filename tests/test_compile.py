"""tvm_qnn.compile / CompiledModel / load, and the target registry: numbers and bad input."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import tvm_qnn
from tvm_qnn import targets
from tvm_qnn.targets.cpu_reference import CpuReferenceLowering
from tvm_qnn.errors import ExportError, RecipeError, ShapeError, UnsupportedOpError
from tvm_qnn.models import default_fp32_layers, dw_separable_net, fmnist_resnet, tiny_cnn
from tvm_qnn.train.fakequant import apply_recipe


def relative_error(got, ref):
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def assert_matches_fake_quant(got, ref):
    """Compiled vs torch fake-quant: every image within 1e-4 (max |diff| / max |ref|), except at most
    one image per 50 whose activation code flipped at a rounding boundary (the float32 sums of the
    preceding layer differ in their last bit between torch and TVM); top-1 always agrees."""
    per_image = np.abs(got - ref).reshape(len(ref), -1).max(axis=1) / np.abs(ref).max()
    allowed = max(1, len(ref) // 50) if len(ref) > 1 else 0
    assert int((per_image > 1e-4).sum()) <= allowed, per_image
    assert (got.argmax(axis=1) == ref.argmax(axis=1)).all()


def randomize_batchnorm(model, seed=0):
    """Non-trivial BN statistics so that BN folding matters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(module.num_features, generator=generator) * 0.4 - 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    x = torch.rand(2, 1, 28, 28)
    mod, params = tvm_qnn.from_torch(model, x)
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(8, 1, 28, 28), w_bits=2, a_bits=2, progress=False)
    compiled = tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)
    return model, x, mod, params, recipe, compiled


def test_tiny_cnn_w2a2_matches_torch_fake_quant(tiny):
    model, x, _, _, recipe, compiled = tiny
    assert sorted(recipe.layers) == ["conv2.weight", "fc1.weight"]
    assert_matches_fake_quant(compiled.run(x), apply_recipe(model, recipe)(x).numpy())


@pytest.mark.parametrize("scheme,bits", [("kquantile", 2), pytest.param("uniform", 3, marks=pytest.mark.slow)])
def test_fmnist_resnet_matches_torch_fake_quant(scheme, bits):
    torch.manual_seed(1)
    model = randomize_batchnorm(fmnist_resnet())
    x = torch.rand(8, 1, 28, 28)
    mod, params = tvm_qnn.from_torch(model, x)
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(16, 1, 28, 28), w_bits=bits, a_bits=bits, w_scheme=scheme,
                               progress=False)
    assert recipe.fp32_layers == tuple(default_fp32_layers(model))
    compiled = tvm_qnn.compile(mod, recipe=recipe, params=params)  # target "cpu"
    assert_matches_fake_quant(compiled.run(x), apply_recipe(model, recipe)(x).numpy())


def test_depthwise_separable_net_matches():
    torch.manual_seed(2)
    model = randomize_batchnorm(dw_separable_net())
    x = torch.rand(4, 1, 28, 28)
    mod, params = tvm_qnn.from_torch(model, x)
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(8, 1, 28, 28), w_bits=3, a_bits=3, w_scheme="uniform",
                               per_channel=True, progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    from relay_passes.composite import read_qnn_layers

    groups = {name: layer.groups for name, layer in read_qnn_layers(qmod).items()}
    assert groups["blocks.0.dw.weight"] == 16 and groups["blocks.0.pw.weight"] == 1
    assert_matches_fake_quant(tvm_qnn.compile(qmod, target="cpu-reference").run(x), apply_recipe(model, recipe)(x).numpy())


def test_all_fp32_recipe_equals_plain_torch_and_plain_tvm(tiny):
    model, x, mod, params, recipe, _ = tiny
    all_fp32 = recipe.replace(layers={}, fp32_layers=tuple(recipe.fp32_layers) + tuple(recipe.layers))
    quantized = tvm_qnn.compile(mod, recipe=all_fp32, params=params).run(x)
    plain_tvm = tvm_qnn.compile(mod, params=params).run(x)
    plain_torch = model(x).detach().numpy()
    assert relative_error(quantized, plain_torch) <= 1e-5
    np.testing.assert_array_equal(quantized, plain_tvm)


def test_export_then_load_in_a_fresh_process_is_bit_exact(tiny, tmp_path):
    _, x, _, _, recipe, compiled = tiny
    export_dir = compiled.export(tmp_path / "model")
    names = sorted(p.name for p in export_dir.iterdir())
    assert names == ["manifest.json", "model.so", "recipe.json"]
    np.save(tmp_path / "x.npy", x.numpy())
    script = textwrap.dedent(f"""
        import numpy as np, tvm_qnn
        model = tvm_qnn.load({str(export_dir)!r})
        assert model.recipe is not None and sorted(model.recipe.layers) == {sorted(recipe.layers)!r}
        np.save({str(tmp_path / "y.npy")!r}, model.run(np.load({str(tmp_path / "x.npy")!r})))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), compiled.run(x))


def test_benchmark_reports_mean_and_std(tiny):
    result = tiny[-1].benchmark(repeat=2, number=1)
    assert result["mean_ms"] > 0 and result["std_ms"] >= 0 and result["repeat"] == 2


# --------------------------------------------------------------------------- bad input
def test_run_rejects_wrong_shape_and_dtype(tiny):
    compiled = tiny[-1]
    with pytest.raises(ShapeError, match=r"shape \(1, 1, 28, 28\); expected \(2, 1, 28, 28\)"):
        compiled.run(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(ShapeError, match="dtype float64; expected float32"):
        compiled.run(np.zeros((2, 1, 28, 28)))
    with pytest.raises(ShapeError, match="got 2 input"):
        compiled.run(np.zeros((2, 1, 28, 28), np.float32), np.zeros(1, np.float32))


def test_recipe_for_an_absent_layer_is_rejected(tiny):
    _, _, mod, params, recipe, _ = tiny
    bad = recipe.replace(fp32_layers=tuple(recipe.fp32_layers) + ("fc9.weight",))
    with pytest.raises(RecipeError, match="absent.*fc9.weight"):
        tvm_qnn.compile(mod, recipe=bad, params=params)


class WithTransposedConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(1, 2, 2, stride=2)

    def forward(self, x):
        return self.up(x)


def test_recipe_naming_an_unquantizable_op_is_rejected(tiny):
    from tvm_qnn.recipe import LayerQuant, Recipe

    mod, params = tvm_qnn.from_torch(WithTransposedConv(), torch.rand(1, 1, 4, 4))
    recipe = Recipe({"up.weight": LayerQuant.from_weight("up.weight", params["up.weight"], 2, 2, 1.0)})
    with pytest.raises(UnsupportedOpError, match="'up.weight'.*conv2d_transpose"):
        tvm_qnn.quantize(mod, params, recipe)


def test_unknown_target_lists_the_known_ones(tiny):
    with pytest.raises(UnsupportedOpError, match=r"unknown target 'tpu'.*cpu-reference"):
        tvm_qnn.compile(tiny[2], target="tpu", params=tiny[3])


@pytest.fixture
def exported(tiny, tmp_path):
    return tiny[-1].export(tmp_path / "exp")


def test_corrupt_export_is_rejected_naming_the_file(exported):
    library = exported / "model.so"
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="model.so.*SHA-256"):
        tvm_qnn.load(exported)


def test_partial_export_is_rejected_naming_the_file(exported):
    (exported / "recipe.json").unlink()
    with pytest.raises(ExportError, match="recipe.json.*missing"):
        tvm_qnn.load(exported)
    (exported / "manifest.json").unlink()
    with pytest.raises(ExportError, match="manifest.json is missing"):
        tvm_qnn.load(exported)


def test_manifest_from_another_version_is_rejected(exported):
    import json

    manifest = json.loads((exported / "manifest.json").read_text())
    manifest["versions"]["tvm_qnn"] = "0.0.1"
    (exported / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="0.0.1"):
        tvm_qnn.load(exported)


def test_loaded_model_exports_again(exported, tmp_path):
    loaded = tvm_qnn.load(exported)
    again = loaded.export(tmp_path / "again")
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in exported.iterdir())
    x = np.random.default_rng(3).random(tuple(loaded.inputs[0]["shape"])).astype(np.float32)
    np.testing.assert_array_equal(tvm_qnn.load(again).run(x), loaded.run(x))
    (exported / "recipe.json").write_text("{}")  # the source changed after it was loaded
    with pytest.raises(ExportError, match="recipe.json does not match its SHA-256"):
        loaded.export(tmp_path / "third")
    assert not (tmp_path / "third").exists()


def test_export_refuses_a_non_empty_directory(tiny, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "other.txt").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        tiny[-1].export(tmp_path / "busy")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["other.txt"]


# --------------------------------------------------------------------------- registry
class _DummyLowering(targets.Lowering):
    kind = "cpu"

    def build(self, qmod, options):
        return CpuReferenceLowering().build(qmod, options)


def test_register_target_adds_a_name_and_guards_taken_ones(monkeypatch):
    monkeypatch.setattr(targets, "_USER_TARGETS", {})
    with pytest.raises(UnsupportedOpError, match="unknown target 'cpu-test'"):
        targets.get_target("cpu-test")
    targets.register_target("cpu-test", _DummyLowering)
    assert isinstance(targets.get_target("cpu-test"), _DummyLowering)
    assert "cpu-test" in targets.known_targets()
    with pytest.raises(UnsupportedOpError, match="already registered"):
        targets.register_target("cpu-test", CpuReferenceLowering)
    with pytest.raises(UnsupportedOpError, match="already registered"):  # a built-in name too
        targets.register_target("cpu", _DummyLowering)


def test_builtin_targets_come_from_the_table_not_from_imports():
    import sys

    for name, where in targets.BUILTIN_TARGETS.items():
        module, cls = where.split(":")
        lowering = targets.get_target(name)
        assert type(lowering).__name__ == cls and module in sys.modules and lowering.name == name


def test_host_target_has_num_cores():
    target = targets.host_target()
    assert target["kind"] == "llvm" and target["num-cores"] >= 1 and "mcpu" in target


def test_bops_of_a_quantized_relax_module_matches_the_torch_count(tiny):
    model, _, mod, params, recipe, _ = tiny
    qmod = tvm_qnn.quantize(mod, params, recipe)
    relax_table = tvm_qnn.bops(qmod)
    torch_table = tvm_qnn.bops(model, (1, 28, 28), recipe)
    assert [(r.kind, r.shape, r.b_w, r.b_a, r.macs) for r in relax_table] == \
        [(r.kind, r.shape, r.b_w, r.b_a, r.macs) for r in torch_table]
    assert relax_table.total == pytest.approx(torch_table.total)


# --------------------------------------------------------------------------- ResNet-18 (slow)
@pytest.fixture(scope="module")
def resnet18_imported():
    from tvm_qnn.models import resnet18

    torch.manual_seed(7)
    model = randomize_batchnorm(resnet18())
    x = torch.rand(1, 3, 224, 224)
    mod, params = tvm_qnn.from_torch(model, x)
    return model, x, mod, params


@pytest.mark.slow
@pytest.mark.parametrize("scheme,bits", [("kquantile", 2), ("uniform", 3)])
def test_resnet18_matches_torch_and_each_layer_matches_the_reference(resnet18_imported, scheme, bits):
    import tvm

    from relay_passes.composite import qnn_composites, read_qnn_layer
    from tvm_qnn import reference

    model, x, mod, params = resnet18_imported
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(2, 3, 224, 224), w_bits=bits, a_bits=bits, w_scheme=scheme,
                               progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    got = tvm_qnn.compile(qmod, target="cpu-reference").run(x)
    assert relative_error(got, apply_recipe(model, recipe)(x).numpy()) <= 1e-4
    rng = np.random.default_rng(0)
    composites = qnn_composites(qmod)
    assert len(composites) == 19
    for gvar, func in list(composites.items())[::4]:  # every 4th layer: all shapes/strides kinds, bounded time
        layer = read_qnn_layer(func)
        layer_in = rng.uniform(0, layer.a_clamp * 1.2, layer.input_shape).astype(np.float32)
        single = tvm.IRModule({"main": func.without_attr("Composite").without_attr("Primitive")
                               .with_attr("global_symbol", "main").with_attr("num_input", 1)})
        out = tvm_qnn.compile(single, target="cpu-reference").run(layer_in)
        codes = reference.act_codes(layer_in, layer.a_clamp, layer.a_bits)
        ref = reference.qconv2d(codes, layer.s_a, layer.weight_idx, layer.lut, layer.bias, layer.stride,
                                layer.padding, layer.groups, layer.dilation)
        ref = np.clip(ref, layer.out_min, layer.out_max)
        assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max(), gvar.name_hint


@pytest.mark.slow
def test_resnet18_onnx_import_matches_torch(resnet18_imported):
    import io

    import onnx

    model, x, mod, params = resnet18_imported
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(2, 3, 224, 224), progress=False)
    buffer = io.BytesIO()
    from tvm_qnn.train.fold_bn import fold_batchnorm

    torch.onnx.export(fold_batchnorm(model), (x,), buffer, dynamo=False, input_names=["x"])
    onnx_mod, onnx_params = tvm_qnn.from_onnx(onnx.load_from_string(buffer.getvalue()))
    got = tvm_qnn.compile(onnx_mod, recipe=recipe, params=onnx_params).run(x)
    assert relative_error(got, apply_recipe(model, recipe)(x).numpy()) <= 1e-4

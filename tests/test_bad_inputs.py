"""Bad arguments at the public boundary: one clear QnnError naming the fault, never a traceback
from inside TVM/torch and never a silent wrong answer (NaN/inf inputs, a recipe of another model).
"""

import json
import re

import numpy as np
import pytest
import torch

import tvm_qnn
from tvm_qnn.errors import (ArgumentError, HwConfigError, QnnError, QuantizationError, RecipeError,
                            RemoteError, TuningError)
from tvm_qnn.models import tiny_cnn
from vta_ext import HwConfig


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    mod, params = tvm_qnn.from_torch(model, torch.rand(1, 1, 28, 28))
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(4, 1, 28, 28), progress=False)
    compiled = tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)
    return model, mod, params, recipe, compiled


def poisoned(nans, infs, seed=0):
    x = np.random.default_rng(seed).random((1, 1, 28, 28)).astype(np.float32)
    flat = x.reshape(-1)
    flat[:nans] = np.nan
    flat[nans:nans + infs] = np.inf
    flat[nans + infs:nans + 2 * infs] = -np.inf
    return x


# --------------------------------------------------------------------------- non-finite values
def test_run_refuses_nan_and_inf_naming_the_input_and_counts(tiny):
    compiled = tiny[-1]
    with pytest.raises(QuantizationError, match=r"input 'x' holds 3 NaN and 4 inf value\(s\) of 784"):
        compiled.run(poisoned(3, 2))
    with pytest.raises(QuantizationError, match=r"input 'x' holds 0 NaN and 2 inf"):
        compiled.run(torch.from_numpy(poisoned(0, 1)))  # torch tensors are checked too
    with pytest.raises(QuantizationError, match=r"input 'x' holds 1 NaN"):
        compiled.benchmark(repeat=1, inputs=poisoned(1, 0))


def test_run_with_check_finite_off_runs_and_finite_inputs_are_unchanged(tiny):
    compiled = tiny[-1]
    out = compiled.run(poisoned(2, 1), check_finite=False)  # documented escape hatch
    assert out.shape == (1, 10)
    x = poisoned(0, 0)
    np.testing.assert_array_equal(compiled.run(x), compiled.run(x, check_finite=False))


def test_remote_run_refuses_nan_before_any_network(tiny, tmp_path):
    from tvm_qnn.rpc import remote

    export = tiny[-1].export(tmp_path / "exp")
    # an address nobody listens on: the input check must come first, so no RemoteError
    with pytest.raises(QuantizationError, match=r"remote: input 0 holds 5 NaN and 0 inf"):
        remote(export, "127.0.0.1:9", "cpu", inputs=poisoned(5, 0), timeout_s=5)
    with pytest.raises(RemoteError):  # with the check off it goes on to the (absent) tracker
        remote(export, "127.0.0.1:9", "cpu", inputs=poisoned(5, 0), timeout_s=5,
                           check_finite=False)


def test_calibrate_refuses_non_finite_data_naming_the_batch(tiny):
    _, mod, params, _, _ = tiny
    good = np.random.default_rng(1).random((4, 1, 28, 28)).astype(np.float32)
    bad = good.copy()
    bad[0, 0, 3, 3] = np.nan
    bad[1, 0, 4, 4] = -np.inf
    with pytest.raises(QuantizationError, match=r"calibrate: batch 1 holds 1 NaN and 1 inf"):
        tvm_qnn.calibrate(mod, params, [good, bad], progress=False)


def test_calibrate_clamps_refuses_non_finite_data():
    from tvm_qnn.train import QuantConfig, calibrate_clamps, prepare_qat

    qat = prepare_qat(tiny_cnn(), QuantConfig(2, 2, "kquantile"))
    x = torch.rand(2, 1, 28, 28)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantizationError, match=r"calibrate_clamps: batch 0 holds 1 NaN"):
        calibrate_clamps(qat, [(x, torch.zeros(2))])


@pytest.mark.parametrize("clamp", [float("nan"), float("inf"), 0.0, -1.0, "big"])
def test_recipe_clamp_must_be_a_finite_positive_number(tiny, clamp):
    recipe = tiny[3].to_json()
    name = sorted(recipe["layers"])[0]
    recipe["layers"][name]["a_clamp"] = clamp
    with pytest.raises(RecipeError, match=rf"layer '{name}'.*a_clamp"):
        tvm_qnn.load_recipe(recipe)


# --------------------------------------------------------------------------- argument types
def test_quantize_with_recipe_none_names_the_argument(tiny):
    _, mod, params, _, _ = tiny
    with pytest.raises(RecipeError, match=r"quantize: recipe is None"):
        tvm_qnn.quantize(mod, params, None)
    with pytest.raises(RecipeError, match=r"expected a Recipe, a dict or a JSON file path, got int"):
        tvm_qnn.quantize(mod, params, 3)


def test_compile_of_none_or_a_torch_module_names_the_argument(tiny):
    with pytest.raises(ArgumentError, match=r"compile: expected a Relax IRModule.*got None"):
        tvm_qnn.compile(None)
    with pytest.raises(ArgumentError, match=r"compile: expected a Relax IRModule.*got TinyCNN"):
        tvm_qnn.compile(tiny[0])
    with pytest.raises(ArgumentError, match=r"compile: params must be a dict.*list"):
        tvm_qnn.compile(tiny[1], params=[1, 2])


def test_from_torch_of_a_path_says_to_load_it(tmp_path):
    with pytest.raises(ArgumentError, match=r"from_torch: model must be a torch.nn.Module, got str 'm.pt'.*torch.load"):
        tvm_qnn.from_torch("m.pt", torch.rand(1, 1, 28, 28))


def test_from_onnx_on_an_empty_file_says_empty(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(QnnError, match=r"m.onnx' is empty \(0 bytes\)"):
        tvm_qnn.from_onnx(tmp_path / "m.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00" * 16)
    with pytest.raises(QnnError, match=r"junk.onnx"):
        tvm_qnn.from_onnx(tmp_path / "junk.onnx")
    with pytest.raises(ArgumentError, match=r"from_onnx: expected an ONNX file path.*got int"):
        tvm_qnn.from_onnx(7)


def test_hw_config_unknown_field_lists_the_known_ones():
    with pytest.raises(HwConfigError, match=r"unknown field\(s\) \['foo'\]; known fields: \[.*'block_in'"):
        HwConfig(foo=1)
    with pytest.raises(HwConfigError, match=r"replace: unknown field\(s\) \['foo'\]; known fields: \[.*'batch'"):
        HwConfig.preset("pynq_z1").replace(foo=1)
    assert HwConfig.preset("pynq_z1").replace(clock_mhz=50).clock_mhz == 50.0


@pytest.mark.parametrize("kwargs, fault", [({"repeat": 0}, "repeat=0"), ({"number": -1}, "number=-1"),
                                           ({"repeat": 2.5}, "repeat=2.5")])
def test_benchmark_ranges(tiny, kwargs, fault):
    with pytest.raises(ArgumentError, match=rf"benchmark: {fault}; expected an integer >= 1"):
        tiny[-1].benchmark(**kwargs)


def test_calibrate_max_batches_zero(tiny):
    _, mod, params, _, _ = tiny
    with pytest.raises(ArgumentError, match=r"calibrate: max_batches=0"):
        tvm_qnn.calibrate(mod, params, torch.rand(4, 1, 28, 28), max_batches=0, progress=False)


def test_tune_work_dir_naming_a_file(tiny, tmp_path):
    _, mod, params, recipe, _ = tiny
    (tmp_path / "db").write_text("not a directory")
    qmod = tvm_qnn.quantize(mod, params, recipe)
    with pytest.raises(TuningError, match=r"work_dir '.*db' is a file"):
        tvm_qnn.tune(qmod, "cpu", trials=1, work_dir=tmp_path / "db")
    assert (tmp_path / "db").read_text() == "not a directory"


# --------------------------------------------------------------------------- recipes of another model
def test_recipe_records_weight_shapes_and_refuses_another_model(tiny):
    _, _, params, recipe, _ = tiny
    data = recipe.to_json()
    for name, layer in data["layers"].items():
        assert layer["weight_shape"] == list(params[name].shape)
    other = {k: v for k, v in data.items()}
    name = sorted(other["layers"])[0]
    other["layers"] = json.loads(json.dumps(data["layers"]))
    other["layers"][name]["weight_shape"] = [7] + other["layers"][name]["weight_shape"][1:]
    _, mod, params, _, _ = tiny
    with pytest.raises(RecipeError, match=rf"layer '{name}': the recipe was made for a weight of shape \[7, "):
        tvm_qnn.quantize(mod, params, other)


def test_old_recipe_without_weight_shapes_still_loads_and_quantizes(tiny):
    _, mod, params, recipe, compiled = tiny
    data = recipe.to_json()
    for layer in data["layers"].values():
        del layer["weight_shape"]
    old = tvm_qnn.load_recipe(data)
    assert all(layer.weight_shape is None for layer in old.layers.values())
    again = tvm_qnn.compile(mod, target="cpu-reference", recipe=old, params=params)
    x = np.random.default_rng(2).random((1, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(again.run(x), compiled.run(x))


@pytest.mark.parametrize("shape", [[], [3, 0], "3x3", [2.5]])
def test_malformed_weight_shape_is_a_recipe_error(tiny, shape):
    data = tiny[3].to_json()
    name = sorted(data["layers"])[0]
    data["layers"][name]["weight_shape"] = shape
    with pytest.raises(RecipeError, match=rf"layer '{name}': weight_shape="):
        tvm_qnn.load_recipe(data)


def test_recipe_of_a_narrower_model_with_the_same_layer_names_is_refused(tiny):
    recipe = tiny[3]
    mod, params = tvm_qnn.from_torch(tiny_cnn(width=8).eval(), torch.rand(1, 1, 28, 28))
    first = next(iter(recipe.layers))
    want = re.escape(f"layer '{first}': the recipe was made for a weight of shape {list(recipe[first].weight_shape)}; "
                     f"this model's weight has shape {list(params[first].shape)}")
    with pytest.raises(RecipeError, match=want):
        tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)

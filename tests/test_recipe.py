"""The tvm-qnn-recipe/2 format (reads /1): round trip, validation messages naming layer and field, atomic save."""

import json
import os

import numpy as np
import pytest

from tvm_qnn import recipe as rec
from tvm_qnn import reference as R
from tvm_qnn.errors import RecipeError


def _recipe():
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3))
    layer = rec.LayerQuant.from_weight("conv2.weight", w, w_bits=2, a_bits=3, a_clamp=2.5, w_scheme="kquantile",
                                       per_channel=True)
    return rec.Recipe({"conv2.weight": layer}, ("conv1.weight", "fc.weight"), "toy"), w


def test_round_trip_and_indices(tmp_path):
    recipe, w = _recipe()
    path = rec.save(recipe, tmp_path / "r.json")
    loaded = rec.load(path)
    assert loaded.to_json() == recipe.to_json()
    layer = loaded["conv2.weight"]
    idx, lut = R.kquantile_lut(w, 2, per_channel=True)
    assert np.array_equal(layer.indices(w), idx)
    np.testing.assert_array_equal(layer.lut, lut)
    assert layer.s_a == np.float32(2.5) / np.float32(7)
    assert rec.load(recipe.to_json()).to_json() == recipe.to_json()


def test_kernel_pin_round_trips_and_is_optional():
    data = _recipe()[0].to_json()
    assert "kernel" not in data["layers"]["conv2.weight"]
    data["layers"]["conv2.weight"]["kernel"] = "vnni"
    loaded = rec.load(data)
    assert loaded["conv2.weight"].kernel == "vnni"
    assert loaded.to_json()["layers"]["conv2.weight"]["kernel"] == "vnni"


def test_bias_correction_round_trips_and_is_optional():
    data = _recipe()[0].to_json()
    assert "bias_correction" not in data["layers"]["conv2.weight"]
    assert rec.load(data)["conv2.weight"].bias_correction is None
    data["layers"]["conv2.weight"]["bias_correction"] = [0.5, -0.25, 0.0, 1e-3]
    loaded = rec.load(data)
    np.testing.assert_array_equal(loaded["conv2.weight"].bias_correction, [0.5, -0.25, 0.0, 1e-3])
    assert loaded.to_json()["layers"]["conv2.weight"]["bias_correction"] == [0.5, -0.25, 0.0, 1e-3]


def test_default_thresholds_are_lut_midpoints():
    layer = rec.LayerQuant("fc.weight", 1, "uniform", [[-1.0, 1.0]], 2, 1.0)
    assert layer.thresholds.tolist() == [[0.0]]
    assert layer.indices(np.array([[-0.5, 0.0, 0.5]])).tolist() == [[0, 1, 1]]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format="tvm-qnn-recipe/3"), "format"),
        (lambda d: d["layers"]["conv2.weight"].update(a_zero_point=8), "conv2.weight.*a_zero_point=8.*0..7"),
        (lambda d: d["layers"]["conv2.weight"].update(a_zero_point=-1), "conv2.weight.*a_zero_point"),
        (lambda d: d["layers"]["conv2.weight"].update(a_zero_point=2.5), "conv2.weight.*a_zero_point"),
        (lambda d: d["layers"]["conv2.weight"].update(a_zero_point="3"), "conv2.weight.*a_zero_point"),
        (lambda d: d.update(format="tvm-qnn-recipe/1"), "conv2.weight.*a_zero_point"),  # /1 has no zero point
        (lambda d: d["layers"]["conv2.weight"].update(w_bits=9), "conv2.weight.*w_bits"),
        (lambda d: d["layers"]["conv2.weight"].update(a_bits=0), "conv2.weight.*a_bits"),
        (lambda d: d["layers"]["conv2.weight"].update(a_clamp=-1.0), "conv2.weight.*a_clamp"),
        (lambda d: d["layers"]["conv2.weight"].update(w_scheme="log2"), "conv2.weight.*w_scheme"),
        (lambda d: d["layers"]["conv2.weight"].pop("lut"), "conv2.weight.*lut"),
        (lambda d: d["layers"]["conv2.weight"].update(lut=[[0.0, 1.0, 2.0]]), "conv2.weight.*lut"),
        (lambda d: d["layers"]["conv2.weight"].update(lut=[[0.0, float("nan"), 1, 2]]), "conv2.weight.*NaN"),
        (lambda d: d["layers"]["conv2.weight"].update(color="red"), "conv2.weight.*color"),
        (lambda d: d["layers"]["conv2.weight"].update(kernel="avx2"), r"conv2.weight.*kernel='avx2'.*popcount"),
        (lambda d: d.update(fp32_layers=["conv2.weight"]), "conv2.weight"),
        (lambda d: d["layers"]["conv2.weight"].update(bias_correction=[0.1] * 3),
         "conv2.weight.*bias_correction has 3 entries.*4 output channels"),
        (lambda d: d["layers"]["conv2.weight"].update(bias_correction=[0.0, float("inf"), 0, 0]),
         "conv2.weight.*bias_correction.*NaN/inf"),
        (lambda d: d["layers"]["conv2.weight"].update(bias_correction=[[0.0] * 4] * 2),
         "conv2.weight.*bias_correction must be one list"),
    ],
)
def test_validation_names_layer_and_field(mutate, message):
    data = _recipe()[0].to_json()
    mutate(data)
    with pytest.raises(RecipeError, match=message):
        rec.load(data)


def test_zero_point_round_trip_and_version_1_reads_as_unsigned(tmp_path):
    recipe, w = _recipe()
    layer = recipe["conv2.weight"]
    signed = rec.LayerQuant(layer.name, 2, "kquantile", layer.lut, 3, 2.5, layer.thresholds, a_zero_point=4)
    recipe = recipe.replace(layers={layer.name: signed})
    data = recipe.to_json()
    assert data["format"] == "tvm-qnn-recipe/2" and data["layers"]["conv2.weight"]["a_zero_point"] == 4
    loaded = rec.load(rec.save(recipe, tmp_path / "r.json"))
    assert loaded["conv2.weight"].a_zero_point == 4 and loaded["conv2.weight"].signed
    old = recipe.to_json()
    old["format"] = "tvm-qnn-recipe/1"
    del old["layers"]["conv2.weight"]["a_zero_point"]
    assert rec.load(old)["conv2.weight"].a_zero_point == 0


def test_coverage_lists_missing_and_extra():
    recipe, _ = _recipe()
    recipe.check_covers({"conv1.weight", "conv2.weight", "fc.weight"})
    with pytest.raises(RecipeError, match=r"absent.*conv2.weight"):
        recipe.check_covers({"conv1.weight", "fc.weight"})
    with pytest.raises(RecipeError, match=r"does not cover.*layer3.weight"):
        recipe.check_covers({"conv1.weight", "conv2.weight", "fc.weight", "layer3.weight"})


def test_per_channel_lut_must_match_weight():
    recipe, w = _recipe()
    with pytest.raises(RecipeError, match="conv2.weight.*output channels"):
        recipe["conv2.weight"].indices(w[:2])


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        rec.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RecipeError, match="not valid JSON"):
        rec.load(bad)


def test_save_is_atomic(tmp_path, monkeypatch):
    recipe, _ = _recipe()
    target = tmp_path / "r.json"
    rec.save(recipe, target)
    before = target.read_text()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    # a failure while writing leaves the old file whole and no temp files behind
    monkeypatch.setattr(os, "replace", broken_dump)
    with pytest.raises(OSError):
        rec.save(recipe.replace(model="other"), target)
    assert target.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert json.loads(before)["format"] == rec.FORMAT


def test_public_functions_survive_submodule_imports():
    import importlib

    import tvm_qnn

    for name in ("quantize", "calibrate", "bops"):
        importlib.import_module(f"tvm_qnn.{name}")  # binds the package attribute to the module in plain Python
        assert callable(getattr(tvm_qnn, name)) and getattr(tvm_qnn, name).__name__ == name

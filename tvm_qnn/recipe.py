"""The ``tvm-qnn-recipe/2`` JSON format: per-layer quantization of a model.

```json
{"format": "tvm-qnn-recipe/2",
 "model": "fmnist_resnet",
 "layers": {"layer1.0.conv1.weight": {
     "w_bits": 2, "w_scheme": "kquantile",
     "lut": [[-1.2, -0.4, 0.4, 1.2]],          # 1 row (shared) or one row per output channel
     "thresholds": [[-0.8, 0.0, 0.8]],          # optional bin edges; default: LUT midpoints
     "a_bits": 2, "a_clamp": 3.1, "a_zero_point": 0,
     "weight_shape": [16, 8, 3, 3],             # optional: the weight the recipe was made for
     "kernel": "vnni",                          # optional: pin the CPU kernel (popcount | vnni | fp32)
     "bias_correction": [0.01, ...]}},          # optional: added to the layer's bias, per output channel
 "fp32_layers": ["conv1.weight", "fc.weight"]}
```

Layers are keyed by the weight parameter's name in the imported module. ``lut`` holds
``2^w_bits`` levels per row; ``thresholds`` the ``2^w_bits - 1`` increasing bin edges that map a
float weight to its index (``idx = #{t <= w}``, see ``reference.assign_indices``). The
activation fields describe the layer's *input*: its codes are
``act_codes(x, a_clamp, a_bits, a_zero_point)``, i.e. ``q = clip(floor(x / s_a + 0.5) + z, 0,
2^b - 1)`` standing for ``s_a (q - z)`` with ``s_a = a_clamp / (2^a_bits - 1)`` (``a_clamp`` is
the width of the representable range); ``a_zero_point`` is an integer in ``0 .. 2^a_bits - 1``
(0: unsigned, today's clamp; ``2^(a_bits-1)``: symmetric signed; other: asymmetric).
``tvm-qnn-recipe/1`` files (no zero point) are read with ``a_zero_point = 0``; ``to_json`` writes
``/2``. ``weight_shape`` (optional, absent in older recipes) lets ``quantize`` refuse a recipe made
for another model (RecipeError naming the first layer whose weight shape differs).
``bias_correction`` (optional, one float per output channel; ``calibrate(bias_correction=True)``
writes it) is added to the layer's float bias by ``quantize`` (so every target and the integer
bias see it) and by the torch twin ``apply_recipe``: it cancels the mean output shift the weight
rounding causes on the calibration data.
Validation errors name the layer and field; ``save`` writes atomically.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from . import reference
from .errors import QnnError, RecipeError

FORMAT = "tvm-qnn-recipe/2"
READS = ("tvm-qnn-recipe/1", FORMAT)  # /1 has no a_zero_point (0)
W_SCHEMES = ("kquantile", "uniform")
KERNELS = ("popcount", "vnni", "fp32")  # optional per-layer pin of the CPU kernel choice


@dataclass(frozen=True)
class LayerQuant:
    """Quantization of one layer (validated on construction)."""

    name: str
    w_bits: int
    w_scheme: str
    lut: np.ndarray  # float32 (rows, 2^w_bits)
    a_bits: int
    a_clamp: float
    thresholds: np.ndarray = None  # float64 (rows, 2^w_bits - 1)
    a_zero_point: int = 0
    weight_shape: tuple = None  # shape of the weight the recipe was made for (None: not recorded)
    kernel: str | None = None  # pins the CPU kernel: one of KERNELS, None = chosen by the cost model
    bias_correction: np.ndarray = None  # float64 (out_channels,) added to the bias; None = none

    def __post_init__(self):
        where = f"layer {self.name!r}"
        if self.kernel is not None and self.kernel not in KERNELS:
            raise RecipeError(f"{where}: kernel={self.kernel!r}; expected one of {list(KERNELS)} (or no field)")
        try:
            reference.check_bits(self.w_bits, "w_bits", self.name)
            reference.check_bits(self.a_bits, "a_bits", self.name)
            reference.check_clamp(self.a_clamp, "a_clamp", self.name)
            reference.check_zero_point(self.a_zero_point, self.a_bits, "a_zero_point", self.name)
        except QnnError as err:
            raise RecipeError(str(err)) from None
        if self.w_scheme not in W_SCHEMES:
            raise RecipeError(f"{where}: w_scheme={self.w_scheme!r}; expected one of {list(W_SCHEMES)}")
        levels = 1 << self.w_bits
        lut = _float_rows(self.lut, where, "lut", np.float32)
        if lut.shape[1] != levels:
            raise RecipeError(f"{where}: lut rows have {lut.shape[1]} entries; w_bits={self.w_bits} needs {levels}")
        if self.thresholds is None:
            wide = lut.astype(np.float64)
            thresholds = (wide[:, 1:] + wide[:, :-1]) / 2.0
        else:
            thresholds = _float_rows(self.thresholds, where, "thresholds", np.float64)
        if thresholds.shape != (lut.shape[0], levels - 1):
            raise RecipeError(
                f"{where}: thresholds have shape {thresholds.shape}; expected {(lut.shape[0], levels - 1)}"
            )
        if levels > 2 and np.any(np.diff(thresholds, axis=1) < 0):
            raise RecipeError(f"{where}: thresholds must be increasing along each row")
        if self.weight_shape is not None:
            shape = self.weight_shape
            if not isinstance(shape, (list, tuple)) or not shape or not all(
                    isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
                raise RecipeError(f"{where}: weight_shape={shape!r}; expected a list of positive integers")
            object.__setattr__(self, "weight_shape", tuple(int(d) for d in shape))
        if self.bias_correction is not None:
            correction = _float_rows(self.bias_correction, where, "bias_correction", np.float64)
            if correction.shape[0] != 1:
                raise RecipeError(f"{where}: bias_correction must be one list of numbers (one per output channel)")
            correction = correction[0]
            channels = self.weight_shape[0] if self.weight_shape is not None else (
                lut.shape[0] if lut.shape[0] > 1 else None)
            if channels is not None and correction.shape[0] != channels:
                raise RecipeError(f"{where}: bias_correction has {correction.shape[0]} entries; the layer has "
                                  f"{channels} output channels")
            object.__setattr__(self, "bias_correction", correction)
        object.__setattr__(self, "lut", lut)
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "w_bits", int(self.w_bits))
        object.__setattr__(self, "a_bits", int(self.a_bits))
        object.__setattr__(self, "a_clamp", float(self.a_clamp))
        object.__setattr__(self, "a_zero_point", int(self.a_zero_point))

    @property
    def s_a(self):
        """Activation scale ``a_clamp / (2^a_bits - 1)`` (float32)."""
        return reference.act_scale(self.a_clamp, self.a_bits)

    @property
    def signed(self):
        """True when the input's codes have a zero point (negative inputs are representable)."""
        return self.a_zero_point != 0

    @property
    def per_channel(self):
        return self.lut.shape[0] > 1

    def indices(self, weight):
        """uint8 indices of a float weight (axis 0 = output channels)."""
        weight = reference.check_finite(weight, "weight", self.name)
        if self.per_channel and self.lut.shape[0] != np.shape(weight)[0]:
            raise RecipeError(
                f"layer {self.name!r}: lut has {self.lut.shape[0]} rows but the weight has "
                f"{np.shape(weight)[0]} output channels"
            )
        return reference.assign_indices(weight, self.thresholds)

    def to_json(self):
        data = {
            "w_bits": self.w_bits,
            "w_scheme": self.w_scheme,
            "lut": self.lut.astype(np.float64).tolist(),
            "thresholds": self.thresholds.tolist(),
            "a_bits": self.a_bits,
            "a_clamp": self.a_clamp,
            "a_zero_point": self.a_zero_point,
        }
        if self.weight_shape is not None:
            data["weight_shape"] = list(self.weight_shape)
        if self.kernel is not None:
            data["kernel"] = self.kernel
        if self.bias_correction is not None:
            data["bias_correction"] = self.bias_correction.tolist()
        return data

    def check_weight_shape(self, shape):
        """RecipeError if the recipe recorded a weight shape other than ``shape``."""
        if self.weight_shape is not None and tuple(int(d) for d in shape) != self.weight_shape:
            raise RecipeError(f"layer {self.name!r}: the recipe was made for a weight of shape "
                              f"{list(self.weight_shape)}; this model's weight has shape "
                              f"{[int(d) for d in shape]} (a recipe of another model?)")

    @classmethod
    def from_weight(cls, name, weight, w_bits, a_bits, a_clamp, w_scheme="kquantile", per_channel=False,
                    a_zero_point=0):
        """Derive the LUT and bin edges from a float weight with the reference quantizers."""
        try:
            if w_scheme == "kquantile":
                lut, thresholds = reference.kquantile_params(weight, w_bits, per_channel)
            elif w_scheme == "uniform":
                lut, thresholds = reference.uniform_params(weight, w_bits, None, per_channel)
            else:
                raise RecipeError(f"layer {name!r}: w_scheme={w_scheme!r}; expected one of {list(W_SCHEMES)}")
        except RecipeError:
            raise
        except QnnError as err:
            raise type(err)(f"layer {name!r}: {err}") from None
        return cls(name, w_bits, w_scheme, lut, a_bits, a_clamp, thresholds, a_zero_point,
                   weight_shape=tuple(np.shape(weight)))


def _float_rows(value, where, field_name, dtype):
    try:
        array = np.atleast_2d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise RecipeError(f"{where}: {field_name} is not a list of numbers") from None
    if array.ndim != 2 or array.size == 0:
        raise RecipeError(f"{where}: {field_name} must be a non-empty list of rows")
    if not np.all(np.isfinite(array)):
        raise RecipeError(f"{where}: {field_name} has NaN/inf entries")
    return array.astype(dtype)


@dataclass(frozen=True)
class Recipe:
    """A whole model's quantization: ``layers`` by weight name, plus layers kept in fp32."""

    layers: dict = field(default_factory=dict)  # name -> LayerQuant
    fp32_layers: tuple = ()
    model: str = ""

    def __post_init__(self):
        object.__setattr__(self, "fp32_layers", tuple(self.fp32_layers))
        both = sorted(set(self.layers) & set(self.fp32_layers))
        if both:
            raise RecipeError(f"layers {both} are listed both as quantized and in fp32_layers")
        for name, layer in self.layers.items():
            if not isinstance(layer, LayerQuant) or layer.name != name:
                raise RecipeError(f"layer {name!r}: entry is not a LayerQuant named {name!r}")

    def __getitem__(self, name):
        return self.layers[name]

    def __contains__(self, name):
        return name in self.layers

    def to_json(self):
        return {
            "format": FORMAT,
            "model": self.model,
            "layers": {name: layer.to_json() for name, layer in self.layers.items()},
            "fp32_layers": list(self.fp32_layers),
        }

    @classmethod
    def from_json(cls, data):
        if not isinstance(data, dict):
            raise RecipeError(f"recipe must be a JSON object, got {type(data).__name__}")
        version = data.get("format")
        if version not in READS:
            raise RecipeError(f"recipe field 'format' is {version!r}; this version of tvm-qnn reads "
                              f"{' or '.join(map(repr, READS))}")
        unknown = sorted(set(data) - {"format", "model", "layers", "fp32_layers"})
        if unknown:
            raise RecipeError(f"recipe has unknown top-level field(s) {unknown}")
        layers_in = data.get("layers")
        if not isinstance(layers_in, dict):
            raise RecipeError("recipe field 'layers' must be an object keyed by weight name")
        layers = {}
        required = ("w_bits", "w_scheme", "lut", "a_bits", "a_clamp")
        for name, entry in layers_in.items():
            if not isinstance(entry, dict):
                raise RecipeError(f"layer {name!r}: entry must be an object")
            missing = [key for key in required if key not in entry]
            if missing:
                raise RecipeError(f"layer {name!r}: missing field(s) {missing}")
            optional = {"thresholds", "weight_shape", "kernel", "bias_correction"} | ({"a_zero_point"} if version == FORMAT else set())
            extra = sorted(set(entry) - set(required) - optional)
            if extra:
                raise RecipeError(f"layer {name!r}: unknown field(s) {extra}"
                                  + (f" for {version!r}" if "a_zero_point" in extra else ""))
            layers[name] = LayerQuant(
                name, entry["w_bits"], entry["w_scheme"], entry["lut"], entry["a_bits"],
                entry["a_clamp"], entry.get("thresholds"), entry.get("a_zero_point", 0),
                weight_shape=entry.get("weight_shape"), kernel=entry.get("kernel"),
                bias_correction=entry.get("bias_correction"),
            )
        fp32 = data.get("fp32_layers", [])
        if not isinstance(fp32, list) or not all(isinstance(n, str) for n in fp32):
            raise RecipeError("recipe field 'fp32_layers' must be a list of weight names")
        return cls(layers, tuple(fp32), str(data.get("model", "")))

    def check_covers(self, quantizable, where="model"):
        """Raise RecipeError unless the recipe names exactly the ``quantizable`` layers.

        ``quantizable`` is every conv/dense weight name found in the model; each must be either
        quantized or in ``fp32_layers``, and the recipe may name nothing else.
        """
        quantizable = set(quantizable)
        named = set(self.layers) | set(self.fp32_layers)
        extra = sorted(named - quantizable)
        missing = sorted(quantizable - named)
        if extra or missing:
            parts = []
            if extra:
                parts.append(f"names layer(s) absent from the {where}: {extra}")
            if missing:
                parts.append(f"does not cover layer(s) {missing} (quantize them or list them in fp32_layers)")
            raise RecipeError("recipe " + "; ".join(parts))

    def replace(self, **changes):
        data = {"layers": dict(self.layers), "fp32_layers": self.fp32_layers, "model": self.model}
        data.update(changes)
        return Recipe(**data)


def load(path_or_dict):
    """Load and validate a recipe from a path, a JSON string or a dict."""
    if isinstance(path_or_dict, Recipe):
        return path_or_dict
    if isinstance(path_or_dict, dict):
        return Recipe.from_json(copy.deepcopy(path_or_dict))
    if not isinstance(path_or_dict, (str, bytes, os.PathLike)):
        got = "None" if path_or_dict is None else type(path_or_dict).__name__
        raise RecipeError(f"recipe: expected a Recipe, a dict or a JSON file path, got {got}")
    path = os.fspath(path_or_dict)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path!r} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise RecipeError(f"recipe file {path!r} cannot be read: {err}") from None
    except json.JSONDecodeError as err:
        raise RecipeError(f"recipe file {path!r} is not valid JSON: {err}") from None
    return Recipe.from_json(data)


def save(recipe, path):
    """Write ``recipe`` as JSON atomically (temp file + rename: never half a file)."""
    data = recipe.to_json() if isinstance(recipe, Recipe) else Recipe.from_json(recipe).to_json()
    text = json.dumps(data, indent=1, allow_nan=False)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".recipe-", suffix=".json", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


"""BOPs (UNIQ's bit-operation count) per layer of a model, recipe or quantized Relax module.

For a layer with ``n`` input channels per group, ``m`` output channels, a ``kh x kw`` kernel and
``P`` output positions (``H_out * W_out``; 1 for dense), per input image::

    MACs = P * m * n * kh * kw
    BOPs = MACs * (b_a * b_w + b_a + b_w + log2(n * kh * kw))     (reference.layer_bops)

Layers the recipe does not quantize count as fp32 (``b_a = b_w = 32``). The last term is the
accumulator width: UNIQ counts it, FINN's BOPs count omits it (``b_a * b_w`` per MAC only), so
FINN-style figures are lower by ``MACs * (b_a + b_w + log2(n k^2))``.

``bops(obj, input_shape=None, recipe=None)`` accepts
* a torch ``nn.Module`` (+ ``input_shape`` (C, H, W) or (N, C, H, W), + ``recipe``): shapes
  come from forward hooks on every Conv2d / Linear;
* a ``Recipe`` alone whose ``model`` field names a zoo model (``tvm_qnn.models``): shapes come
  from that model at its standard input size;
* a list of layer-shape dicts (keys name, kind, in_channels, out_channels, kernel, groups,
  out_positions, and optionally b_w, b_a);
* a Relax ``IRModule`` (shapes from ``tvm_qnn.bops_relax.relax_layer_shapes``, imported lazily).
"""

from __future__ import annotations


from dataclasses import asdict, dataclass

from . import reference
from .errors import ShapeError, UnsupportedOpError

FP32_BITS = 32


@dataclass(frozen=True)
class BopsRow:
    """One layer: weight ``shape`` (O, I/groups, kh, kw) or (O, I); counts are per input image."""

    name: str
    kind: str
    shape: tuple
    out_positions: int
    b_w: int
    b_a: int
    macs: int
    bops: float
    note: str = ""  # why a layer stays fp32 when tvm-qnn cannot quantize its op (Conv1d, ConvTranspose2d)


class BopsTable:
    """Per-layer BOPs rows with totals; iterable, ``len``, ``to_markdown()``, ``to_json()``."""

    def __init__(self, rows):
        self.rows = list(rows)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, name):
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no layer {name!r} in the BOPs table; layers: {[r.name for r in self.rows]}")

    @property
    def total(self):
        return float(sum(row.bops for row in self.rows))

    @property
    def total_macs(self):
        return int(sum(row.macs for row in self.rows))

    def to_json(self):
        return {"layers": [asdict(row) for row in self.rows], "total_bops": self.total, "total_macs": self.total_macs}

    def to_markdown(self):
        lines = ["| layer | kind | weight shape | positions | b_w | b_a | MACs | GBOPs |",
                 "|---|---|---|---:|---:|---:|---:|---:|"]
        for row in self.rows:
            shape = "x".join(str(d) for d in row.shape)
            kind = f"{row.kind} ({row.note})" if row.note else row.kind
            lines.append(f"| {row.name} | {kind} | {shape} | {row.out_positions} | {row.b_w} | {row.b_a} | "
                         f"{row.macs:,} | {row.bops / 1e9:.4f} |")
        lines.append(f"| **total** | | | | | | {self.total_macs:,} | {self.total / 1e9:.4f} |")
        return "\n".join(lines)

    def __repr__(self):
        return f"BopsTable({len(self.rows)} layers, total={self.total / 1e9:.4f} GBOPs)"


def _bits(name, shape_dict, recipe):
    if recipe is not None and name in recipe:
        layer = recipe[name]
        return layer.w_bits, layer.a_bits
    b_w, b_a = shape_dict.get("b_w"), shape_dict.get("b_a")
    if b_w is None or b_a is None:
        return FP32_BITS, FP32_BITS
    return int(b_w), int(b_a)


def table_from_shapes(layer_shapes, recipe=None):
    """BopsTable of layer-shape dicts (see the module doc); recipe bits override the dicts'."""
    rows = []
    for entry in layer_shapes:
        try:
            name, kind = entry["name"], entry["kind"]
            n_in, m = int(entry["in_channels"]), int(entry["out_channels"])
            groups = int(entry.get("groups", 1))
            kernel = tuple(int(k) for k in entry.get("kernel", (1, 1)))
            positions = int(entry.get("out_positions", 1))
        except KeyError as err:
            raise ShapeError(f"BOPs layer-shape entry {entry!r} lacks field {err}") from None
        if groups <= 0 or n_in % groups:
            raise ShapeError(f"layer {name!r}: in_channels={n_in} is not divisible by groups={groups}")
        note = str(entry.get("note", ""))
        b_w, b_a = (FP32_BITS, FP32_BITS) if note else _bits(name, entry, recipe)
        fan_in_channels = n_in // groups
        macs = positions * m * fan_in_channels * kernel[0] * kernel[1]
        value = reference.layer_bops(fan_in_channels, m, kernel, positions, b_a, b_w)
        shape = (m, fan_in_channels) + (tuple(entry.get("weight_kernel", kernel)) if kind != "dense" else ())
        rows.append(BopsRow(name, kind, shape, positions, b_w, b_a, macs, float(value), note))
    return BopsTable(rows)


UNQUANTIZED_NOTE = "fp32: only conv2d and dense layers are quantized"


def torch_layer_shapes(model, input_shape):
    """Layer-shape dicts of every Conv2d / Linear of a torch model, from one forward pass.

    Conv1d / ConvTranspose2d layers are listed too, marked fp32 with the reason (``note``): they
    run in float because tvm-qnn quantizes only conv2d and dense layers.
    """
    import torch
    from torch import nn

    unquantized = (nn.Conv1d, nn.ConvTranspose2d)

    if input_shape is None:
        raise ShapeError("bops(torch model) needs input_shape, e.g. (1, 28, 28) or (1, 3, 224, 224)")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    entries, handles = [], []

    def record(name, module):
        def hook(_module, args, output):
            if isinstance(module, unquantized):
                kernel = tuple(module.kernel_size)
                transposed = isinstance(module, nn.ConvTranspose2d)
                # a transposed conv does its MACs per *input* position
                positions = args[0].shape[2:].numel() if transposed else output.shape[2:].numel()
                entries.append({"name": f"{name}.weight", "kind": type(module).__name__.lower(),
                                "in_channels": module.in_channels, "out_channels": module.out_channels,
                                "kernel": (kernel + (1,))[:2], "weight_kernel": kernel, "groups": module.groups,
                                "out_positions": int(positions), "note": UNQUANTIZED_NOTE})
            elif isinstance(module, nn.Conv2d):
                entries.append({"name": f"{name}.weight", "kind": "conv2d", "in_channels": module.in_channels,
                                "out_channels": module.out_channels, "kernel": tuple(module.kernel_size),
                                "groups": module.groups, "out_positions": int(output.shape[-1] * output.shape[-2])})
            else:
                positions = output.numel() // (shape[0] * module.out_features)
                entries.append({"name": f"{name}.weight", "kind": "dense", "in_channels": module.in_features,
                                "out_channels": module.out_features, "kernel": (1, 1), "groups": 1,
                                "out_positions": int(positions)})
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear) + unquantized):
            handles.append(module.register_forward_hook(record(name, module)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape))
    except RuntimeError as err:
        raise ShapeError(f"bops: model does not accept input_shape={tuple(input_shape)}: {err}") from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return entries


def _from_torch(model, input_shape, recipe):
    entries = torch_layer_shapes(model, input_shape)
    if recipe is not None:
        recipe.check_covers([e["name"] for e in entries if not e.get("note")], where="torch model")
    return table_from_shapes(entries, recipe)


def _from_recipe(recipe, input_shape, _unused):
    from . import models

    if recipe.model not in models.MODELS:
        raise ShapeError(
            f"bops(recipe): the recipe carries no layer shapes and its model {recipe.model!r} is not in the "
            f"zoo {sorted(models.MODELS)}; pass bops(torch_model, input_shape, recipe=recipe) or a Relax module"
        )
    model = models.get_model(recipe.model)
    return _from_torch(model, input_shape or models.INPUT_SHAPES[recipe.model], recipe)


def _from_shapes(layer_shapes, _input_shape, recipe):
    return table_from_shapes(layer_shapes, recipe)


def _from_relax(mod, _input_shape, recipe):
    from .bops_relax import relax_layer_shapes  # owned by the import side; needs TVM

    return table_from_shapes(relax_layer_shapes(mod), recipe)


def _kind_of(obj):
    from .recipe import Recipe

    if isinstance(obj, Recipe):
        return "recipe"
    if isinstance(obj, (list, tuple)) and all(isinstance(e, dict) for e in obj):
        return "layer_shapes"
    module_name = type(obj).__module__
    if module_name.startswith("tvm") and type(obj).__name__ == "IRModule":
        return "relax"
    if module_name.startswith("torch") or any(c.__module__.startswith("torch.nn") for c in type(obj).__mro__):
        return "torch"
    return type(obj).__name__


_HANDLERS = {"torch": _from_torch, "recipe": _from_recipe, "layer_shapes": _from_shapes, "relax": _from_relax}


def bops(obj, input_shape=None, recipe=None):
    """Per-layer BOPs table of ``obj`` (torch model, Recipe, layer-shape dicts, Relax IRModule)."""
    from .recipe import load as load_recipe

    if recipe is not None:
        recipe = load_recipe(recipe)
    kind = _kind_of(obj)
    if kind not in _HANDLERS:
        raise UnsupportedOpError(f"bops() cannot count {kind}; it accepts {sorted(_HANDLERS)}")
    return _HANDLERS[kind](obj, input_shape, recipe)

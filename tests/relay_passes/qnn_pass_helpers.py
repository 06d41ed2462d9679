"""Helpers shared by the pass tests: tiny recipes keyed by the TVMScript parameter names, and
the small float module most pass tests start from (conv+bias+relu, depthwise conv+relu6,
dense+bias+relu, dense+bias), written the way the torch importer emits those layers."""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tvm_qnn.recipe import LayerQuant, Recipe

LAYERS = ("w1", "w2", "w3", "w4")


def layer(name, w_bits=2, a_bits=2, a_clamp=3.0, lut=None, scheme="uniform", thresholds=None, a_zero_point=0):
    levels = 1 << w_bits
    lut = np.linspace(-1.0, 1.0, levels, dtype=np.float32)[None, :] if lut is None else lut
    return LayerQuant(name, w_bits, scheme, lut, a_bits, a_clamp, thresholds, a_zero_point)


def recipe(quantized, fp32=()):
    layers = {}
    for item in quantized:
        entry = item if isinstance(item, LayerQuant) else layer(item)
        layers[entry.name] = entry
    return Recipe(layers, tuple(fp32))


@I.ir_module
class FloatNet:
    @R.function
    def main(x: R.Tensor((1, 2, 8, 8), "float32"), w1: R.Tensor((4, 2, 3, 3), "float32"), b1: R.Tensor((4,), "float32"),
             w2: R.Tensor((4, 1, 3, 3), "float32"), w3: R.Tensor((6, 64), "float32"), b3: R.Tensor((6,), "float32"),
             w4: R.Tensor((3, 6), "float32"), b4: R.Tensor((3,), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.conv2d(x, w1, padding=[1, 1, 1, 1])
            lv1 = R.reshape(b1, R.shape([1, 4, 1, 1]))
            lv2 = R.add(lv, lv1)
            lv3 = R.nn.relu(lv2)
            lv4 = R.nn.conv2d(lv3, w2, padding=[1, 1, 1, 1], groups=4)
            lv5 = R.clip(lv4, 0, 6)
            lv6 = R.nn.max_pool2d(lv5, pool_size=[2, 2], strides=[2, 2])
            lv7 = R.reshape(lv6, R.shape([1, 64]))
            lv8 = R.permute_dims(w3, axes=[1, 0])
            lv9 = R.matmul(lv7, lv8)
            lv10 = R.add(b3, lv9)
            lv11 = R.nn.relu(lv10)
            lv12 = R.permute_dims(w4, axes=[1, 0])
            lv13 = R.matmul(lv11, lv12)
            gv = R.add(b4, lv13)
            R.output(gv)
        return gv


def float_params(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"w1": (4, 2, 3, 3), "b1": (4,), "w2": (4, 1, 3, 3), "w3": (6, 64), "b3": (6,), "w4": (3, 6), "b4": (3,)}
    return {name: rng.standard_normal(shape).astype(np.float32) * 0.5 for name, shape in shapes.items()}


def build_and_run(mod, *inputs):
    """Compile with the stock pipeline and run ``main`` (numpy in, numpy out)."""
    target = tvm.target.Target({"kind": "llvm"})
    executable = tvm.compile(mod, target=target, relax_pipeline=relax.get_default_pipeline(target))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs])
    outputs = result.numpy() if hasattr(result, "numpy") else [r.numpy() for r in result]
    assert all(np.all(np.isfinite(o)) for o in (outputs if isinstance(outputs, list) else [outputs])), "non-finite output"
    return outputs

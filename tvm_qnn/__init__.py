"""tvm-qnn: quantized neural networks (UNIQ k-quantile weights, NICE learned clamps) on TVM.

Public API (DESIGN.md): ``from_torch``, ``from_onnx``, ``calibrate``, ``quantize``, ``compile``,
``load``, ``tune``, ``bops``. Names resolve lazily so that ``import tvm_qnn`` stays cheap and
never imports TVM or torch until a function that needs them is used.
"""

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    "from_torch": ("tvm_qnn.frontend", "from_torch"),
    "from_onnx": ("tvm_qnn.frontend", "from_onnx"),
    "from_qonnx": ("tvm_qnn.frontend", "from_qonnx"),
    "calibrate": ("tvm_qnn.calibrate", "calibrate"),
    "quantize": ("tvm_qnn.quantize", "quantize"),
    "compile": ("tvm_qnn.compiler", "compile"),
    "load": ("tvm_qnn.compiler", "load"),
    "CompiledModel": ("tvm_qnn.compiler", "CompiledModel"),
    "tune": ("tvm_qnn.tuning", "tune"),
    "bops": ("tvm_qnn.bops", "bops"),
    "Recipe": ("tvm_qnn.recipe", "Recipe"),
    "load_recipe": ("tvm_qnn.recipe", "load"),
    "save_recipe": ("tvm_qnn.recipe", "save"),
}


def __getattr__(name):
    if name in _API:
        module, attribute = _API[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tvm_qnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))


__all__ = list(_API) + ["__version__"]

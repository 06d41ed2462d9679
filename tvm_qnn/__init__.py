"""tvm-qnn: quantized neural networks (UNIQ k-quantile weights, NICE learned clamps) on TVM.

Public API (DESIGN.md): ``from_torch``, ``from_onnx``, ``calibrate``, ``quantize``, ``compile``,
``load``, ``tune``, ``bops``. Names resolve lazily so that ``import tvm_qnn`` stays cheap and
never imports TVM or torch until a function that needs them is used.
"""

import importlib
import sys
import types

from tvm_qnn import threads as _threads

_threads.configure()  # before TVM sizes its thread pool (tvm_qnn.threads says why)

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


class _Package(types.ModuleType):
    """The package's module type: a public function keeps its name when its submodule is imported.

    ``import tvm_qnn.quantize`` makes Python bind the package attribute ``quantize`` to the
    *module* ``tvm_qnn/quantize.py``, which would shadow the API *function* ``tvm_qnn.quantize``
    (likewise ``calibrate`` and ``bops``). Submodules stay reachable through ``sys.modules`` and
    ``from tvm_qnn.quantize import ...``; the attribute always means the public function.
    """

    def __setattr__(self, name, value):
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


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

sys.modules[__name__].__class__ = _Package

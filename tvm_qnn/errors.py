"""One error hierarchy for every user-facing failure of tvm-qnn.

Every message names the layer, op, field or value at fault and what was expected.
TVM's own errors are caught at the boundary (compile, run, tune, remote) and re-raised
as one of these with the original attached as ``__cause__``.
"""


class QnnError(Exception):
    """Base of all tvm-qnn errors."""


class RecipeError(QnnError, ValueError):
    """A recipe is malformed, has the wrong version, or does not match the model."""


class QuantizationError(QnnError, ValueError):
    """Bad quantization parameters or values: bits out of 1..8, NaN/inf weights, clamp <= 0."""


class UnsupportedOpError(QnnError):
    """An op (or target) the requested path cannot handle; names the node/op."""


class ShapeError(QnnError, ValueError):
    """An input, weight or tile has a shape or dtype other than the one expected."""


class HwConfigError(QnnError, ValueError):
    """An accelerator hardware config field is out of range or inconsistent."""


class TuningError(QnnError):
    """Tuning failed: no valid candidate, a schedule that computes a wrong answer, a bad database."""


class RemoteError(QnnError):
    """An RPC board or tracker failed, timed out or refused the upload; names host and key."""


class DatasetError(QnnError, FileNotFoundError):
    """A data set is missing or unreadable; says where it was looked for and how to install it."""


class ExportError(QnnError):
    """An export directory is missing, partial, corrupt or from an incompatible version."""


class ArgumentError(QnnError, TypeError, ValueError):
    """A public function got an argument of the wrong type or out of range; names it and what was expected."""


class ToolNotFoundError(QnnError):
    """An external tool (yosys, iverilog, ...) is missing; names the Debian package to install."""


class CompileError(QnnError):
    """Lowering or building a module failed inside TVM; names the function/layer being built."""


__all__ = [
    "QnnError",
    "RecipeError",
    "QuantizationError",
    "UnsupportedOpError",
    "ShapeError",
    "HwConfigError",
    "TuningError",
    "RemoteError",
    "DatasetError",
    "ExportError",
    "ArgumentError",
    "ToolNotFoundError",
    "CompileError",
]

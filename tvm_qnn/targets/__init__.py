"""The target registry: target name -> lowering (how a quantized Relax module becomes runnable).

A *lowering* is a subclass of :class:`Lowering` registered under a name with
:func:`register_target`. ``tvm_qnn.compile(qmod, target=name)`` looks it up with
:func:`get_target`, calls ``build(qmod, options)`` and wraps the returned :class:`Artifact` in a
``CompiledModel``; ``tvm_qnn.load(dir)`` calls ``load_artifact`` of the target named in the
manifest. The interface is deliberately small:

* ``build(qmod, options) -> Artifact``: ``options`` is a :class:`BuildOptions` (the TVM target
  dict, tuning database, free-form extras such as an accelerator config);
* an :class:`Artifact` holds the ``tvm.relax`` executable, the target dict it was built for, and
  ``runtime_files`` (name -> bytes: instruction streams, configs...) that ``export`` writes next to
  the library;
* ``prepare_runtime(artifact, directory=None)`` runs before a VM is created (in the building
  process and again after ``load``): a lowering with a runtime side (the FPGA simulator's packed
  functions) registers it here, reading its ``runtime_files``.

Built in, in :data:`BUILTIN_TARGETS` (name -> ``module:class``, imported on first use, so that
``import tvm_qnn`` stays cheap and nothing registers itself by being imported):
``cpu-reference`` (``targets/cpu_reference.py``, the stock Relax lowering of the quantized graph),
``cpu`` (``targets/cpu.py``, bit-serial kernels; ``targets/cpu_int.py`` is its integer-only mode)
and ``fpga`` (``targets/fpga.py``, the VTA-style core). :func:`register_target` adds a user's own
lowering under a new name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from tvm_qnn.errors import CompileError, UnsupportedOpError

# name -> "module:class" of the built-in lowerings (the module is imported when the name is used)
BUILTIN_TARGETS = {
    "cpu-reference": "tvm_qnn.targets.cpu_reference:CpuReferenceLowering",
    "cpu": "tvm_qnn.targets.cpu:CpuBitserialLowering",
    "fpga": "tvm_qnn.targets.fpga:FpgaLowering",
}
_USER_TARGETS = {}  # name -> Lowering subclass added with register_target


@dataclass(frozen=True)
class BuildOptions:
    """What a lowering needs besides the module: the TVM target dict, tuning database, extras."""

    target: dict = field(default_factory=dict)
    tuning: object = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.target, dict):
            raise CompileError(f"BuildOptions.target must be a target dict, got {type(self.target).__name__}")


@dataclass
class Artifact:
    """A built model: the Relax executable, its target dict, and extra runtime files for export."""

    executable: object
    target: dict
    runtime_files: dict = field(default_factory=dict)  # file name -> bytes
    info: dict = field(default_factory=dict)  # json-able facts for the manifest


class Lowering:
    """Base class of a target lowering (see module doc). Subclasses set ``name`` and ``kind``."""

    name = ""
    kind = "cpu"  # the device the executable runs on ("cpu"; the FPGA path also drives a CPU VM)

    def default_target(self):
        return host_target()

    def build(self, qmod, options):
        raise NotImplementedError

    def prepare_runtime(self, artifact, directory=None):
        """Register whatever the executable needs at run time (nothing for pure-CPU targets)."""

    def load_artifact(self, library_path, target, runtime_files):
        """Rebuild an :class:`Artifact` from an export directory's library and runtime files."""
        import tvm

        try:
            executable = tvm.runtime.load_module(library_path)
        except Exception as err:  # TVM raises its own error types
            raise CompileError(f"cannot load library {library_path!r}: {err}") from err
        return Artifact(executable, target, dict(runtime_files))


def host_target(num_cores=None):
    """The LLVM target dict of this CPU (``Target.from_device("cpu")`` + ``num-cores``).

    ``mcpu`` comes from the detected CPU (e.g. znver4) so popcnt/AVX-512 are used where present;
    ``num-cores`` is required by MetaSchedule. Every CPU lowering builds from this one dict.
    """
    import os

    import tvm

    detected = tvm.target.Target.from_device("cpu").export()
    target = {key: detected[key] for key in ("kind", "mtriple", "mcpu") if key in detected and detected[key]}
    if "mattr" in detected and detected["mattr"]:
        target["mattr"] = list(detected["mattr"])
    target["num-cores"] = int(num_cores or len(os.sched_getaffinity(0)) or 1)
    return target


def register_target(name, lowering_cls, replace=False):
    """Add a user's own lowering (a :class:`Lowering` subclass) under ``name``.

    A built-in name or one registered before needs ``replace=True``.
    """
    if not (isinstance(lowering_cls, type) and issubclass(lowering_cls, Lowering)):
        raise UnsupportedOpError(f"register_target({name!r}): {lowering_cls!r} is not a Lowering subclass")
    taken = _USER_TARGETS.get(name) or (BUILTIN_TARGETS.get(name) and _builtin_class(name))
    if taken is not None and taken is not lowering_cls and not replace:
        raise UnsupportedOpError(f"target {name!r} is already registered ({taken.__name__}); pass replace=True")
    _USER_TARGETS[name] = lowering_cls
    return lowering_cls


def known_targets():
    """Names of every built-in and registered target."""
    return sorted(set(BUILTIN_TARGETS) | set(_USER_TARGETS))


def _builtin_class(name):
    module, cls = BUILTIN_TARGETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_target(name):
    """The lowering instance for ``name``; unknown -> UnsupportedOpError listing the known."""
    if not isinstance(name, str):
        raise UnsupportedOpError(f"target must be a name, got {type(name).__name__}; known targets: {known_targets()}")
    if name in _USER_TARGETS:
        lowering = _USER_TARGETS[name]()
    elif name in BUILTIN_TARGETS:
        lowering = _builtin_class(name)()
    else:
        raise UnsupportedOpError(f"unknown target {name!r}; known targets: {known_targets()}")
    if not lowering.name:
        lowering.name = name
    return lowering

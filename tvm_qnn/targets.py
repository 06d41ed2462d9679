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

Built in: ``cpu-reference`` (stock Relax lowering of the quantized graph with
``relax.get_default_pipeline``). ``cpu`` is an alias of it until a real ``cpu`` lowering is
registered (the bit-serial one); registering a name that is an alias replaces the alias.
Targets provided by other modules are imported on first use (``_PROVIDERS``): such a module
calls ``register_target`` at import time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from .errors import CompileError, UnsupportedOpError

# name -> module that registers it when imported (looked up lazily; a missing module keeps the alias)
_PROVIDERS = {
    "cpu": "tvm_qnn.lower_cpu",
    "fpga": "tvm_qnn.lower_fpga",
}
_REGISTRY = {}
_ALIASES = {"cpu": "cpu-reference"}


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
    """Register ``lowering_cls`` (a :class:`Lowering` subclass) under ``name``.

    A name currently defined as an alias (``cpu`` -> ``cpu-reference``) is taken over cleanly;
    re-registering a real target needs ``replace=True``.
    """
    if not (isinstance(lowering_cls, type) and issubclass(lowering_cls, Lowering)):
        raise UnsupportedOpError(f"register_target({name!r}): {lowering_cls!r} is not a Lowering subclass")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not lowering_cls:
        raise UnsupportedOpError(f"target {name!r} is already registered ({_REGISTRY[name].__name__})")
    _ALIASES.pop(name, None)
    _REGISTRY[name] = lowering_cls
    return lowering_cls


def known_targets():
    """Names of every registered target and alias (providers imported)."""
    for name in _PROVIDERS:
        _import_provider(name)
    return sorted(set(_REGISTRY) | set(_ALIASES))


def _import_provider(name):
    module = _PROVIDERS.get(name)
    if module is None or name in _REGISTRY:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:  # the provider exists but one of its imports is missing: say so
            raise


def get_target(name):
    """The lowering instance for ``name``; unknown -> UnsupportedOpError listing the known."""
    if not isinstance(name, str):
        raise UnsupportedOpError(f"target must be a name, got {type(name).__name__}; known targets: {known_targets()}")
    _import_provider(name)
    resolved = name
    if resolved not in _REGISTRY and resolved in _ALIASES:
        resolved = _ALIASES[resolved]
    if resolved not in _REGISTRY:
        raise UnsupportedOpError(f"unknown target {name!r}; known targets: {known_targets()}")
    lowering = _REGISTRY[resolved]()
    if not lowering.name:
        lowering.name = resolved
    return lowering


class CpuReferenceLowering(Lowering):
    """Stock Relax lowering: the quantized graph's ops (take, floor, clip, conv2d...) compiled by
    ``tvm.compile`` with ``relax.get_default_pipeline(target)`` (which fuses; without it the
    default build does no fusion). The ``qnn.*`` composites lose their Composite/Primitive marks
    first so the stock pipeline treats their bodies as ordinary Relax functions."""

    name = "cpu-reference"

    def build(self, qmod, options):
        import tvm
        from tvm import relax

        import relay_passes

        target_dict = options.target or host_target()
        target = tvm.target.Target(target_dict)
        # float64 accumulation inside the quantized layers keeps large fan-ins within the 1e-5
        # contract (relay_passes/widen_accumulation.py says why); then plain functions for the stock pipeline
        module = strip_composite_marks(relay_passes.WidenQnnAccumulation()(qmod))
        try:
            executable = tvm.compile(module, target=target, relax_pipeline=relax.get_default_pipeline(target))
        except Exception as err:
            raise CompileError(f"cpu-reference: building the module for {target_dict} failed: {err}") from err
        return Artifact(executable, dict(target_dict))


def strip_composite_marks(mod):
    """``mod`` with the Composite/Primitive marks removed so stock lowering treats them as plain ops."""
    import tvm
    from tvm import relax

    out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function) and func.attrs is not None and "Composite" in func.attrs:
            out[gvar] = func.without_attr("Composite").without_attr("Primitive")
    return out


register_target("cpu-reference", CpuReferenceLowering)


inline_qnn_composites = strip_composite_marks  # the name tvm_qnn.lower_fpga imports

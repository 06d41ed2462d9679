"""The ``fpga`` target: accelerator layers on the VTA-style core (simulated), the rest on the CPU.

``build`` partitions the quantized module (``relay_passes.partition_fpga``: annotate ->
``MergeCompositeFunctions`` -> compile each merged function with ``vta_ext`` into a
``Segment``), registers one global packed function per segment (the runtime: it runs the
functional simulator on the call's tensors, destination-passing style) and builds what is left
(fp32 first/last layers, pooling, residual adds, grouped convs) with the stock Relax pipeline
for the host CPU. ``runtime_files`` carry every segment (streams, DRAM images, config) so that
``export`` -> ``load`` in a fresh process re-registers the same functions (``prepare_runtime``).

The target is ``"fpga"`` (the ``pynq_z1`` preset) or any ``HwConfig`` / config dict / preset
name passed as ``BuildOptions.extra["hw_config"]`` (``hw_config_from`` accepts all of them).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from vta_ext.config import HwConfig
from vta_ext.segment import Segment

from .errors import CompileError, HwConfigError, QnnError
from .targets import Artifact, Lowering, host_target, inline_qnn_composites, register_target

DEFAULT_PRESET = "pynq_z1"
RUNTIME_PREFIX = "vta/"
_SEGMENTS = {}  # symbol -> Segment registered in this process (mirrors TVM's global function table)


def hw_config_from(value):
    """An ``HwConfig`` from a HwConfig, a dict, a preset name, a JSON path or None (the default preset)."""
    if value is None:
        return HwConfig.preset(DEFAULT_PRESET)
    if isinstance(value, HwConfig):
        return value
    if isinstance(value, dict):
        return HwConfig.from_dict(value)
    if isinstance(value, str):
        if value.lstrip().startswith("{") or value.endswith(".json"):
            return HwConfig.from_json(value)
        return HwConfig.preset(value)
    raise HwConfigError(f"hardware config {value!r}; expected a HwConfig, dict, preset name or JSON path")


def _runtime_function(symbol, segment):
    """The packed function the Relax VM calls: ``f(*inputs, *outputs)`` (destination passing)."""
    n_in = len(segment.input_shapes)

    def run(*tensors):
        inputs = [t.numpy() for t in tensors[:n_in]]
        outputs = segment.run(inputs)
        for target, value in zip(tensors[n_in:], outputs):
            target.copyfrom(np.ascontiguousarray(value.reshape(tuple(target.shape)), dtype=np.float32))

    return run


def register_segment(symbol, segment):
    """Register ``segment`` as the global packed function ``symbol`` (idempotent)."""
    import tvm_ffi

    _SEGMENTS[symbol] = segment
    tvm_ffi.register_global_func(symbol, _runtime_function(symbol, segment), override=True)


def segments_of(artifact):
    """``{symbol: Segment}`` of a built or loaded FPGA artifact."""
    groups = defaultdict(dict)
    for name, data in artifact.runtime_files.items():
        if name.startswith(RUNTIME_PREFIX):
            symbol, _, file_name = name[len(RUNTIME_PREFIX):].partition("/")
            groups[symbol][file_name] = data
    return {symbol: _SEGMENTS.get(symbol) or Segment.from_files(files, where=f"runtime file {symbol}")
            for symbol, files in groups.items()}


class FpgaLowering(Lowering):
    """Lowering of the ``fpga`` target (see the module docstring)."""

    name = "fpga"
    kind = "cpu"  # the VM runs on the host CPU; accelerator layers call the simulator

    def build(self, qmod, options):
        import tvm
        from tvm import relax

        from relay_passes.partition_fpga import partition_for_vta

        config = hw_config_from((options.extra or {}).get("hw_config"))
        segments = {}
        partitioned = partition_for_vta(qmod, config, segments.__setitem__,
                                        read_layer=(options.extra or {}).get("read_layer"))
        for symbol, segment in segments.items():
            register_segment(symbol, segment)
        target_dict = options.target or host_target()
        target = tvm.target.Target(target_dict)
        module = inline_qnn_composites(partitioned)  # CPU-side composites (grouped convs) as plain ops
        try:
            executable = tvm.compile(module, target=target, relax_pipeline=relax.get_default_pipeline(target))
        except Exception as err:
            raise CompileError(f"fpga: building the host part for {target_dict} failed: {err}") from err
        files = {f"{RUNTIME_PREFIX}{symbol}/{name}": data
                 for symbol, segment in segments.items() for name, data in segment.to_files().items()}
        info = {"hw_config": config.to_dict(), "segments": {s: seg.layer_cycles() for s, seg in segments.items()}}
        return Artifact(executable, dict(target_dict), files, info)

    def prepare_runtime(self, artifact, directory=None):
        for symbol, segment in segments_of(artifact).items():
            register_segment(symbol, segment)


def model_report(artifact):
    """``vta_ext.report.ModelReport`` of a built/loaded FPGA artifact (or an object with ``.artifact``)."""
    from vta_ext.report import ModelReport

    artifact = getattr(artifact, "artifact", artifact)
    segments = segments_of(artifact)
    if not segments:
        raise QnnError("this model has no accelerator layers (was it compiled for target='fpga'?)")
    config = next(iter(segments.values())).config
    return ModelReport.from_segments(list(segments.values()), config)


register_target("fpga", FpgaLowering)

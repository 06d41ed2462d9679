"""The ``fpga`` target: accelerator layers on the VTA-style core (simulated), the rest on the CPU.

``build`` partitions the quantized module (``relay_passes.partition_fpga``: annotate ->
``MergeCompositeFunctions`` -> compile each merged function with ``vta_ext`` into a
``Segment``), registers one global packed function per segment (the runtime: it runs the
functional simulator on the call's tensors, destination-passing style) and builds what is left
(fp32 first/last layers, pooling, residual adds, grouped convs) with the ``cpu`` target's host
pipeline (``build_host_part``, shared with ``cpu`` in integer-only mode). ``runtime_files``
carry every segment (streams, DRAM images, config) so that ``export`` -> ``load`` in a fresh
process re-registers the same functions (``prepare_runtime``).

The target is ``"fpga"`` (the ``pynq_z1`` preset) or any ``HwConfig`` / config dict / preset
name passed as ``BuildOptions.extra["hw_config"]`` (``hw_config_from`` accepts all of them).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from vta_ext.config import HwConfig
from vta_ext.segment import Segment

from tvm_qnn.errors import CompileError, HwConfigError, QnnError
from tvm_qnn.targets import Artifact, Lowering, host_target
from tvm_qnn.targets.cpu_reference import strip_composite_marks

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


def build_host_part(partitioned, target_dict, where):
    """Build a partitioned module (accelerator calls + CPU ops) for the host CPU.

    Shared by ``fpga`` and ``cpu`` with ``integer_only=True`` so that both run the CPU side of
    a model with the same compiled float code (bit-identical outputs need identical host ops).
    The pipeline is the ``cpu`` target's (Relax's default plus a parallel, vectorized schedule
    of the float ops; the bare default pipeline leaves them single-threaded scalar loops).
    """
    import tvm

    from tvm_qnn.targets.cpu import cpu_pipeline

    target = tvm.target.Target(target_dict)
    module = strip_composite_marks(partitioned)  # CPU-side composites (grouped convs) as plain ops
    try:
        return tvm.compile(module, target=target, relax_pipeline=cpu_pipeline(target))
    except Exception as err:
        raise CompileError(f"{where}: building the host part for {target_dict} failed: {err}") from err


class FpgaLowering(Lowering):
    """Lowering of the ``fpga`` target (see the module docstring)."""

    name = "fpga"
    kind = "cpu"  # the VM runs on the host CPU; accelerator layers call the simulator

    def build(self, qmod, options):
        from relay_passes.partition_fpga import partition_for_vta

        config = hw_config_from((options.extra or {}).get("hw_config"))
        segments = {}
        partitioned = partition_for_vta(qmod, config, segments.__setitem__,
                                        read_layer=(options.extra or {}).get("read_layer"))
        for symbol, segment in segments.items():
            register_segment(symbol, segment)
        target_dict = options.target or host_target()
        executable = build_host_part(partitioned, target_dict, "fpga")
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




def _outputs(compiled, images):
    """Outputs of ``images`` run in chunks of the module's static batch (last chunk zero-padded, then cut)."""
    batch = int(compiled.inputs[0]["shape"][0])
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        padded = np.zeros((batch,) + chunk.shape[1:], np.float32)
        padded[: len(chunk)] = chunk
        outputs.append(np.asarray(compiled.run(padded))[: len(chunk)])
    return np.concatenate(outputs)


def fpga_demo(qmod, images, labels, hw_config=DEFAULT_PRESET, cpu_target="cpu", progress=True):
    """The demo step: compile ``qmod`` for the accelerator, run it in the simulator, check it against
    the CPU's integer-only build (``compile(..., integer_only=True)``: outputs must be identical) and
    print accuracy next to the float ``cpu`` path's, simulated cycles, latency/fps at the core's
    clock and the core on its part (``vta_ext.fit.utilisation``: measured whole-core synthesis where
    committed, else the resource model).

    Returns a dict with ``fpga_top1``, ``cpu_integer_top1``, ``agreement`` (top-1 agreement of fpga
    and cpu integer-only: 1.0 unless something is broken), ``outputs_identical``, ``cpu_top1`` and
    ``float_agreement`` (the float-contract ``cpu`` path and its top-1 agreement with fpga: int8
    LUT rounding and fixed-point requant move some codes), ``cycles_per_batch, latency_ms, fps,
    gops, fit`` (``None`` for a config that names no part).
    """
    from vta_ext.fit import utilisation

    from tvm_qnn.compiler import compile as compile_model

    config = hw_config_from(hw_config)
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    fpga = compile_model(qmod, target=config)
    cpu_integer = compile_model(qmod, target=cpu_target, integer_only=config)
    cpu = compile_model(qmod, target=cpu_target)
    fpga_out, integer_out, float_out = (_outputs(model, images) for model in (fpga, cpu_integer, cpu))
    fpga_classes, integer_classes, cpu_classes = (out.argmax(1) for out in (fpga_out, integer_out, float_out))
    report = model_report(fpga)
    fit = utilisation(config) if config.part else None
    result = {
        "fpga_top1": float((fpga_classes == labels).mean()),
        "cpu_integer_top1": float((integer_classes == labels).mean()),
        "agreement": float((fpga_classes == integer_classes).mean()),
        "outputs_identical": bool(np.array_equal(fpga_out, integer_out)),
        "cpu_top1": float((cpu_classes == labels).mean()),
        "float_agreement": float((fpga_classes == cpu_classes).mean()), "images": int(len(labels)),
        "cycles_per_batch": report.cycles, "batch": report.batch, "latency_ms": report.latency_ms,
        "fps": report.fps, "gops": report.gops, "fit": fit, "config": config.name,
    }
    if progress:
        print(report.table())
        print(f"accuracy on {len(labels)} images: fpga (integer-only, simulated) {result['fpga_top1']:.4f}; "
              f"cpu integer-only {result['cpu_integer_top1']:.4f} (top-1 agreement {result['agreement']:.4f}, "
              f"outputs bit-identical: {result['outputs_identical']}); cpu float contract {result['cpu_top1']:.4f} "
              f"(top-1 agreement with fpga {result['float_agreement']:.4f})")
        print(f"core {config.name}: {report.cycles} cycles per batch of {report.batch} -> {report.latency_ms:.3f} ms, "
              f"{report.fps:.0f} fps at {config.clock_mhz:g} MHz (accelerator layers)")
        if fit:
            print(f"fit check: {format_fit(fit)}")
    return result


def format_fit(fit):
    """One line of ``vta_ext.fit.utilisation``: each resource needed / the part's, and the figures' source."""
    return (f"on {fit['part']} ({fit['source']}): "
            + ", ".join(f"{r.upper()} {fit[r]['need']:,} / {fit[r]['capacity']:,}" for r in ("lut", "ff", "bram", "dsp")))

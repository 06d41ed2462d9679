"""Target ``cpu`` with ``integer_only=True``: DESIGN's integer-only mode compiled for the CPU.

``tvm_qnn.compile(qmod, target="cpu", integer_only=True)`` gives outputs bit-identical to
``compile(qmod, target="fpga")`` (any preset): the same layers run integer-only, the same
layer outputs stay codes, the same float32 host code runs around them. Steps of ``build``:

1. ``relay_passes.partition_fpga.partition_for_vta`` -- the fpga target's own partitioning and
   segment compiler, so which layers run integer-only, which outputs are requantized to codes
   and every integer parameter are decided by the code that decides them for the accelerator;
2. ``relay_passes.LowerSegmentsToIntegerKernels`` -- each segment call becomes integer kernels
   with an integer epilogue instead of the simulator's packed function: per layer popcount
   bit-serial (``codegen.bitserial_int``), VNNI int8 (``codegen.vnni_int8``) or depthwise, chosen by
   ``codegen.kernel_choice`` or pinned by the recipe's ``kernel`` field (``info["layer_kernels"]``
   shows the choice);
3. ``tvm_qnn.targets.fpga.build_host_part`` -- the fpga target's host build of everything else.

The result is a plain CPU library (no runtime files): ``export``/``load`` work as for ``cpu``.
The popcount integer kernels use the float kernels' hand schedule; tuning records (``tuning=``) are for
the float kernels and are not consulted here.
The accelerator config only matters for what it rejects (bits above its maximum, tiles that
fit no buffer); by default the largest preset is used, ``BuildOptions.extra["hw_config"]``
overrides it.
"""

from __future__ import annotations

from tvm_qnn.errors import QnnError, UnsupportedOpError
from tvm_qnn.targets import Artifact, Lowering, host_target

DEFAULT_PRESET = "ultrascale_plus"  # max bits 8 (the contract's limit) and the largest buffers
INTEGER_ONLY_TARGETS = ("cpu",)


def integer_only_lowering(lowering):
    """The integer-only variant of ``lowering``; ``UnsupportedOpError`` unless the target is ``cpu``."""
    if lowering.name not in INTEGER_ONLY_TARGETS:
        raise UnsupportedOpError(
            f"integer_only=True: target {lowering.name!r} has no integer-only mode; expected one of "
            f"{list(INTEGER_ONLY_TARGETS)} (the fpga target is always integer-only)")
    return CpuIntegerLowering()


def _recording_reader(read_layer, layers):
    """``read_layer`` that also records each layer by name (the integer kernels need its weights)."""
    if read_layer is None:
        from relay_passes.composite import read_qnn_layer as read_layer

    def read(func):
        layer = read_layer(func)
        layers[layer.name] = layer
        return layer

    return read


def recipe_kernel_pins(qmod):
    """``{layer: kernel}`` from the ``kernel`` fields of the recipe ``tvm_qnn.quantize`` attached to ``qmod``."""
    if qmod.attrs is None or "tvm_qnn.recipe" not in qmod.attrs:
        return {}
    import json

    from tvm_qnn.recipe import Recipe

    recipe = Recipe.from_json(json.loads(str(qmod.attrs["tvm_qnn.recipe"])))
    return {name: layer.kernel for name, layer in recipe.layers.items() if layer.kernel is not None}


class CpuIntegerLowering(Lowering):
    """``cpu`` in integer-only mode (see the module docstring). Not registered: ``compile`` picks it
    for ``integer_only=True``; the artifact is an ordinary ``cpu`` library, loaded by ``cpu``."""

    name = "cpu"
    kind = "cpu"

    def build(self, qmod, options):
        import tvm

        from relay_passes.lower_segments_int import LowerSegmentsToIntegerKernels
        from relay_passes.partition_fpga import partition_for_vta

        from tvm_qnn.errors import CompileError
        from tvm_qnn.targets.fpga import build_host_part, hw_config_from

        extra = options.extra or {}
        config = hw_config_from(extra.get("hw_config") or DEFAULT_PRESET)
        target_dict = dict(options.target or host_target())
        layers, segments = {}, {}
        read_layer = _recording_reader(extra.get("read_layer"), layers)
        partitioned = partition_for_vta(qmod, config, segments.__setitem__, read_layer=read_layer)
        lower = LowerSegmentsToIntegerKernels(segments, layers, extra.get("word", "uint64"), target_dict,
                                              recipe_kernel_pins(qmod))
        try:
            lowered = lower(partitioned)
        except QnnError:
            raise
        except Exception as err:  # noqa: BLE001 - TVM errors stop here, named
            raise CompileError(f"cpu (integer_only): lowering the accelerator segments failed: {err}") from err
        kernels = sorted(str(f.attrs["qnn.kernel"]) for f in lowered.functions.values()
                         if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None and "qnn.kernel" in f.attrs)
        executable = build_host_part(lowered, target_dict, "cpu (integer_only)")
        integer_layers = [node.program.name for segment in segments.values() for node in segment.nodes]
        info = {"integer_only": True, "integer_kernels": kernels, "integer_layers": integer_layers,
                "layer_kernels": lower.layer_kernels, "partition_config": config.name}
        return Artifact(executable, target_dict, info=info)

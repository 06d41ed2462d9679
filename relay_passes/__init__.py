"""Relax passes of tvm-qnn (the folder keeps its historical name; Relay was removed from TVM).

Each pass is one ``tvm.transform`` pass with one job; ``tvm_qnn.quantize`` chains them:

    FoldBatchNorm -> LowerBatchNorm -> AnnotateQuantLayers(recipe) -> BindParams -> FoldConstant
      -> InsertWeightLUT(recipe) -> InsertActQuant -> GroupQnnLayers [-> WidenFloatLayers]

``composite.read_qnn_layer`` turns the resulting ``qnn.conv2d``/``qnn.dense`` composites into
``tvm_qnn.layer.QnnLayer`` data for the backends. Names resolve lazily so importing one pass
does not import the others (or the backends' lowering passes).
"""

import importlib


def _register_errors_with_tvm_ffi():
    """Keep tvm_qnn error types when they cross TVM's FFI (a pass raising RecipeError inside
    ``RunPass`` would otherwise reach the caller as a plain RuntimeError)."""
    import tvm_ffi

    from tvm_qnn import errors

    for name in errors.__all__:
        tvm_ffi.register_error(name, getattr(errors, name))


_register_errors_with_tvm_ffi()

_PASSES = {
    "FoldBatchNorm": "relay_passes.fold_batchnorm",
    "LowerBatchNorm": "relay_passes.lower_batchnorm",
    "AnnotateQuantLayers": "relay_passes.annotate",
    "InsertWeightLUT": "relay_passes.insert_weight_lut",
    "InsertActQuant": "relay_passes.insert_act_quant",
    "GroupQnnLayers": "relay_passes.group_qnn_layers",
    "ExposeLayerInputs": "relay_passes.expose_layer_inputs",
    "WidenQnnAccumulation": "relay_passes.widen_accumulation",
    "WidenFloatLayers": "relay_passes.widen_accumulation",
    "read_qnn_layer": "relay_passes.composite",
    "read_qnn_layers": "relay_passes.composite",
    "is_qnn_composite": "relay_passes.composite",
    "LowerQnnToBitserial": "relay_passes.lower_bitserial",
    "LowerSegmentsToIntegerKernels": "relay_passes.lower_segments_int",
}


def __getattr__(name):
    if name in _PASSES:
        value = getattr(importlib.import_module(_PASSES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'relay_passes' has no attribute {name!r}")


__all__ = list(_PASSES)

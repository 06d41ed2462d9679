"""Hand-built Relax modules following the composite contract (``relay_passes.group_qnn_layers``), for tests.

``composite_function(layer)`` writes one ``qnn.conv2d``/``qnn.dense`` composite exactly as the
contract states (codes, dequant, LUT ``take``, conv/matmul, bias, epilogue), so the FPGA
partitioner can be tested on modules whose numbers we know, independently of the importer.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.script import relax as R  # noqa: F401  (keeps TVMScript registered for printing)

from relay_passes.composite import is_qnn_composite


def _const(value, dtype):
    return relax.const(np.asarray(value, dtype=dtype), dtype)


def composite_function(layer):
    """Relax function computing ``layer.reference(x)`` in float32, with the composite attributes."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(layer.input_shape, "float32"))
    levels = 1 << layer.a_bits
    s_a = float(np.float32(layer.a_clamp) / np.float32(levels - 1))
    with bb.function("composite", [x], private=True):
        with bb.dataflow():
            scaled = bb.emit(relax.op.floor(relax.op.add(relax.op.divide(x, _const(s_a, "float32")),
                                                         _const(0.5, "float32"))))
            codes = bb.emit(relax.op.astype(relax.op.clip(scaled, 0, levels - 1), "uint8"))
            xq = bb.emit(relax.op.multiply(relax.op.astype(codes, "float32"), _const(s_a, "float32")))
            lut = np.broadcast_to(layer.lut, (layer.out_channels, layer.n_levels)).astype(np.float32)
            flat_idx = (layer.weight_idx.reshape(layer.out_channels, -1).astype(np.int64)
                        + np.arange(layer.out_channels)[:, None] * layer.n_levels)
            w = bb.emit(relax.op.reshape(relax.op.take(_const(lut.reshape(-1), "float32"),
                                                       _const(flat_idx.reshape(-1).astype(np.int32), "int32"), axis=0),
                                         layer.weight_idx.shape))
            if layer.kind == "conv2d":
                y = bb.emit(relax.op.nn.conv2d(xq, w, strides=layer.stride, padding=layer.padding,
                                               dilation=layer.dilation, groups=layer.groups))
                bias_shape = (1, layer.out_channels, 1, 1)
            else:
                y = bb.emit(relax.op.matmul(xq, relax.op.permute_dims(w)))
                bias_shape = (1, layer.out_channels)
            if layer.bias is not None:
                y = bb.emit(relax.op.add(y, _const(layer.bias.reshape(bias_shape), "float32")))
            if layer.out_min is not None or layer.out_max is not None:
                lo = -3.0e38 if layer.out_min is None else layer.out_min
                hi = 3.0e38 if layer.out_max is None else layer.out_max
                y = bb.emit(relax.op.clip(y, lo, hi))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    func = bb.get()["composite"]
    func = func.with_attrs({"Composite": f"qnn.{layer.kind}", "Primitive": 1, "qnn.layer": layer.name,
                            "qnn.w_bits": layer.w_bits, "qnn.a_bits": layer.a_bits,
                            "qnn.a_clamp": float(layer.a_clamp), "qnn.w_scheme": layer.w_scheme})
    assert is_qnn_composite(func), "the hand-built composite must satisfy the qnn composite contract"
    return func

"""A streaming layer graph read from a Relax module with qnn composites."""

import numpy as np
import pytest

from tvm_qnn.errors import UnsupportedOpError
from vta_ext import streaming
from vta_ext.streaming.sim import simulate

relax = pytest.importorskip("tvm.relax")


def composite(name, kind, in_shape, weight_idx, w_bits=2, a_bits=2, stride=1, padding=1):
    """A minimal qnn composite: codes -> dequant -> LUT take -> conv2d/matmul (one LUT row)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(in_shape, "float32"))
    lut = np.linspace(-1, 1, 1 << w_bits).astype("float32")
    with bb.function("composite", [x], private=True):
        with bb.dataflow():
            codes = bb.emit(relax.op.astype(relax.op.clip(relax.op.floor(x), 0, (1 << a_bits) - 1), "uint8"))
            xq = bb.emit(relax.op.astype(codes, "float32"))
            w = bb.emit(relax.op.take(relax.const(lut), relax.const(weight_idx), axis=0))  # uint8 idx, weight-shaped
            if kind == "conv2d":
                y = bb.emit(relax.op.nn.conv2d(xq, w, strides=(stride, stride), padding=(padding, padding)))
            else:
                y = bb.emit(relax.op.matmul(xq, relax.op.permute_dims(w)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()["composite"].with_attrs({
        "Composite": f"qnn.{kind}", "Primitive": 1, "qnn.layer": name, "qnn.w_bits": w_bits,
        "qnn.a_bits": a_bits, "qnn.a_clamp": 1.0, "qnn.w_scheme": "uniform"})


def residual_module():
    rng = np.random.default_rng(0)
    idx = lambda *shape: rng.integers(0, 4, shape).astype("uint8")  # noqa: E731
    bb = relax.BlockBuilder()
    gv1 = bb.add_func(composite("l1.conv1", "conv2d", (1, 8, 16, 16), idx(8, 8, 3, 3)), "c1")
    gv2 = bb.add_func(composite("l1.conv2", "conv2d", (1, 8, 16, 16), idx(8, 8, 3, 3)), "c2")
    gv3 = bb.add_func(composite("fc", "dense", (1, 8), idx(10, 8)), "fc")
    x = relax.Var("x", relax.TensorType((1, 3, 16, 16), "float32"))
    w0 = relax.const(rng.standard_normal((8, 3, 3, 3)).astype("float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y0 = bb.emit(relax.op.nn.relu(relax.op.nn.conv2d(x, w0, padding=(1, 1))))  # fp32 first layer
            y1 = bb.emit(relax.Call(gv1, [y0]))
            y2 = bb.emit(relax.Call(gv2, [y1]))
            y3 = bb.emit(relax.op.nn.relu(relax.op.add(y2, y0)))                            # the skip join
            y4 = bb.emit(relax.op.nn.max_pool2d(y3, (2, 2), strides=(2, 2)))
            y5 = bb.emit(relax.op.nn.adaptive_avg_pool2d(y4, (1, 1)))
            y6 = bb.emit(relax.Call(gv3, [relax.op.reshape(y5, (1, 8))]))
            out = bb.emit_output(y6)
        bb.emit_func_output(out)
    return bb.get()


def test_graph_from_relax_finds_layers_skip_and_bits():
    from vta_ext.streaming.from_relax import graph_from_relax

    graph = graph_from_relax(residual_module(), "hand")
    by_name = {layer.name: layer for layer in graph.layers}
    assert [layer.op for layer in graph.layers] == ["input", "conv2d", "conv2d", "conv2d", "add", "maxpool", "avgpool", "dense"]
    assert by_name["l1.conv1"].inputs == ("conv2d_1",) and by_name["l1.conv2"].w_bits == 2
    assert by_name["add_1"].inputs == ("l1.conv2", "conv2d_1")
    assert by_name["conv2d_1"].w_bits == 8 and by_name["conv2d_1"].bits == 2  # fp32 layer feeding 2-bit codes
    assert graph.shapes["maxpool_1"] == (8, 8, 8) and graph.shapes["fc"] == (10, 1, 1)
    plan = streaming.plan(residual_module(), devices=1, device="pynq-z1")  # plan() reads modules too
    assert [b.name for b in plan.blocks] == [layer.name for layer in graph.layers]
    assert plan.fifo("conv2d_1", "add_1").depth_rows > 2
    assert abs(simulate(plan, images=4).raise_if_failed().throughput_error) < 0.03


def test_unmodelled_op_is_named():
    from vta_ext.streaming.from_relax import graph_from_relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 8, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.softmax(x))
        bb.emit_func_output(out)
    with pytest.raises(UnsupportedOpError, match="relax.nn.softmax"):
        graph_from_relax(bb.get(), "bad")

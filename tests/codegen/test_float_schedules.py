"""FloatCpuSchedule: the float ops around the kernels get parallel/vector schedules, same numbers."""

import re

import numpy as np
import pytest
import tvm
from tvm import relax

from codegen.build import cpu_target
from codegen.float_schedules import AVX2_CHANNEL_LANES, CHANNEL_LANES, channel_lanes
from tvm_qnn.targets.cpu import cpu_pipeline


def _float_module():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 20, 20), "float32"))
    rng = np.random.default_rng(0)
    w = relax.const(rng.normal(size=(12, 3, 5, 5)).astype(np.float32))
    b = relax.const(rng.normal(size=(1, 12, 1, 1)).astype(np.float32))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w, strides=2, padding=2))
            y = bb.emit(relax.op.nn.relu(relax.op.add(y, b)))
            y = bb.emit(relax.op.nn.max_pool2d(y, pool_size=2, strides=2))
            out = bb.emit_output(relax.op.add(y, relax.const(np.float32(1.0))))
        bb.emit_func_output(out)
    return bb.get()


def test_float_schedule_keeps_results():
    mod, target = _float_module(), cpu_target()
    x = np.random.default_rng(1).normal(size=(1, 3, 20, 20)).astype(np.float32)
    outs = []
    for pipeline in (relax.get_default_pipeline(target), cpu_pipeline(target)):
        vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=pipeline), tvm.cpu())
        outs.append(vm["main"](tvm.runtime.tensor(x)).numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    scheduled = cpu_pipeline(target)(mod)
    text = scheduled.script()
    assert "T.parallel" in text and "T.vectorized" in text


def _blocks(text):
    return set(re.findall(r'T\.sblock\("(\w+)"\)', text))


def _compare_pipelines(mod, data):
    """Outputs of Relax's default pipeline and of ``cpu_pipeline`` on ``data``, and the scheduled TIR."""
    target = cpu_target()
    outs = []
    for pipeline in (relax.get_default_pipeline(target), cpu_pipeline(target)):
        vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=pipeline), tvm.cpu())
        outs.append(vm["main"](tvm.runtime.tensor(data)).numpy())
    return outs[0], outs[1], cpu_pipeline(target)(mod).script()


@pytest.mark.parametrize("rows,depth,columns,chunk,lanes", [(2, 40, 30, 30, 2), (1, 64, 1000, 200, 8),
                                                             (1, 24, 512, 256, 16)])
def test_matmul_schedule_keeps_results_and_streams_column_chunks(rows, depth, columns, chunk, lanes):
    """A Linear layer (Relax folds its transposed weight to (K, N)): chunks of whole vectors of at most
    N_CHUNK_MAX columns, k outside the chunk; same sums in the same order as the default schedule."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((rows, depth), "float32"))
    rng = np.random.default_rng(0)
    w = relax.const(rng.normal(size=(columns, depth)).astype(np.float32))
    b = relax.const(rng.normal(size=(columns,)).astype(np.float32))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, relax.op.permute_dims(w)))
            out = bb.emit_output(relax.op.nn.relu(relax.op.add(y, b)))
        bb.emit_func_output(out)
    mod = relax.transform.FoldConstant()(bb.get())
    lanes = min(lanes, channel_lanes(cpu_target()))
    expected, got, text = _compare_pipelines(mod, rng.normal(size=(rows, depth)).astype(np.float32))
    np.testing.assert_array_equal(got, expected)  # k is summed in the same order
    assert "matmul_update" in text and f"T.vectorized(T.int64({lanes}))" in text
    assert not _blocks(text) & {"T_add", "compute"}  # bias and ReLU in the chunk's write-back
    # k outside the chunk's vectors: for k, <vector> in T.grid(K, chunk / lanes)
    assert re.search(rf"for k, \w+ in T.grid\(T.int64\({depth}\), T.int64\({chunk // lanes}\)\)", text)


@pytest.mark.parametrize("pool", ["max3s2p1", "max2s2", "avg3s1p1", "global_avg", "max3s2p1_nhwc", "avg3s1p1_nhwc"])
def test_pool_schedule_keeps_results(pool):
    """Pooling windows read the padding in place (no padded copy) with the window unrolled: the same
    values as the default schedule, max and average, padded or not, a global pool's window, and NHWC
    pools with the channels in vector lanes."""
    nhwc = pool.endswith("_nhwc")
    layout = "NHWC" if nhwc else "NCHW"
    shape = (1, 23, 23, 16) if nhwc else (1, 8, 23, 23)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            if pool.startswith("max3s2p1"):
                y = relax.op.nn.max_pool2d(x, pool_size=3, strides=2, padding=1, layout=layout)
            elif pool == "max2s2":
                y = relax.op.nn.max_pool2d(x, pool_size=2, strides=2)
            elif pool.startswith("avg3s1p1"):
                y = relax.op.nn.avg_pool2d(x, pool_size=3, strides=1, padding=1, layout=layout)
            else:
                y = relax.op.nn.adaptive_avg_pool2d(x, output_size=1)
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    data = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    data[..., 0] = -np.inf  # a column (NCHW) or channel (NHWC) of -inf: the padding must not get through
    expected, got, text = _compare_pipelines(bb.get(), data)
    np.testing.assert_array_equal(got, expected)
    assert "T.parallel" in text
    if "p1" in pool:
        assert "pad_temp = T.sblock_alloc_buffer" not in text  # read in place, not copied
    if nhwc:
        assert "T.vectorized(T.int64(16))" in text  # the channels


def test_channel_lane_conv_schedule_keeps_results():
    """A strided stem (7x7 stride 2) and a large stride-1 conv take the channel-lane tile (weights
    relaid out per call): the same sums in the same order as Relax's default schedule."""
    target = cpu_target()
    rng = np.random.default_rng(2)
    for channels, out_channels, size, kernel, stride in ((3, 32, 30, 7, 2), (8, 16, 16, 3, 1)):
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType((1, channels, size, size), "float32"))
        w = relax.const(rng.normal(size=(out_channels, channels, kernel, kernel)).astype(np.float32))
        b = relax.const(rng.normal(size=(1, out_channels, 1, 1)).astype(np.float32))
        with bb.function("main", [x]):
            with bb.dataflow():
                y = bb.emit(relax.op.nn.conv2d(x, w, strides=stride, padding=kernel // 2))
                out = bb.emit_output(relax.op.nn.relu(relax.op.add(y, b)))
            bb.emit_func_output(out)
        mod = bb.get()
        data = rng.normal(size=(1, channels, size, size)).astype(np.float32)
        outs = []
        for pipeline in (relax.get_default_pipeline(target), cpu_pipeline(target)):
            vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=pipeline), tvm.cpu())
            outs.append(vm["main"](tvm.runtime.tensor(data)).numpy())
        np.testing.assert_array_equal(outs[1], outs[0])
        text = cpu_pipeline(target)(mod).script()
        lanes = channel_lanes(target)
        assert f"param_0_global = T.sblock_alloc_buffer((T.int64({out_channels // lanes})" in text
        assert _blocks(text) >= {"conv2d_nchw_update", "conv2d_nchw_intermediate_local"}
        assert not _blocks(text) & {"T_add", "compute"}  # bias and ReLU in the tile's write-back


def test_channel_lanes_follow_the_vector_width():
    """16 fp32 lanes (zmm) with AVX-512, 8 (ymm) without: the AVX-512 tile spills on AVX2."""
    wide = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"})
    narrow = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3"})
    assert channel_lanes(wide) == CHANNEL_LANES
    assert channel_lanes(narrow) == AVX2_CHANNEL_LANES


@pytest.mark.parametrize("channels,out_channels,size,kernel,stride", [(3, 32, 30, 7, 2), (8, 12, 16, 3, 1),
                                                                     (16, 16, 9, 3, 1)])
def test_nhwc_conv_sums_as_the_nchw_conv(channels, out_channels, size, kernel, stride):
    """An NHWC conv (HWIO weights, as ``relay_passes.lower_bitserial`` redoes an fp32 stem under an NHWC
    chain) with bias and ReLU: the channel-lane tile sums in the NCHW conv's order, so it equals the NCHW
    layer under Relax's default schedule exactly; bias and ReLU are in the tile's write-back."""
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(out_channels, channels, kernel, kernel)).astype(np.float32)
    bias = rng.normal(size=(1, out_channels, 1, 1)).astype(np.float32)
    data = rng.normal(size=(1, channels, size, size)).astype(np.float32)
    modules = []
    for nhwc in (False, True):
        bb = relax.BlockBuilder()
        shape = (1, size, size, channels) if nhwc else data.shape
        x = relax.Var("x", relax.TensorType(shape, "float32"))
        with bb.function("main", [x]):
            with bb.dataflow():
                if nhwc:
                    y = relax.op.nn.conv2d(x, relax.const(weight.transpose(2, 3, 1, 0).copy()), strides=stride,
                                           padding=kernel // 2, data_layout="NHWC", kernel_layout="HWIO")
                    y = relax.op.add(y, relax.const(bias.transpose(0, 2, 3, 1).copy()))
                else:
                    y = relax.op.add(relax.op.nn.conv2d(x, relax.const(weight), strides=stride, padding=kernel // 2),
                                     relax.const(bias))
                out = bb.emit_output(relax.op.nn.relu(y))
            bb.emit_func_output(out)
        modules.append(bb.get())
    target = cpu_target()
    vm = relax.VirtualMachine(tvm.compile(modules[0], target=target, relax_pipeline=relax.get_default_pipeline(target)),
                              tvm.cpu())
    expected = vm["main"](tvm.runtime.tensor(data)).numpy()
    vm = relax.VirtualMachine(tvm.compile(modules[1], target=target, relax_pipeline=cpu_pipeline(target)), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(data.transpose(0, 2, 3, 1).copy())).numpy()
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), expected)
    text = cpu_pipeline(target)(modules[1]).script()
    assert "conv2d_nhwc_update" in text and not _blocks(text) & {"T_add", "compute"}
    assert re.search(r"for rc, ry, rx in T.grid", text)  # the NCHW conv's reduction order


def test_write_back_takes_a_chain_but_not_a_value_read_twice():
    """Bias and ReLU6 go into the conv's write-back; the hardswish after them reads the ReLU6 output
    twice (``r * clip(r + 3, 0, 6) / 6``), so that value stays a buffer: the module builds and equals
    Relax's default schedule (the write-back once swallowed one reader and left the other dangling)."""
    rng = np.random.default_rng(5)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 10, 10), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = relax.op.nn.conv2d(x, relax.const(rng.normal(size=(16, 4, 3, 3)).astype(np.float32)), padding=1)
            r = bb.emit(relax.op.clip(relax.op.add(y, relax.const(rng.normal(size=(1, 16, 1, 1)).astype(np.float32))),
                                      0, 6))
            hard = relax.op.divide(relax.op.multiply(r, relax.op.clip(relax.op.add(r, relax.const(np.float32(3))), 0, 6)),
                                   relax.const(np.float32(6)))
            out = bb.emit_output(relax.op.multiply(hard, relax.op.sigmoid(hard)))
        bb.emit_func_output(out)
    expected, got, text = _compare_pipelines(bb.get(), rng.normal(size=(1, 4, 10, 10)).astype(np.float32))
    np.testing.assert_array_equal(got, expected)
    assert "T_add" not in _blocks(text)  # the bias went into the write-back

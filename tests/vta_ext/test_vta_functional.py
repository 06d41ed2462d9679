"""Functional simulator vs the integer-only reference over drawn shapes/bits (tiling edges)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tvm_qnn import reference
from tvm_qnn.errors import HwConfigError, QnnError, ShapeError, UnsupportedOpError
from tvm_qnn.layer import QnnLayer
from vta_ext.compiler import compile_layer
from vta_ext.config import HwConfig
from vta_ext.sim.functional import run_program

# small buffers so that drawn layers need several tiles along rows, input and output channels
SMALL = dict(batch=1, block_in=8, block_out=8, lut_entries=256, inp_buff_bytes=1024, wgt_buff_bytes=2048,
             acc_buff_bytes=16384, uop_buff_bytes=1024, prm_buff_bytes=4 * 8 * 265)


def make_layer(rng, kind, n, c, o, hw, k, stride, pad, a_bits, w_bits, bias=True, out_max=None, per_row=True,
               dilation=1, zero_point=False):
    if kind == "conv2d":
        idx = rng.integers(0, 1 << w_bits, (o, c, k, k)).astype(np.uint8)
        shape = (n, c, hw, hw)
        extra = dict(stride=(stride, stride), padding=pad, dilation=(dilation, dilation))
    else:
        idx = rng.integers(0, 1 << w_bits, (o, c)).astype(np.uint8)
        shape, extra = (n, c), {}
    lut = rng.normal(size=(o if per_row else 1, 1 << w_bits)).astype(np.float32)
    b = rng.normal(size=o).astype(np.float32) if bias else None
    z = int(rng.integers(1, 1 << a_bits)) if zero_point and a_bits > 1 else int(zero_point)
    return QnnLayer("L", kind, idx, lut, b, w_bits, "kquantile", a_bits, 1.5, shape, out_min=0.0, out_max=out_max,
                    a_zero_point=z, **extra)


def reference_acc(layer, codes, params):
    """The contract's accumulator over q - z (padding adds 0), from the reference's bias_int."""
    if layer.kind == "conv2d":
        return reference.qconv2d_int_acc(codes, layer.weight_idx, params["lut_int"], params["bias_int"],
                                         layer.stride, layer.padding, 1, layer.dilation, layer.a_zero_point)
    return reference.qdense_int_acc(codes, layer.weight_idx, params["lut_int"], params["bias_int"],
                                    layer.a_zero_point)


layer_shapes = st.fixed_dictionaries({
    "kind": st.sampled_from(["conv2d", "conv2d", "dense"]),
    "n": st.integers(1, 2), "c": st.integers(1, 20), "o": st.integers(1, 20), "hw": st.integers(3, 9),
    "k": st.sampled_from([1, 3]), "stride": st.integers(1, 2),
    "pad": st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    "a_bits": st.integers(1, 8), "w_bits": st.integers(1, 4), "bias": st.booleans(),
    "per_row": st.booleans(), "dilation": st.integers(1, 2), "zero_point": st.booleans(),
})


def _fits(shape):
    if shape["kind"] == "dense":
        return True
    span = shape["dilation"] * (shape["k"] - 1) + 1
    return shape["hw"] + min(shape["pad"][0] + shape["pad"][2], shape["pad"][1] + shape["pad"][3]) >= span


@settings(max_examples=30)
@given(layer_shapes, st.sampled_from(["onehot", "decode"]), st.integers(1, 2), st.integers(0, 2**31))
def test_accumulators_equal_reference(shape, lut_mode, batch, seed):
    assume(_fits(shape))
    rng = np.random.default_rng(seed)
    layer = make_layer(rng, **shape)
    cfg = HwConfig(lut_mode=lut_mode, **dict(SMALL, batch=batch, inp_buff_bytes=1024 * batch,
                                              acc_buff_bytes=16384 * batch))
    codes = rng.integers(0, 1 << layer.a_bits, layer.input_shape).astype(np.uint8)
    program = compile_layer(layer, cfg)
    out = run_program(program, codes)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, reference_acc(layer, codes, program.params))


@settings(max_examples=15)
@given(layer_shapes, st.sampled_from(["onehot", "decode"]), st.integers(1, 8), st.integers(0, 2**31))
def test_requantized_codes_equal_reference(shape, lut_mode, out_bits, seed):
    assume(_fits(shape))
    rng = np.random.default_rng(seed)
    layer = make_layer(rng, **dict(shape, out_max=rng.choice([None, 1.0])))
    cfg = HwConfig(lut_mode=lut_mode, **SMALL)
    codes = rng.integers(0, 1 << layer.a_bits, layer.input_shape).astype(np.uint8)
    z_next = int(rng.integers(0, 1 << out_bits)) if shape["zero_point"] else 0
    program = compile_layer(layer, cfg, out_act=(out_bits, 2.0, z_next))
    p = program.params
    upper = None
    if layer.out_max is not None:
        upper = int(reference.act_codes(np.float32(layer.out_max), 2.0, out_bits, z_next))
    lower = int(reference.act_codes(np.float32(0.0), 2.0, out_bits, z_next))  # the ReLU: code of x_hat = 0
    z = layer.a_zero_point
    if layer.kind == "conv2d":
        expected = reference.qconv2d_int(codes, layer.weight_idx, p["lut_int"], p["bias_int"], p["multiplier"],
                                         p["shift"], out_bits, layer.stride, layer.padding, 1, layer.dilation,
                                         upper=upper, zero_point=z, out_zero_point=z_next, lower=lower)
    else:
        expected = reference.qdense_int(codes, layer.weight_idx, p["lut_int"], p["bias_int"], p["multiplier"],
                                        p["shift"], out_bits, upper=upper, zero_point=z, out_zero_point=z_next,
                                        lower=lower)
    np.testing.assert_array_equal(run_program(program, codes), expected)


@pytest.mark.parametrize("lut_mode", ["onehot", "decode"])
def test_zero_point_with_padding_is_padded_with_code_z(lut_mode):
    """z != 0 and padding > 0: the host pads with code z (x_hat = 0), the core's bias carries -z sum lut_int."""
    rng = np.random.default_rng(5)
    layer = make_layer(rng, "conv2d", 1, 12, 10, 7, 3, 2, (2, 1, 1, 2), 4, 2)
    layer = QnnLayer(**{**{f: getattr(layer, f) for f in QnnLayer.__dataclass_fields__}, "a_zero_point": 11})
    program = compile_layer(layer, HwConfig(lut_mode=lut_mode, **SMALL))
    assert program.host_padding == (2, 1, 1, 2) and program.geometry.padding == (0, 0, 0, 0)
    codes = rng.integers(0, 16, layer.input_shape).astype(np.uint8)
    out = run_program(program, codes)
    np.testing.assert_array_equal(out, reference_acc(layer, codes, program.params))
    # code 0 at the border (the core's own padding) would have been wrong there
    zero_padded = reference.qconv2d_int_acc(np.pad(codes, ((0, 0), (0, 0), (2, 1), (1, 2))), layer.weight_idx,
                                            program.params["lut_int"], program.params["bias_acc"], layer.stride)
    assert not np.array_equal(zero_padded, out)


@pytest.mark.parametrize("lut_mode", ["onehot", "decode"])
def test_a_layer_split_along_every_tile_dimension(lut_mode):
    rng = np.random.default_rng(4)
    layer = make_layer(rng, "conv2d", 2, 40, 40, 12, 3, 1, 1, 3, 2)
    cfg = HwConfig(lut_mode=lut_mode, **SMALL)
    program = compile_layer(layer, cfg)
    t = program.tiling
    assert t.to < t.ob and t.ci < t.cb and t.th < layer.output_shape[2] and t.nb == 2
    assert layer.output_shape[2] % t.th != 0 or t.ob % t.to != 0 or t.cb % t.ci != 0  # a ragged edge tile
    codes = rng.integers(0, 8, layer.input_shape).astype(np.uint8)
    np.testing.assert_array_equal(run_program(program, codes), reference_acc(layer, codes, program.params))


def test_presets_run_a_resnet_layer():
    rng = np.random.default_rng(1)
    layer = make_layer(rng, "conv2d", 1, 64, 64, 14, 3, 1, 1, 2, 2)
    codes = rng.integers(0, 4, layer.input_shape).astype(np.uint8)
    for name in ("pynq_z1", "ultrascale_plus", "ice40_hx8k"):
        program = compile_layer(layer, HwConfig.preset(name))
        np.testing.assert_array_equal(run_program(program, codes), reference_acc(layer, codes, program.params))


def test_parameter_rows_padded_to_whole_beats():
    """prm_row_beats: each 2,120-byte row takes 2,144 bytes (67 beats of 32) in DRAM; results unchanged."""
    rng = np.random.default_rng(3)
    layer = make_layer(rng, "conv2d", 1, 12, 20, 6, 3, 1, 1, 2, 3)  # three output blocks of 8
    codes = rng.integers(0, 4, layer.input_shape).astype(np.uint8)
    plain = HwConfig(lut_mode="decode", dma_bytes_per_cycle=32, **SMALL)
    beats = plain.replace(prm_row_beats=True)
    assert (plain.prm_row_bytes, beats.prm_row_bytes) == (2120, 2144)
    programs = [compile_layer(layer, cfg) for cfg in (plain, beats)]
    assert [p.regions["prm"][1:] for p in programs] == [(3 * 2120, 2120), (3 * 2144, 2144)]
    padded = programs[1].regions["prm"][0]
    rows = programs[1].dram[padded: padded + 3 * 2144].reshape(3, 2144)
    assert not rows[:, 2120:].any() and rows[:, :2120].any()
    for program in programs:
        np.testing.assert_array_equal(run_program(program, codes), reference_acc(layer, codes, program.params))


def test_dram_bytes_shrink_with_bits():
    rng = np.random.default_rng(2)
    cfg = HwConfig.preset("pynq_z1").replace(part=None, max_w_bits=8, lut_entries=256)  # 8-bit weights: no part
    sizes = {bits: compile_layer(make_layer(rng, "conv2d", 1, 32, 32, 8, 3, 1, 1, bits, bits), cfg).regions
             for bits in (1, 2, 4, 8)}
    for key in ("inp", "wgt"):
        assert [sizes[b][key][1] for b in (1, 2, 4, 8)] == [sizes[1][key][1] * b for b in (1, 2, 4, 8)]


def test_bad_inputs_are_named():
    rng = np.random.default_rng(3)
    cfg = HwConfig(max_a_bits=4, max_w_bits=2, lut_entries=4, **{k: v for k, v in SMALL.items() if k != "lut_entries"})
    with pytest.raises(HwConfigError, match="layer 'L'.*a_bits=6.*max_a_bits=4"):
        compile_layer(make_layer(rng, "conv2d", 1, 4, 4, 5, 3, 1, 1, 6, 2), cfg)
    with pytest.raises(HwConfigError, match="w_bits=3"):
        compile_layer(make_layer(rng, "conv2d", 1, 4, 4, 5, 3, 1, 1, 2, 3), cfg)
    # one input row of a 3x3 conv on a 200-wide image cannot be double-buffered in 1 kB
    with pytest.raises(HwConfigError, match="no tile fits.*inp_buff_bytes"):
        compile_layer(make_layer(rng, "conv2d", 1, 8, 8, 200, 3, 1, 1, 4, 2), cfg)
    grouped = QnnLayer("g", "conv2d", np.zeros((4, 1, 3, 3), np.uint8), np.ones((1, 2), np.float32), None, 1,
                       "uniform", 2, 1.0, (1, 4, 5, 5), groups=4)
    with pytest.raises(UnsupportedOpError, match="groups=4"):
        compile_layer(grouped, cfg)
    program = compile_layer(make_layer(rng, "conv2d", 1, 4, 4, 5, 3, 1, 1, 2, 2), cfg)
    with pytest.raises(ShapeError, match="expected"):
        run_program(program, np.zeros((1, 4, 6, 6), np.uint8))
    with pytest.raises(QnnError, match="does not fit a_bits=2"):
        run_program(program, np.full((1, 4, 5, 5), 4, np.uint8))


def test_malformed_streams_are_errors_naming_the_instruction():
    from vta_ext.isa import FinishInsn, GemmInsn, MemInsn, MemScope, Opcode
    from vta_ext.sim.functional import SimulationError, run_stream

    cfg = HwConfig(**SMALL)
    dram = np.zeros(4096, np.uint8)
    depth = cfg.inp_depth(8)
    with pytest.raises(SimulationError, match=f"LOAD INP.*input index {depth}.*depth {depth}"):
        run_stream(cfg, [MemInsn(opcode=Opcode.LOAD, scope=MemScope.INP, elem_bits=8, sram_base=depth - 1, x_size=2,
                                 x_stride=2), FinishInsn()], dram)
    with pytest.raises(SimulationError, match="beyond the image"):
        run_stream(cfg, [MemInsn(opcode=Opcode.LOAD, scope=MemScope.WGT, elem_bits=8, dram_base=10**6), FinishInsn()],
                   dram)
    with pytest.raises(SimulationError, match="GEMM.*accumulator index"):
        run_stream(cfg, [GemmInsn(reset=True, iter_out=1, iter_in=cfg.acc_depth + 1, dst_factor_in=1), FinishInsn()],
                   dram)
    with pytest.raises(SimulationError, match="without FINISH"):
        run_stream(cfg, [GemmInsn(uop_end=0)], dram)

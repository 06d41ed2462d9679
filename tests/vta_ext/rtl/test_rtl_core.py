"""The whole core in RTL (fetch, queues, tokens, DMA, datapath) against vta_ext.sim: bit-exact DRAM,
cycles within 5 % of the timing model, on compiled single layers."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_qnn import reference
from tvm_qnn.layer import QnnLayer
from vta_ext.compiler import compile_layer
from vta_ext.config import HwConfig
from vta_ext.rtl.core_cosim import CoreCosimMismatch, cosim_core, cosim_core_program

pytestmark = pytest.mark.rtl


def _config(lut_mode, acc_buff_bytes=16384, alu_lanes=None):
    return HwConfig(name=f"core-{lut_mode}", alu_lanes=alu_lanes, batch=1, block_in=8, block_out=8, max_a_bits=8, max_w_bits=8,
                    lut_entries=256, lut_mode=lut_mode, inp_buff_bytes=2048, wgt_buff_bytes=4096,
                    acc_buff_bytes=acc_buff_bytes, uop_buff_bytes=2048, prm_buff_bytes=4 * 8 * (256 + 9),
                    dma_bytes_per_cycle=8, dma_latency_cycles=16)


def _layer(rng, w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits=None):
    w = rng.normal(size=(out_ch, in_ch, kernel, kernel)).astype(np.float32)
    idx, lut = reference.kquantile_lut(w, w_bits)
    pad = kernel // 2
    layer = QnnLayer(name="conv", kind="conv2d", weight_idx=idx, lut=lut, bias=rng.normal(size=out_ch).astype(np.float32),
                     w_bits=w_bits, w_scheme="kquantile", a_bits=a_bits, a_clamp=2.0, input_shape=(1, in_ch, hw, hw),
                     padding=(pad,) * 4, out_min=0.0)
    codes = rng.integers(0, 1 << a_bits, layer.input_shape).astype(np.uint8)
    out_act = None if out_bits is None else (out_bits, 1.5)
    return layer, codes, out_act


def _check(lut_mode, w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits, seed, acc_buff_bytes=16384, alu_lanes=None,
           config=None):
    rng = np.random.default_rng(seed)
    layer, codes, out_act = _layer(rng, w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits)
    program = compile_layer(layer, config or _config(lut_mode, acc_buff_bytes, alu_lanes), out_act=out_act)
    report, sim_out, rtl_out = cosim_core_program(program, codes)
    report.check(cycle_tolerance=0.05)
    np.testing.assert_array_equal(rtl_out, sim_out)
    if out_bits is None:  # raw accumulators: also the integer reference, independently of the simulator
        p = program.params
        expected = reference.qconv2d_int_acc(codes, layer.weight_idx, p["lut_int"], p["bias_int"],
                                             padding=layer.padding)
        np.testing.assert_array_equal(rtl_out, expected)
    return report


@pytest.mark.parametrize("lut_mode", ["decode", "onehot"])
def test_core_runs_a_conv_layer_like_the_simulator(lut_mode):
    """Two output blocks, padding, a requantized 3-bit output: fetch, both DMA directions, tokens."""
    report = _check(lut_mode, w_bits=2, a_bits=3, in_ch=10, out_ch=12, hw=5, kernel=3, out_bits=3, seed=1)
    assert report.dram_equal and report.rtl_cycles > report.model_cycles * 0.95


@pytest.mark.parametrize("lut_mode, beat", [("decode", 16), ("onehot", 32)])
def test_parameter_rows_written_beat_by_beat(lut_mode, beat):
    """prm_row_beats: 2,120-byte parameter rows padded to whole 16- or 32-byte beats in DRAM, assembled beat by
    beat at beat offsets (dma_read's wide elements); several rows per DMA request (two output blocks)."""
    cfg = _config(lut_mode).replace(prm_row_beats=True, dma_bytes_per_cycle=beat)
    assert cfg.prm_row_bytes % beat == 0 and cfg.prm_row_bytes > cfg.prm_entry_bytes
    report = _check(lut_mode, w_bits=2, a_bits=3, in_ch=10, out_ch=12, hw=5, kernel=3, out_bits=None, seed=4,
                    config=cfg)
    assert report.dram_equal


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(beat=st.sampled_from([16, 32, 64]), w_bits=st.integers(1, 3), a_bits=st.integers(1, 8),
       in_ch=st.integers(1, 12), out_ch=st.integers(1, 20), hw=st.integers(2, 4), kernel=st.sampled_from([1, 3]),
       out_bits=st.one_of(st.none(), st.integers(1, 8)), seed=st.integers(0, 1000))
def test_drawn_layers_with_beat_written_parameter_rows(beat, w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits,
                                                       seed):
    cfg = _config("decode").replace(prm_row_beats=True, dma_bytes_per_cycle=beat)
    _check("decode", w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits, seed, config=cfg)


def test_core_with_two_alu_lanes_for_eight_outputs():
    """The ALU passes over the 8 outputs in 4 clocks per step (the iCE40 preset's shape): same DRAM, and the
    cycles stay within 5 % of the timing model, which charges alu_passes per ALU step."""
    report = _check("decode", w_bits=2, a_bits=2, in_ch=10, out_ch=12, hw=5, kernel=3, out_bits=2, seed=3,
                    alu_lanes=2)
    baseline = _check("decode", w_bits=2, a_bits=2, in_ch=10, out_ch=12, hw=5, kernel=3, out_bits=2, seed=3)
    assert report.rtl_cycles > baseline.rtl_cycles  # the passes are real clocks


# the smallest iCE40 core (benchmarks/fpga_build.py): one-byte DMA beats (dma_byte_read / dma_byte_write), one
# ALU lane, 4-entry LUT rows
ICE40_SMALL = HwConfig(name="core-ice40-small", batch=1, block_in=8, block_out=4, max_a_bits=2, max_w_bits=2,
                       lut_entries=4, lut_mode="decode", inp_buff_bytes=512, wgt_buff_bytes=1024, acc_buff_bytes=2048,
                       uop_buff_bytes=2048, prm_buff_bytes=64, dma_bytes_per_cycle=1, dma_latency_cycles=16,
                       alu_lanes=1)


@pytest.mark.parametrize("w_bits, a_bits, in_ch, out_ch, hw, out_bits, seed",
                         [(2, 2, 10, 12, 5, 2, 1), (2, 2, 12, 6, 7, None, 6)])
def test_core_with_one_byte_beats(w_bits, a_bits, in_ch, out_ch, hw, out_bits, seed):
    """Padded 3x3 convs on the smallest iCE40 core as synthesized (one-entry instruction queues): elements
    assembled and sent one byte per clock."""
    rng = np.random.default_rng(seed)
    layer, codes, out_act = _layer(rng, w_bits, a_bits, in_ch, out_ch, hw, 3, out_bits)
    report, sim_out, rtl_out = cosim_core_program(compile_layer(layer, ICE40_SMALL, out_act=out_act), codes)
    report.check(cycle_tolerance=0.05)
    np.testing.assert_array_equal(rtl_out, sim_out)


@pytest.mark.parametrize("mul_cycles", [1, 8])
def test_lut_apply_on_a_decode_core_with_one_alu_lane(mul_cycles):
    """Decode-mode programs never issue LUT_APPLY, but the core runs it (one ALU lane per pass per level, each
    pass alu_mul_cycles clocks with a serial multiplier): a one-hot program (GEMM level sums, LUT_APPLY) on the
    decode core is bit-exact with the simulator on that core. Its cycles are not compared: the model charges
    one clock per level, the serial core four (times alu_mul_cycles)."""
    from vta_ext import isa

    rng = np.random.default_rng(1)
    layer, codes, out_act = _layer(rng, 2, 2, 10, 12, 4, 3, 2)
    onehot = ICE40_SMALL.replace(lut_mode="onehot", acc_buff_bytes=8192, alu_mul_cycles=mul_cycles)
    program = compile_layer(layer, onehot, out_act=out_act)
    assert any(isinstance(i, isa.AluInsn) and i.alu_op == isa.AluOp.LUT_APPLY for i in program.insns)
    report, _, _ = cosim_core(onehot.replace(lut_mode="decode"), program.insns, program.load_input(codes))
    assert report.dram_equal, report.first_difference


def test_soft_multiplier_is_the_signed_product(tmp_path):
    """soft_mul32 (the ALU's multiplier on parts without DSP blocks) against Verilog's signed product."""
    from vta_ext.rtl.simulate import verilog_sources
    from vta_ext.rtl.tools import find_tool, run_bounded

    rng = np.random.default_rng(0)
    edges = [-(1 << 31), (1 << 31) - 1, -1, 0, 1, 3, -3]
    pairs = [(a, b) for a in edges for b in edges] + [tuple(v) for v in rng.integers(-(1 << 31), 1 << 31, (500, 2))]
    checks = "".join(f"        a = {a}; b = {b}; #1; if (p !== a * b) bad = bad + 1;\n" for a, b in pairs)
    (tmp_path / "tb.v").write_text(
        "module tb;\n    reg signed [31:0] a, b;\n    wire signed [63:0] p;\n    integer bad = 0;\n"
        "    soft_mul32 dut (.a(a), .b(b), .p(p));\n    initial begin\n" + checks +
        '        $display("bad %0d", bad);\n    end\nendmodule\n')
    build = run_bounded([find_tool("iverilog"), "-o", "tb", "tb.v", *map(str, verilog_sources("soft_mul32"))],
                        cwd=tmp_path, timeout_s=120)
    assert build.returncode == 0, build.tail()
    run = run_bounded([find_tool("vvp"), "tb"], cwd=tmp_path, timeout_s=120)
    assert "bad 0" in run.stdout, run.tail()


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(lut_mode=st.sampled_from(["decode", "onehot"]), w_bits=st.integers(1, 3), a_bits=st.integers(1, 8),
       in_ch=st.integers(1, 12), out_ch=st.integers(1, 12), hw=st.integers(2, 5), kernel=st.sampled_from([1, 3]),
       out_bits=st.one_of(st.none(), st.integers(1, 8)), seed=st.integers(0, 1000))
def test_drawn_small_layers(lut_mode, w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits, seed):
    _check(lut_mode, w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits, seed)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(w_bits=st.integers(1, 2), a_bits=st.integers(1, 2), in_ch=st.integers(1, 12), out_ch=st.integers(1, 12),
       hw=st.integers(2, 5), kernel=st.sampled_from([1, 3]), out_bits=st.sampled_from([None, 2]),
       seed=st.integers(0, 1000))
def test_drawn_layers_on_the_lane_serial_ice40_core(w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits, seed):
    """The ice40_hx8k preset's core (lane-serial, one-byte DMA, one-entry queues, serial multiplier) on drawn
    layers up to its 2 bits (2-bit outputs: 4 outputs of 1 bit are not a whole byte, which HwConfig refuses): DRAM
    bit-exact, raw accumulators equal to the integer reference, cycles within 5 %."""
    cfg = HwConfig.preset("ice40_hx8k").replace(part=None)
    assert cfg.lane_serial
    _check("decode", w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits, seed, config=cfg)


@pytest.mark.slow
@settings(max_examples=16, deadline=None, suppress_health_check=list(HealthCheck))
@given(lut_mode=st.sampled_from(["decode", "onehot"]), w_bits=st.integers(1, 8), a_bits=st.integers(1, 8),
       in_ch=st.integers(1, 20), out_ch=st.integers(1, 20), hw=st.integers(2, 7), kernel=st.sampled_from([1, 3]),
       out_bits=st.one_of(st.none(), st.integers(1, 8)), seed=st.integers(0, 1000))
def test_drawn_layers_bits_1_to_8(lut_mode, w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits, seed):
    # one-hot keeps 2^w_bits level sums per output: 256 KiB of accumulators hold a 7-wide row at 8 bits
    _check(lut_mode, w_bits, a_bits, in_ch, out_ch, hw, kernel, out_bits, seed, acc_buff_bytes=1 << 18)


def test_a_wrong_dram_byte_is_named(monkeypatch):
    """The comparison can fail: corrupt the simulator's side and the first differing byte is reported."""
    from vta_ext.sim import functional

    rng = np.random.default_rng(5)
    layer, codes, _ = _layer(rng, 2, 2, 8, 8, 3, 1)
    program = compile_layer(layer, _config("decode"))
    real = functional.run_stream

    def corrupted(cfg, insns, dram, state=None):
        out = real(cfg, insns, dram, state)
        dram[-1] ^= 0x5A
        return out

    monkeypatch.setattr(functional, "run_stream", corrupted)
    report, _, _ = cosim_core(program.config, program.insns, program.load_input(codes))
    with pytest.raises(CoreCosimMismatch, match=rf"DRAM byte {program.load_input(codes).size - 1}: core"):
        report.check()


def test_serial_multiplier_on_a_core_with_one_alu_lane_per_output():
    """alu_mul_cycles=4 where the ALU covers the whole vector in one pass (8 lanes for 8 outputs): the same
    DRAM as the simulator, cycles within 5 % of the timing model."""
    rng = np.random.default_rng(7)
    layer, codes, out_act = _layer(rng, 3, 4, 9, 8, 4, 3, 4)
    program = compile_layer(layer, _config("decode").replace(alu_mul_cycles=4), out_act=out_act)
    report, sim_out, rtl_out = cosim_core_program(program, codes)
    report.check(cycle_tolerance=0.05)
    np.testing.assert_array_equal(rtl_out, sim_out)


@pytest.mark.parametrize("mul_cycles", [8, 32])
def test_serial_multiplier_core_matches_the_simulator_and_the_timing_model(mul_cycles):
    """The smallest iCE40 core with its ALU multiplier built serially (HwConfig.alu_mul_cycles): the same DRAM
    bit for bit, and each REQUANT pass costs alu_mul_cycles clocks in the RTL as in the timing model."""

    rng = np.random.default_rng(4)
    layer, codes, out_act = _layer(rng, 2, 2, 10, 12, 5, 3, 2)
    reports = {}
    for cycles in (1, mul_cycles):
        cfg = ICE40_SMALL.replace(alu_mul_cycles=cycles)
        report, sim_out, rtl_out = cosim_core_program(compile_layer(layer, cfg, out_act=out_act), codes)
        report.check(cycle_tolerance=0.05)
        np.testing.assert_array_equal(rtl_out, sim_out)
        reports[cycles] = report
    assert reports[mul_cycles].rtl_cycles > reports[1].rtl_cycles  # the serial clocks are real


def test_serial_multiplier_is_the_signed_product(tmp_path):
    """serial_mul32 at every clock count against Verilog's signed product, edge operands included."""
    from vta_ext.rtl.simulate import verilog_sources
    from vta_ext.rtl.tools import find_tool, run_bounded

    rng = np.random.default_rng(1)
    edges = [-(1 << 31), (1 << 31) - 1, -1, 0, 1, 3, -3]
    pairs = [(a, b) for a in edges for b in edges] + [tuple(v) for v in rng.integers(-(1 << 31), 1 << 31, (100, 2))]
    for clocks in (2, 4, 8, 16, 32):
        checks = "".join(
            f"        a = {a}; b = {b};\n        for (s = 0; s < {clocks}; s = s + 1) begin step = s; #1;\n"
            f"            if (s == {clocks - 1} && p !== a * b) bad = bad + 1; clk = 1; #1; clk = 0; end\n"
            for a, b in pairs)
        (tmp_path / "tb.v").write_text(
            f"module tb;\n    reg clk = 0;\n    reg [{max(clocks.bit_length() - 2, 0)}:0] step;\n"
            "    reg signed [31:0] a, b;\n    wire signed [63:0] p;\n    integer bad = 0, s;\n"
            f"    serial_mul32 #(.CLOCKS({clocks})) dut (.clk(clk), .step(step), .a(a), .b(b), .p(p));\n"
            "    initial begin\n" + checks + '        $display("bad %0d", bad);\n    end\nendmodule\n')
        build = run_bounded([find_tool("iverilog"), "-o", "tb", "tb.v", *map(str, verilog_sources("serial_mul32"))],
                            cwd=tmp_path, timeout_s=120)
        assert build.returncode == 0, build.tail()
        run = run_bounded([find_tool("vvp"), "tb"], cwd=tmp_path, timeout_s=120)
        assert "bad 0" in run.stdout, (clocks, run.tail())


@pytest.mark.parametrize("gemm_out_lanes, w_bits, a_bits, out_bits, seed", [(1, 2, 2, 2, 1), (2, 1, 1, None, 3)])
def test_folded_gemm_matches_the_simulator_and_the_timing_model(gemm_out_lanes, w_bits, a_bits, out_bits, seed):
    """A GEMM array folded over its outputs (HwConfig.gemm_out_lanes, the smallest iCE40 core's 1 column of 8
    lanes) with the serial multiplier: the same DRAM bit for bit, the raw accumulators equal the integer
    reference, and the passes cost the clocks the timing model charges (within 5 %)."""

    rng = np.random.default_rng(seed)
    layer, codes, out_act = _layer(rng, w_bits, a_bits, 10, 12, 5, 3, out_bits)
    reports = {}
    for lanes in (None, gemm_out_lanes):
        cfg = ICE40_SMALL.replace(alu_mul_cycles=8, gemm_out_lanes=lanes)
        program = compile_layer(layer, cfg, out_act=out_act)
        report, sim_out, rtl_out = cosim_core_program(program, codes)
        report.check(cycle_tolerance=0.05)
        np.testing.assert_array_equal(rtl_out, sim_out)
        if out_bits is None:
            p = program.params
            np.testing.assert_array_equal(rtl_out, reference.qconv2d_int_acc(
                codes, layer.weight_idx, p["lut_int"], p["bias_int"], padding=layer.padding))
        reports[lanes] = report
    # the passes' extra clocks in the RTL are the ones the timing model adds
    extra_rtl = reports[gemm_out_lanes].rtl_cycles - reports[None].rtl_cycles
    extra_model = reports[gemm_out_lanes].model_cycles - reports[None].model_cycles
    assert extra_model > 0 and abs(extra_rtl - extra_model) <= 0.05 * extra_model, (extra_rtl, extra_model)


@pytest.mark.parametrize("mul_cycles", [1, 8])
def test_lane_serial_core_runs_every_alu_op_on_loaded_accumulators(mul_cycles):
    """The lane-serial datapath (one GEMM column and one ALU lane on a one-byte port: HwConfig.lane_serial, the
    smallest iCE40 core) on a hand-built stream that compiled layers never issue: accumulators loaded byte by byte
    from DRAM, every ALU op with immediate and vector operands, BIAS and REQUANT from a loaded parameter row,
    LUT_APPLY over four level sums, a GEMM reset, then the raw accumulators stored. The DRAM equals the
    simulator's bit for bit."""
    from vta_ext import isa, layout
    from vta_ext.isa import AluInsn, AluOp, FinishInsn, GemmInsn, MemInsn, MemScope, Opcode, Uop
    cfg = ICE40_SMALL.replace(gemm_out_lanes=1, alu_mul_cycles=mul_cycles)
    assert cfg.lane_serial and cfg.gemm_reset_cycles == cfg.block_out
    rng = np.random.default_rng(mul_cycles)
    n_acc, lanes = 16, cfg.block_out
    acc = rng.integers(-(1 << 11), 1 << 11, (n_acc, lanes))
    acc[3] = [2**31 - 1, 7 - 2**31, -1, 0]  # extremes through MAX / MIN / SHR / REQUANT's saturation
    lut = rng.integers(-128, 128, (lanes, cfg.lut_entries))
    bias = rng.integers(-(1 << 20), 1 << 20, lanes)
    mult = rng.integers(-(1 << 12), 1 << 12, lanes)
    shift = np.array([0, 1, 13, 31])
    uops = [Uop(dst=0, src=4), Uop(dst=1, src=5), Uop(dst=2, src=2), Uop(dst=3, src=6),  # vector operands
            Uop(dst=12, src=1), Uop(dst=13, src=2),  # LUT_APPLY: the level sums in entries 4..7 and 8..11
            Uop(dst=7), Uop(dst=4), Uop(dst=5)]
    uop_base, acc_base, prm_row, store_base = 0, 16, 10, 40  # element indices (8-, 16-, 52- and 16-byte elements)
    dram = np.zeros(1024, dtype=np.uint8)
    dram[:8 * len(uops)] = isa.encode_uops(uops).view(np.uint8)
    dram[acc_base * 16:(acc_base + n_acc) * 16] = layout.pack_vectors(acc, 32).reshape(-1)
    row = layout.pack_params(lut, bias, mult, shift, lanes, cfg.lut_entries)
    dram[prm_row * row.size:(prm_row + 1) * row.size] = row

    def alu(op, bgn, end, **kw):
        return AluInsn(alu_op=op, uop_bgn=bgn, uop_end=end, **kw)

    insns = [MemInsn(opcode=Opcode.LOAD, scope=MemScope.UOP, dram_base=uop_base, x_size=len(uops), x_stride=len(uops)),
             MemInsn(opcode=Opcode.LOAD, scope=MemScope.ACC, dram_base=acc_base, x_size=n_acc, x_stride=n_acc),
             MemInsn(opcode=Opcode.LOAD, scope=MemScope.PRM, dram_base=prm_row, x_size=1, x_stride=1),
             alu(AluOp.ADD, 0, 2), alu(AluOp.ADD, 0, 4, use_imm=True, imm=-7),
             alu(AluOp.MAX, 3, 4), alu(AluOp.MIN, 0, 2, use_imm=True, imm=1000), alu(AluOp.MUL, 2, 3),
             alu(AluOp.SHR, 0, 2, use_imm=True, imm=3), alu(AluOp.SHR, 7, 9, use_imm=True, imm=-2),
             alu(AluOp.SHR, 3, 4, use_imm=True, imm=40), alu(AluOp.MUL, 0, 1, use_imm=True, imm=-3),
             alu(AluOp.BIAS, 0, 3), alu(AluOp.REQUANT, 0, 4), alu(AluOp.LUT_APPLY, 4, 6, w_bits=2),
             GemmInsn(reset=True, uop_bgn=6, uop_end=7, a_bits=2, w_bits=2, push_next=True),
             MemInsn(opcode=Opcode.STORE, scope=MemScope.ACC, elem_bits=32, dram_base=store_base, x_size=n_acc,
                     x_stride=n_acc, pop_prev=True),
             FinishInsn()]
    report, sim_dram, rtl_dram = cosim_core(cfg, insns, dram)
    assert report.dram_equal, report.first_difference
    stored = sim_dram[store_base * 16:(store_base + n_acc) * 16].view("<i4").reshape(n_acc, lanes)
    assert not np.array_equal(stored, acc) and np.all(stored[7] == 0) and np.all(stored[12:14] != acc[12:14])


@pytest.mark.parametrize("in_ch, out_ch, hw", [(8, 4, 2), (32, 8, 2), (8, 8, 4)])
def test_fetch_bound_layers_on_the_ice40_preset_match_the_timing_model(in_ch, out_ch, hw):
    """Small 1x1 layers on the ice40_hx8k core, where fetching the 24-byte instructions one byte per clock through
    one-entry queues is most of the time: the timing model's fetch (sim.timing._Fetch) keeps the cycles within 5 %
    (without it the RTL took 14 % and 22 % more clocks than the model on the first two) and the DRAM is bit-exact."""
    cfg = HwConfig.preset("ice40_hx8k").replace(part=None)
    rng = np.random.default_rng(0)
    layer, codes, out_act = _layer(rng, 2, 2, in_ch, out_ch, hw, 1, 2)
    report, sim_out, rtl_out = cosim_core_program(compile_layer(layer, cfg, out_act=out_act), codes)
    report.check(cycle_tolerance=0.05)
    np.testing.assert_array_equal(rtl_out, sim_out)

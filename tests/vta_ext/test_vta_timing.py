"""Timing model: hand-computed cycles, scaling with b_a and array size, deadlock detection."""

import dataclasses

import numpy as np
import pytest

from tvm_qnn.layer import QnnLayer
from vta_ext.compiler import compile_layer
from vta_ext.config import HwConfig
from vta_ext.isa import AluInsn, FinishInsn, GemmInsn, MemInsn, MemScope, Opcode
from vta_ext.sim.timing import DeadlockError, simulate, simulate_program

TINY = HwConfig(max_w_bits=1, lut_entries=2, lut_mode="decode", dma_latency_cycles=32, dma_bytes_per_cycle=8,
                gemm_pipeline_cycles=4, alu_pipeline_cycles=4)


def dense16(a_bits=2):
    return QnnLayer("d", "dense", np.zeros((16, 16), np.uint8), np.ones((1, 2), np.float32), None, 1, "uniform",
                    a_bits, 1.0, (1, 16))


def test_hand_computed_cycles_of_one_dense_tile():
    report = simulate_program(compile_layer(dense16(), TINY))
    # fetch:   word j (24 B at 8 B/clock) queued at 32 + 3 (j + 1); it can start the clock after: 36, 39, 42, ...
    # compute: LOAD PRM (word 0) 36 + 32 + ceil(16*(2+9) B / 8) = 90; LOAD UOP (2 uops, 16 B) 32 + 2 -> 124
    # load:    LOAD INP (word 1, 16 codes x 2 b = 4 B) 39 + 33 = 72, LOAD WGT (16x16x1 b = 32 B) + 36 -> l2c at 108
    # compute: GEMM reset 4 + 1 (starts at 124) -> 129; GEMM 4 + 1 step x 2 bits -> 135; ALU BIAS 4 + 1 -> 140
    # store:   STORE 16 int32 = 64 B: 140 + 32 + 8 -> 180; FINISH pops its token: 180 + 1 = 181
    assert report.cycles == 181
    assert report.busy == {"load": 33 + 36, "compute": 54 + 34 + 5 + 6 + 5 + 1, "store": 40}
    assert report.dram_read_bytes == 176 + 4 + 32 + 16 and report.dram_write_bytes == 64
    assert report.macs == 256


def conv_layer(c, o, hw, a_bits, w_bits=2):
    rng = np.random.default_rng(0)
    return QnnLayer("c", "conv2d", rng.integers(0, 1 << w_bits, (o, c, 3, 3)).astype(np.uint8),
                    np.ones((1, 1 << w_bits), np.float32), None, w_bits, "uniform", a_bits, 1.0, (1, c, hw, hw),
                    padding=1)


def test_gemm_cycles_scale_with_activation_bits():
    cfg = HwConfig.preset("pynq_z1")
    programs = {a: compile_layer(conv_layer(32, 32, 8, a), cfg) for a in (1, 2, 4, 8)}
    reports = {a: simulate_program(p) for a, p in programs.items()}
    assert programs[1].tiling == dataclasses.replace(programs[8].tiling, est_dma_cycles=programs[1].tiling.est_dma_cycles)
    gemms = [i for i in programs[1].insns if isinstance(i, GemmInsn) and not i.reset and i.uop_end > i.uop_bgn]
    steps = sum(i.iter_out * i.iter_in * (i.uop_end - i.uop_bgn) for i in gemms)
    overhead = {a: reports[a].gemm_cycles - steps * a for a in reports}
    assert len(set(overhead.values())) == 1  # everything but the bit-serial steps is independent of b_a
    # a larger layer whose output stays codes is compute-bound: total time follows b_a
    big = {a: simulate_program(compile_layer(conv_layer(64, 64, 28, a), cfg, out_act=(a, 1.0))) for a in (1, 8)}
    assert big[8].cycles > 6 * big[1].cycles


def test_cycles_scale_with_array_size():
    # cycles only (the 4x core need not fit a part); batch 1 so a batch-1 layer uses every lane
    small = HwConfig.preset("pynq_z1").replace(part=None, batch=1, block_in=2 * HwConfig.preset("pynq_z1").block_in)
    big = small.replace(block_in=2 * small.block_in, block_out=2 * small.block_out, inp_buff_bytes=4 * small.inp_buff_bytes,
                        wgt_buff_bytes=4 * small.wgt_buff_bytes, acc_buff_bytes=2 * small.acc_buff_bytes)
    layer = conv_layer(64, 64, 14, 4)
    r_small, r_big = simulate_program(compile_layer(layer, small)), simulate_program(compile_layer(layer, big))
    assert 3.6 < r_small.gemm_cycles / r_big.gemm_cycles < 4.1  # 4x the lanes, ~4x fewer GEMM cycles
    assert r_small.cycles / r_big.cycles > 2.5


def test_deadlocks_are_reported_not_hung():
    with pytest.raises(DeadlockError, match="compute at instruction 0.*waits for l2c"):
        simulate(TINY, [GemmInsn(pop_prev=True), FinishInsn()])
    program = compile_layer(conv_layer(16, 16, 8, 2), HwConfig.preset("pynq_z1"))
    # drop the token the store module sends back: the compute of the third tile waits forever
    broken = [dataclasses.replace(i, push_prev=False) if isinstance(i, MemInsn) and i.opcode == Opcode.STORE else i
              for i in program.insns]
    if sum(1 for i in program.insns if isinstance(i, GemmInsn) and i.reset) >= 3:
        with pytest.raises(DeadlockError, match="waits for s2c"):
            simulate(program.config, broken)
    else:  # fewer than three accumulator tiles: FINISH still waits for the missing token
        with pytest.raises(DeadlockError, match="s2c"):
            simulate(program.config, broken)


def test_flag_without_a_queue_is_rejected():
    bad = MemInsn(opcode=Opcode.LOAD, scope=MemScope.INP, pop_prev=True)  # the load module has no previous module
    with pytest.raises(Exception, match="no queue on the load module"):
        simulate(TINY, [bad, FinishInsn()])


def test_fewer_alu_lanes_cost_passes_per_alu_step_and_nothing_else():
    """alu_lanes=1 on 16 outputs: every ALU step takes 16 clocks; GEMM, DMA and the outputs do not change."""
    layer = conv_layer(16, 16, 6, 2, w_bits=1)
    full, narrow = TINY, TINY.replace(alu_lanes=1)
    assert (full.alu_passes, narrow.alu_passes) == (1, 16)
    p_full, p_narrow = compile_layer(layer, full, out_act=(2, 1.0)), compile_layer(layer, narrow, out_act=(2, 1.0))
    assert p_full.insns == p_narrow.insns
    r_full, r_narrow = simulate_program(p_full), simulate_program(p_narrow)
    from vta_ext.isa import AluInsn

    alu_steps = sum(i.iter_out * i.iter_in * (i.uop_end - i.uop_bgn) for i in p_full.insns if isinstance(i, AluInsn))
    assert alu_steps > 0 and r_narrow.gemm_cycles == r_full.gemm_cycles
    assert r_narrow.busy["compute"] - r_full.busy["compute"] == alu_steps * 15


def test_a_serial_multiplier_costs_its_clocks_on_mul_and_requant_steps_only():
    """alu_mul_cycles=8 with 4 ALU passes: each REQUANT step takes 4 x 8 clocks instead of 4; BIAS, MIN and MAX
    steps, the GEMM and the program do not change."""
    from vta_ext.isa import AluInsn, AluOp

    layer = conv_layer(16, 16, 6, 2, w_bits=1)
    one, serial = TINY.replace(alu_lanes=4), TINY.replace(alu_lanes=4, alu_mul_cycles=8)
    p_one, p_serial = compile_layer(layer, one, out_act=(2, 1.0)), compile_layer(layer, serial, out_act=(2, 1.0))
    assert p_one.insns == p_serial.insns
    r_one, r_serial = simulate_program(p_one), simulate_program(p_serial)
    steps = {op: sum(i.iter_out * i.iter_in * (i.uop_end - i.uop_bgn) for i in p_one.insns
                     if isinstance(i, AluInsn) and i.alu_op == op) for op in AluOp}
    assert steps[AluOp.REQUANT] > 0 and r_serial.gemm_cycles == r_one.gemm_cycles
    mul_steps = steps[AluOp.REQUANT] + steps[AluOp.MUL]
    assert r_serial.busy["compute"] - r_one.busy["compute"] == mul_steps * one.alu_passes * (8 - 1)


def test_a_folded_gemm_costs_its_passes_on_gemm_steps_only():
    """gemm_out_lanes=4 on 16 outputs: each GEMM step takes 4 passes of a_bits clocks; resets, the ALU, the DMA
    and the program do not change."""
    from vta_ext.isa import GemmInsn

    layer = conv_layer(16, 16, 6, 2, w_bits=1)
    whole, folded = TINY.replace(lut_mode="decode"), TINY.replace(lut_mode="decode", gemm_out_lanes=4)
    assert (whole.gemm_passes, folded.gemm_passes) == (1, 4)
    p_whole, p_folded = compile_layer(layer, whole, out_act=(2, 1.0)), compile_layer(layer, folded, out_act=(2, 1.0))
    assert p_whole.insns == p_folded.insns
    r_whole, r_folded = simulate_program(p_whole), simulate_program(p_folded)
    plane_clocks = sum(i.iter_out * i.iter_in * (i.uop_end - i.uop_bgn) * i.a_bits for i in p_whole.insns
                       if isinstance(i, GemmInsn) and not i.reset)
    assert plane_clocks > 0
    assert r_folded.busy["compute"] - r_whole.busy["compute"] == plane_clocks * (4 - 1)
    assert r_folded.busy["load"] == r_whole.busy["load"] and r_folded.busy["store"] == r_whole.busy["store"]


def test_a_lane_serial_core_costs_block_out_clocks_per_reset_step():
    """One GEMM column and one ALU lane on a one-byte port (HwConfig.lane_serial): a reset writes one lane per
    clock, so each reset step costs block_out clocks; with two ALU lanes (not lane-serial) it costs one."""
    from vta_ext.isa import GemmInsn

    layer = conv_layer(16, 16, 6, 2, w_bits=1)
    base = TINY.replace(dma_bytes_per_cycle=1, gemm_out_lanes=1)
    serial, vector = base.replace(alu_lanes=1), base.replace(alu_lanes=2)
    assert serial.lane_serial and not vector.lane_serial and not base.replace(alu_lanes=1, dma_bytes_per_cycle=2).lane_serial
    assert (serial.gemm_reset_cycles, vector.gemm_reset_cycles) == (16, 1)
    p_serial, p_vector = compile_layer(layer, serial, out_act=(2, 1.0)), compile_layer(layer, vector, out_act=(2, 1.0))
    assert p_serial.insns == p_vector.insns
    reset_steps = sum(i.iter_out * i.iter_in * (i.uop_end - i.uop_bgn) for i in p_serial.insns
                      if isinstance(i, GemmInsn) and i.reset)
    assert reset_steps > 0
    r_serial, r_vector = simulate_program(p_serial), simulate_program(p_vector)
    assert r_serial.gemm_cycles - r_vector.gemm_cycles == reset_steps * (16 - 1)


def test_fetch_streams_instruction_words_and_stalls_on_a_full_queue():
    """No instruction starts before fetch has read its 24-byte word (dma_latency_cycles, then a word per
    ceil(24 / dma_bytes_per_cycle) clocks). A one-byte-port core has one-entry queues (insn_queue_depth 1): a
    word for a module whose queue is full waits in fetch, and every word behind it with it."""
    nops = [AluInsn(uop_bgn=0, uop_end=0)] * 9 + [FinishInsn()]
    for bpc, word in ((1, 24), (8, 3)):
        cfg = TINY.replace(dma_bytes_per_cycle=bpc)
        assert cfg.insn_queue_depth == (1 if bpc == 1 else 64)
        # each no-op starts the clock after its word is queued and takes 1 clock: the stream is fetch-bound
        assert simulate(cfg, nops).cycles == 32 + 10 * word + 2
    one_byte = TINY.replace(dma_bytes_per_cycle=1)
    acc = MemInsn(opcode=Opcode.LOAD, scope=MemScope.ACC, x_size=4, x_stride=4)  # compute module, 32 + 4*64 clocks
    inp = MemInsn(opcode=Opcode.LOAD, scope=MemScope.INP, elem_bits=8, x_size=4, x_stride=4)  # load, 32 + 4*16
    stream = [acc, AluInsn(uop_bgn=0, uop_end=0), AluInsn(uop_bgn=0, uop_end=0), inp, FinishInsn()]
    # the ACC load starts at 57 (word 0 queued at 32 + 24) and ends at 345; the first no-op starts then, and
    # the second no-op's word, which waited in fetch, is queued the clock after (346); the INP load word behind
    # it assembles in the next 24 clocks (queued at 370, starts at 371) and ends at 371 + 32 + 4 * 16 instead
    # of running beside the ACC load
    assert simulate(one_byte, stream).cycles == 371 + 32 + 4 * 16


def test_a_stream_that_stalls_fetch_behind_its_own_producer_deadlocks_on_one_entry_queues():
    """The compute module waits for a token the load module pushes, but the load instruction comes after two
    more compute instructions: with one-entry queues the second waits in fetch behind the blocked first, so the
    load word is never fetched (the hardware hangs; 64-entry queues take the words and the stream runs)."""
    load = MemInsn(opcode=Opcode.LOAD, scope=MemScope.INP, elem_bits=8, x_size=1, x_stride=1, push_next=True)
    stream = [AluInsn(uop_bgn=0, uop_end=0, pop_prev=True), AluInsn(uop_bgn=0, uop_end=0),
              AluInsn(uop_bgn=0, uop_end=0), load, FinishInsn()]
    with pytest.raises(DeadlockError, match=r"load at instruction 3 .* waits for its fetch \(instruction queue depth 1\); "
                                            r"compute at instruction 0 .* waits for l2c"):
        simulate(TINY.replace(dma_bytes_per_cycle=1), stream)
    assert simulate(TINY.replace(dma_bytes_per_cycle=2), stream).cycles > 0

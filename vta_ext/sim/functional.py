"""Functional simulator: executes an instruction stream on numpy SRAM buffers and a DRAM image.

Semantics are those documented in ``vta_ext/isa.py``. Instructions run in program order (the
dependency tokens only reorder work between modules in time, which ``sim/timing.py`` models;
the compiler's tokens make that reordering invisible to the data). Each GEMM/ALU instruction
is executed as one vectorised numpy step over its whole loop nest: all operands are read before
any result is written (the compiler never emits overlapping reads and writes in one
instruction). GEMM products are formed with float64 matrix products, exact because every partial
sum is an integer below 2^53 (asserted).

SRAM state (decoded, not bit-packed): input vectors and weight blocks as small integers, the
accumulator as int64 checked against the int32 range, micro-ops as 64-bit words, parameter rows
as (lut, bias, multiplier, shift). Each access is bounds-checked against the buffer depth *at the
access's bit width* (packing more, lower-bit entries into the same bytes).
"""

from __future__ import annotations

import contextlib

import numpy as np

from tvm_qnn.errors import QnnError, QuantizationError

from .. import layout
from ..isa import AluOp, FinishInsn, GemmInsn, MemInsn, MemScope, Opcode, describe, uop_fields

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
# the widest REQUANT shift: the rounding bit 2^(sh-1) and the shifted 64-bit product stay in range
# (reference.integer_requant_params never emits more; the RTL ALU reads the shift's low 6 bits)
MAX_REQUANT_SHIFT = 62


class SimulationError(QnnError, RuntimeError):
    """An instruction reads or writes outside a buffer, or the stream is malformed."""


class CoreState:
    """SRAM buffers of one core (sized by the config)."""

    def __init__(self, cfg):
        self.cfg = cfg
        b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
        self.inp = np.zeros((cfg.inp_depth(1), b, bi), np.uint8)
        self.wgt = np.zeros((cfg.wgt_depth(1), bo, bi), np.uint8)
        self.acc = np.zeros((cfg.acc_depth, b, bo), np.int64)
        self.uop = np.zeros(cfg.uop_depth, np.uint64)
        e = cfg.lut_entries
        self.prm_lut = np.zeros((cfg.prm_depth, bo, e), np.int64)
        self.prm_bias = np.zeros((cfg.prm_depth, bo), np.int64)
        self.prm_mult = np.zeros((cfg.prm_depth, bo), np.int64)
        self.prm_shift = np.zeros((cfg.prm_depth, bo), np.int64)
        self.loop_cache = {}  # (instruction, micro-op words) -> index arrays: batch groups repeat them
        self.checked = set()  # (instruction, micro-op words) whose indices passed the bounds checks


def _check_range(insn, what, indices, depth):
    indices = np.asarray(indices)
    if indices.size and (indices.min() < 0 or indices.max() >= depth):
        raise SimulationError(f"{describe(insn)}: {what} index {int(indices.max())} is outside the buffer "
                              f"(depth {depth})")


def _dram_elements(insn, dram, elem_bytes):
    """Byte rows of the DRAM elements a 2-D LOAD/STORE touches, and their element indices."""
    rows = insn.dram_base + np.arange(insn.y_size)[:, None] * insn.x_stride + np.arange(insn.x_size)[None, :]
    rows = rows.reshape(-1)
    if rows.size and (rows.max() + 1) * elem_bytes > dram.size:
        raise SimulationError(f"{describe(insn)}: DRAM element {int(rows.max())} x {elem_bytes} B is beyond the "
                              f"image ({dram.size} B)")
    return rows


def _load(state, insn, dram):
    cfg = state.cfg
    scope = insn.scope
    elem_bytes = {MemScope.INP: cfg.inp_vector_bytes(insn.elem_bits) if scope == MemScope.INP else 0,
                  MemScope.WGT: cfg.wgt_block_bytes(insn.elem_bits) if scope == MemScope.WGT else 0,
                  MemScope.ACC: cfg.acc_vector_bytes, MemScope.UOP: 8, MemScope.PRM: cfg.prm_row_bytes}[scope]
    rows = _dram_elements(insn, dram, elem_bytes)
    raw = dram[: (dram.size // elem_bytes) * elem_bytes].reshape(-1, elem_bytes)[rows]
    width = insn.x_pad0 + insn.x_size + insn.x_pad1
    height = insn.y_pad0 + insn.y_size + insn.y_pad1
    n_sram = width * height
    # element positions inside the padded block that come from DRAM (the rest are zeros)
    inner = ((insn.y_pad0 + np.arange(insn.y_size))[:, None] * width + insn.x_pad0 + np.arange(insn.x_size)[None, :])
    inner = insn.sram_base + inner.reshape(-1)
    block = insn.sram_base + np.arange(n_sram)
    if scope == MemScope.INP:
        _check_range(insn, "input", block, cfg.inp_depth(insn.elem_bits))
        values = layout.unpack_vectors(raw, insn.elem_bits, cfg.batch * cfg.block_in)
        state.inp[block] = 0
        state.inp[inner] = values.reshape(-1, cfg.batch, cfg.block_in)
    elif scope == MemScope.WGT:
        _check_range(insn, "weight", block, cfg.wgt_depth(insn.elem_bits))
        values = layout.unpack_vectors(raw, insn.elem_bits, cfg.block_out * cfg.block_in)
        state.wgt[block] = 0
        state.wgt[inner] = values.reshape(-1, cfg.block_out, cfg.block_in)
    elif scope == MemScope.ACC:
        _check_range(insn, "accumulator", block, cfg.acc_depth)
        state.acc[block] = 0
        state.acc[inner] = layout.unpack_vectors(raw, 32, cfg.batch * cfg.block_out).reshape(-1, cfg.batch,
                                                                                             cfg.block_out)
    elif scope == MemScope.UOP:
        _check_range(insn, "micro-op", block, cfg.uop_depth)
        state.uop[block] = 0
        state.uop[inner] = np.ascontiguousarray(raw).view("<u8").reshape(-1)
    elif scope == MemScope.PRM:
        _check_range(insn, "parameter", block, cfg.prm_depth)
        lut, bias, mult, shift = layout.unpack_params(raw, cfg.block_out, cfg.lut_entries)
        for array, values in ((state.prm_lut, lut), (state.prm_bias, bias), (state.prm_mult, mult),
                              (state.prm_shift, shift)):
            array[block] = 0
            array[inner] = values


def _store(state, insn, dram):
    cfg = state.cfg
    if insn.scope != MemScope.ACC:
        raise SimulationError(f"{describe(insn)}: STORE reads the accumulator buffer only (scope ACC)")
    bits = insn.elem_bits
    if bits != 32 and not 1 <= bits <= 8:
        raise SimulationError(f"{describe(insn)}: STORE elem_bits={bits}; expected 1..8 (codes) or 32")
    elem_bytes = cfg.out_vector_bytes(bits)
    rows = _dram_elements(insn, dram, elem_bytes)
    src = insn.sram_base + np.arange(rows.size)
    _check_range(insn, "accumulator", src, cfg.acc_depth)
    values = state.acc[src].reshape(rows.size, -1)
    if bits != 32:
        values = values & ((1 << bits) - 1)  # the store path keeps the low bits (the ALU clamped already)
    packed = layout.pack_vectors(values, bits)
    view = dram[: (dram.size // elem_bytes) * elem_bytes].reshape(-1, elem_bytes)
    view[rows] = packed


def _loop_indices(insn, uop_words):
    """``(dst, src, wgt)`` int64 arrays of shape (iterations, uops) of a GEMM/ALU instruction."""
    dst, src, wgt = uop_fields(uop_words)
    i0 = np.arange(insn.iter_out)[:, None, None]
    i1 = np.arange(insn.iter_in)[None, :, None]
    shape = (insn.iter_out * insn.iter_in, len(dst))
    d = (dst[None, None] + i0 * insn.dst_factor_out + i1 * insn.dst_factor_in).reshape(shape)
    s = (src[None, None] + i0 * insn.src_factor_out + i1 * insn.src_factor_in).reshape(shape)
    w = (wgt[None, None] + i0 * getattr(insn, "wgt_factor_out", 0) + i1 * getattr(insn, "wgt_factor_in", 0))
    return d, s, w.reshape(shape)


def _cached_loop_indices(state, insn, words):
    key = (insn, words.tobytes())
    if key not in state.loop_cache:
        state.loop_cache[key] = _loop_indices(insn, words)
    return state.loop_cache[key]


def _uops(state, insn):
    if insn.uop_end < insn.uop_bgn:
        raise SimulationError(f"{describe(insn)}: uop_end < uop_bgn")
    _check_range(insn, "micro-op", np.arange(insn.uop_bgn, insn.uop_end), state.cfg.uop_depth)
    return state.uop[insn.uop_bgn : insn.uop_end]


def _check_acc(insn, values):
    if values.size and (values.min() < INT32_MIN or values.max() > INT32_MAX):
        raise QuantizationError(f"{describe(insn)}: accumulator overflows int32")


def _gemm(state, insn):
    cfg = state.cfg
    words = _uops(state, insn)
    if insn.iter_out * insn.iter_in * len(words) == 0:
        return  # a pure synchronisation instruction
    dst, src, wgt = _cached_loop_indices(state, insn, words)
    levels = 1 << insn.w_bits
    onehot = cfg.lut_mode == "onehot"
    group = levels if onehot else 1
    key = (insn, words.tobytes())
    if key not in state.checked:  # the indices depend only on (instruction, micro-ops): check them once
        _check_range(insn, "accumulator", (dst + 1) * group - 1, cfg.acc_depth)
        if not insn.reset:
            _check_range(insn, "input", src, cfg.inp_depth(insn.a_bits))
            _check_range(insn, "weight", wgt, cfg.wgt_depth(insn.w_bits))
            if not np.all(wgt == wgt[:1]):
                raise SimulationError(f"{describe(insn)}: weight factors must be 0 (weights are fixed over the loop)")
        state.checked.add(key)
    if insn.reset:
        targets = (dst.reshape(-1, 1) * group + np.arange(group)[None, :]).reshape(-1)
        state.acc[targets] = 0
        return
    inp = (state.inp[src] & ((1 << insn.a_bits) - 1)).astype(np.float64)  # (T, U, b, bi): a_bits planes read
    idx = state.wgt[wgt[0]].astype(np.int64) & (levels - 1)  # (U, bo, bi): weights do not move with the loop
    n_iter, n_uop = dst.shape
    b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
    x = inp.transpose(0, 2, 1, 3).reshape(n_iter * b, n_uop * bi)  # rows (t, b), columns (u, i)
    if onehot:
        planes = (idx[..., None] == np.arange(levels)).astype(np.float64)  # (U, bo, bi, L)
        weights = planes.transpose(0, 2, 1, 3).reshape(n_uop * bi, bo * levels)
    else:
        if not 0 <= insn.lut_row < cfg.prm_depth:
            raise SimulationError(f"{describe(insn)}: lut_row outside the parameter buffer (depth {cfg.prm_depth})")
        lut = state.prm_lut[insn.lut_row][:, :levels]  # (bo, L)
        decoded = np.take_along_axis(lut[None], idx.reshape(n_uop, bo, bi), axis=2)  # (U, bo, bi)
        weights = decoded.transpose(0, 2, 1).reshape(n_uop * bi, bo).astype(np.float64)
    # exactness of the float64 product: |sum| <= U*bi * 255 * 127 << 2^53
    assert n_uop * bi * 255 * 128 < 2**53
    if np.all(dst == dst[:, :1]):  # all uops accumulate into the same vector: one matrix product
        partial = np.rint(x @ weights).astype(np.int64).reshape(n_iter, b, bo * group)
        rows = dst[:, 0]
    else:  # general case: one product per micro-op
        partial = np.concatenate([np.rint(x.reshape(n_iter * b, n_uop, bi)[:, u] @ weights.reshape(
            n_uop, bi, -1)[u]).astype(np.int64).reshape(n_iter, b, -1) for u in range(n_uop)])
        rows = dst.T.reshape(-1)
    if onehot:
        partial = partial.reshape(-1, b, bo, levels).transpose(0, 3, 1, 2).reshape(-1, b, bo)
        rows = (rows[:, None] * levels + np.arange(levels)[None, :]).reshape(-1)
    if np.unique(rows).size == rows.size:  # distinct destinations (what the compiler emits): plain update
        updated = state.acc[rows] + partial
        _check_acc(insn, updated)
        state.acc[rows] = updated
    else:
        np.add.at(state.acc, rows, partial)
        _check_acc(insn, state.acc[np.unique(rows)])


def _alu(state, insn):
    cfg = state.cfg
    words = _uops(state, insn)
    if insn.iter_out * insn.iter_in * len(words) == 0:
        return
    dst, src, row = (a.reshape(-1) for a in _cached_loop_indices(state, insn, words))
    _check_range(insn, "accumulator", dst, cfg.acc_depth)
    acc = state.acc
    op = insn.alu_op
    if op in (AluOp.LUT_APPLY, AluOp.BIAS, AluOp.REQUANT):
        _check_range(insn, "parameter", row, cfg.prm_depth)
    if op == AluOp.LUT_APPLY:
        levels = 1 << insn.w_bits
        _check_range(insn, "accumulator", (src + 1) * levels - 1, cfg.acc_depth)
        sums = acc[(src[:, None] * levels + np.arange(levels)[None, :])]  # (n, L, b, bo)
        lut = state.prm_lut[row][:, :, :levels]  # (n, bo, L)
        result = np.einsum("nqbo,noq->nbo", sums, lut)
    elif op == AluOp.BIAS:
        result = acc[dst] + state.prm_bias[row][:, None, :]
    elif op == AluOp.REQUANT:
        mult, shift = state.prm_mult[row][:, None, :], state.prm_shift[row][:, None, :]
        if shift.size and (shift.min() < 0 or shift.max() > MAX_REQUANT_SHIFT):
            bad = int(shift[(shift < 0) | (shift > MAX_REQUANT_SHIFT)][0])
            raise SimulationError(f"{describe(insn)}: parameter shift {bad} outside 0..{MAX_REQUANT_SHIFT} "
                                  "(a REQUANT shifts the 64-bit product by at most 62)")
        rounding = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
        result = np.clip(np.right_shift(acc[dst] * mult + rounding, shift), INT32_MIN, INT32_MAX)
    else:
        if not insn.use_imm:
            _check_range(insn, "accumulator", src, cfg.acc_depth)
        operand = np.int64(insn.imm) if insn.use_imm else acc[src]
        value = acc[dst]
        result = {AluOp.ADD: lambda: value + operand, AluOp.MIN: lambda: np.minimum(value, operand),
                  AluOp.MAX: lambda: np.maximum(value, operand), AluOp.MUL: lambda: value * operand,
                  AluOp.SHR: lambda: np.where(operand >= 0, value >> np.maximum(operand, 0),
                                              value << np.maximum(-operand, 0))}[op]()
    _check_acc(insn, result)
    acc[dst] = result


def _single_threaded_blas():
    """The GEMM products are small: a multi-threaded BLAS spends 50x their cost on thread hand-off
    (measured on a loaded 2-core machine: 36 ms vs 0.7 ms for 784x144x16). Scoped, not global."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the simulator is only slower
        return contextlib.nullcontext()
    return threadpool_limits(1)


def run_stream(cfg, insns, dram, state=None):
    """Execute ``insns`` on ``dram`` (modified in place); returns the final :class:`CoreState`."""
    with _single_threaded_blas():
        return _run_stream(cfg, insns, dram, state)


def _run_stream(cfg, insns, dram, state=None):
    state = CoreState(cfg) if state is None else state
    for insn in insns:
        if isinstance(insn, MemInsn):
            (_load if insn.opcode == Opcode.LOAD else _store)(state, insn, dram)
        elif isinstance(insn, GemmInsn):
            _gemm(state, insn)
        elif isinstance(insn, FinishInsn):
            return state
        else:
            _alu(state, insn)
    raise SimulationError("instruction stream ended without FINISH")


def run_program(program, act_codes):
    """Run a compiled :class:`~vta_ext.compiler.LayerProgram` on input codes; returns its output."""
    dram = program.load_input(act_codes)
    run_stream(program.config, program.insns, dram)
    return program.read_output(dram)

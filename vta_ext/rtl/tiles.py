"""GEMM tiles through the RTL ``gemm_unit``: the datapath check below the micro-op level.

``run_gemm_tiles`` drives ``tb_gemm_unit`` with ``T`` independent tiles and returns the
accumulator entries the RTL writes back plus the clocks each tile took (b_a).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tvm_qnn.errors import ShapeError
from vta_ext.rtl.params import CoreParams
from vta_ext.rtl.simulate import GEMM_MODULES, check_range, pack_words, run_testbench, unpack_words, write_hex


def run_gemm_tiles(params: CoreParams, act_codes, weight_idx, lut_int, acc_init, a_bits,
                   simulator="iverilog"):
    """Run ``T`` tiles: ``act_codes (T, batch, block_in)``, ``weight_idx (T, block_out, block_in)``,
    ``lut_int (T, block_out, L)`` int8 (for ``bitplane``: the implied levels ``params.bitplane_lut()``), ``acc_init (T, batch, block_out[, levels])`` int32,
    ``a_bits (T,)``. Returns ``(acc (T, ...) int64, cycles (T,) int)``; for ``onehot`` the
    accumulator holds per-level sums ``(T, batch, block_out, levels)``."""
    p = params
    act = check_range("act_codes", act_codes, 0, (1 << p.a_bits) - 1)
    idx = check_range("weight_idx", weight_idx, 0, p.levels - 1)
    bits = check_range("a_bits", np.atleast_1d(a_bits), 1, p.a_bits)
    lut = np.asarray(lut_int, dtype=np.int64)
    if p.weight_mode == "bitplane":  # the implied levels 2q - (L-1), not stored: check, then zero the port
        p.check_lut(lut.reshape(-1, lut.shape[-1]))
        lut = np.zeros_like(lut)
    lut = check_range("lut_int", lut, -128, 127)
    n_tiles = act.shape[0]
    if act.shape != (n_tiles, p.batch, p.block_in) or idx.shape != (n_tiles, p.block_out, p.block_in):
        raise ShapeError(f"tiles: act_codes {act.shape} / weight_idx {idx.shape} do not match "
                         f"batch={p.batch} block_in={p.block_in} block_out={p.block_out}")
    if p.weight_mode != "bitplane":
        p.check_lut(lut.reshape(-1, lut.shape[-1]))
    lut_full = np.zeros((n_tiles, p.block_out, p.levels), dtype=np.int64)
    lut_full[..., : lut.shape[-1]] = lut
    acc_shape = (n_tiles, p.batch, p.block_out) + ((p.levels,) if p.weight_mode == "onehot" else ())
    acc = np.broadcast_to(np.asarray(acc_init, dtype=np.int64), acc_shape)
    bits = np.broadcast_to(bits, (n_tiles,))
    with tempfile.TemporaryDirectory(prefix="qnn_tiles_") as tmp:
        work = Path(tmp)
        files = {
            "act": ([pack_words(t, p.a_bits) for t in act], p.batch * p.block_in * p.a_bits),
            "wgt": ([pack_words(t, p.w_bits) for t in idx], p.block_out * p.block_in * p.w_bits),
            "lut": ([pack_words(t, 8) for t in lut_full], p.block_out * p.levels * 8),
            "acc": ([pack_words(t, 32) for t in acc], p.acc_elems * 32),
            "bits": (bits.tolist(), 4),
        }
        for name, (words, width) in files.items():
            write_hex(work / f"{name}.hex", words, width)
        stdout = run_testbench("tb_gemm_unit", GEMM_MODULES, {**p.verilog(), "N_TILES": n_tiles},
                               {name: work / f"{name}.hex" for name in files}, simulator=simulator,
                               workdir=work)
    out = np.zeros(acc_shape, dtype=np.int64)
    cycles = np.zeros(n_tiles, dtype=np.int64)
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] == "tile":
            t = int(parts[1])
            cycles[t] = int(parts[3])
            out[t] = unpack_words(int(parts[5], 16), p.acc_elems, 32).reshape(acc_shape[1:])
    return out, cycles

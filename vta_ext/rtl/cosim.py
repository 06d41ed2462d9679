"""Co-simulation: one instruction stream through the RTL (``qnn_compute``) and ``vta_ext.sim``.

The stream is walked in program order. The functional simulator executes every instruction;
the RTL executes every GEMM and ALU instruction from its 192-bit ISA encoding (field offsets
generated from ``vta_ext/isa.py``). LOAD and STORE are DMA, not compute: a LOAD becomes host
writes of exactly the buffer entries the simulator's LOAD wrote (so both sides start every
compute instruction from the same SRAM), and a STORE reads the RTL's accumulator entries back,
which are compared with the simulator's at that point, as is the whole accumulator buffer at
the end. Outputs are the RTL's accumulators pushed through the STORE semantics. Cycle counts of
every GEMM/ALU instruction are compared with ``vta_ext.sim.timing.insn_cycles``.

iverilog is the default simulator (see ``simulate.py`` for why not verilator).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvm_qnn.errors import QnnError
from vta_ext import isa
from vta_ext.isa import AluInsn, AluOp, FinishInsn, GemmInsn, MemInsn, MemScope, Opcode
from vta_ext.rtl.params import CoreParams
from vta_ext.rtl.simulate import GEMM_MODULES, pack_words, run_testbench, unpack_words, write_hex
from vta_ext.sim import functional, timing

RTL_PIPELINE_CYCLES = 2  # qnn_compute: the accepting clock and the first step's issue (see its header)
COMPUTE_MODULES = ("qnn_compute", *GEMM_MODULES, "lut_apply", "alu_lanes", "soft_mul32", "serial_mul32")
_WRITE, _INSN, _DUMP = 1, 2, 3
LUT_MODE_PARAM = {"onehot": 1, "decode": 2}


class CosimMismatch(QnnError, AssertionError):
    """RTL and simulator disagree; the message names the first differing element."""


def isa_header() -> str:
    """``isa_fields.vh``: Verilog macros with the bit offset of every GEMM/ALU/LOAD-STORE/micro-op field."""
    lines = ["// generated from vta_ext/isa.py by vta_ext/rtl/cosim.py: do not edit",
             f"`define INSN_BITS {isa.INSN_BITS}"]
    for prefix, cls in (("GEMM", GemmInsn), ("ALU", AluInsn), ("MEM", MemInsn)):
        offset = isa.HEADER_BITS
        for name, bits, _ in cls.FIELDS:
            lines.append(f"`define {prefix}_{name.upper()}_LO {offset}")
            offset += bits
    offset = 0
    for name, bits, _ in isa.Uop.FIELDS:
        lines += [f"`define UOP_{name.upper()}_LO {offset}", f"`define UOP_{name.upper()}_W {bits}"]
        offset += bits
    return "\n".join(lines) + "\n"


def _steps(insn):
    return insn.iter_out * insn.iter_in * max(insn.uop_end - insn.uop_bgn, 0)


def rtl_cycles_expected(insn) -> int:
    """Cycles qnn_compute takes for one GEMM/ALU instruction (its header's formula)."""
    steps = _steps(insn)
    if steps == 0:
        return 1  # the accepting clock only: nothing to issue
    if isinstance(insn, GemmInsn):
        per = 1 if insn.reset else insn.a_bits
    else:
        per = (1 << insn.w_bits) if insn.alu_op == AluOp.LUT_APPLY else 1
    return RTL_PIPELINE_CYCLES + steps * per


@dataclass
class CosimReport:
    """Outcome of one co-simulation (all comparisons already made; see ``mismatches``)."""

    config: str
    n_compute_insns: int
    rtl_cycles: list
    model_cycles: list
    acc_entries_checked: int
    mismatches: list = field(default_factory=list)
    outputs_equal: bool | None = None

    @property
    def cycle_ratio(self) -> float:
        """RTL compute cycles over the timing model's (GEMM + ALU instructions)."""
        return sum(self.rtl_cycles) / max(sum(self.model_cycles), 1)

    def check(self, cycle_tolerance=0.10):
        """Raise CosimMismatch naming the first difference, or a cycle ratio outside tolerance."""
        if self.mismatches:
            raise CosimMismatch(f"[{self.config}] {self.mismatches[0]} ({len(self.mismatches)} mismatches)")
        if abs(self.cycle_ratio - 1.0) > cycle_tolerance:
            raise CosimMismatch(f"[{self.config}] RTL compute cycles {sum(self.rtl_cycles)} vs timing model "
                                f"{sum(self.model_cycles)} (ratio {self.cycle_ratio:.3f}, tolerance {cycle_tolerance})")
        return self


def _sram_block(insn):
    width = insn.x_pad0 + insn.x_size + insn.x_pad1
    height = insn.y_pad0 + insn.y_size + insn.y_pad1
    return insn.sram_base + np.arange(width * height)


class _Encoder:
    """Buffer entries of the simulator's CoreState in the RTL's port layout."""

    def __init__(self, cfg, params: CoreParams):
        self.cfg, self.p = cfg, params

    def entry(self, state, scope, e):
        p, bo = self.p, self.cfg.block_out
        if scope == MemScope.INP:
            return pack_words(state.inp[e], p.a_bits)
        if scope == MemScope.WGT:
            return pack_words(state.wgt[e], p.w_bits)
        if scope == MemScope.ACC:
            return pack_words(state.acc[e], 32)
        if scope == MemScope.UOP:
            return int(state.uop[e])
        lut_w = bo * self.cfg.lut_entries * 8
        return (pack_words(state.prm_lut[e], 8) | pack_words(state.prm_bias[e], 32) << lut_w
                | pack_words(state.prm_mult[e], 32) << (lut_w + bo * 32)
                | pack_words(state.prm_shift[e], 8) << (lut_w + bo * 64))


def stream_core_params(cfg, insns):
    """The smallest core that runs the stream: widest a_bits / w_bits it uses (simulation speed)."""
    insns = [i for i in insns if not isinstance(i, (GemmInsn, AluInsn)) or _steps(i) > 0]  # skip token waits
    # the core stores codes of at most A_BITS (as HwConfig.check_layer_bits allows), so stored code widths count
    a_bits = max([i.a_bits for i in insns if isinstance(i, GemmInsn)]
                 + [i.elem_bits for i in insns if isinstance(i, MemInsn) and i.scope == MemScope.INP]
                 + [i.elem_bits for i in insns if isinstance(i, MemInsn) and i.opcode == Opcode.STORE
                    and i.elem_bits != 32] + [1])
    w_bits = max([i.w_bits for i in insns if isinstance(i, (GemmInsn, AluInsn))]
                 + [i.elem_bits for i in insns if isinstance(i, MemInsn) and i.scope == MemScope.WGT] + [1])
    return CoreParams.from_hw_config(cfg, a_bits=min(a_bits, cfg.max_a_bits), w_bits=min(w_bits, cfg.max_w_bits))


def cosim_stream(cfg, insns, dram, simulator="iverilog", dump_all=True, workdir=None):
    """Run ``insns`` on ``dram`` through both sides; returns ``(CosimReport, sim_dram, rtl_dram)``.

    ``workdir`` keeps the generated header, command file and simulator binary (debugging)."""
    params = stream_core_params(cfg, insns)
    enc = _Encoder(cfg, params)
    state = functional.CoreState(cfg)
    sim_dram, rtl_dram = dram.copy(), dram.copy()
    records, expected, stores, compute = [], [], [], []
    for position, insn in enumerate(insns):
        if isinstance(insn, FinishInsn):
            break
        if isinstance(insn, MemInsn) and insn.opcode == Opcode.STORE:
            entries = insn.sram_base + np.arange(insn.y_size * insn.x_size)
            for e in entries:
                records.append((_DUMP, 0, int(e), 0))
                expected.append((int(e), state.acc[e].copy(), position))
            stores.append((insn, len(expected) - len(entries), len(entries)))
        elif isinstance(insn, (GemmInsn, AluInsn)):
            records.append((_INSN, 0, 0, int.from_bytes(isa.encode(insn), "little")))
            compute.append((position, insn))
        functional.run_stream(cfg, [insn, FinishInsn()], sim_dram, state)
        if isinstance(insn, MemInsn) and insn.opcode == Opcode.LOAD:
            for e in _sram_block(insn):
                records.append((_WRITE, int(insn.scope), int(e), enc.entry(state, insn.scope, int(e))))
    if dump_all:
        for e in range(cfg.acc_depth):
            records.append((_DUMP, 0, e, 0))
            expected.append((e, state.acc[e].copy(), len(insns) - 1))
    widths = [cfg.batch * cfg.block_in * params.a_bits, cfg.block_out * cfg.block_in * params.w_bits,
              cfg.batch * cfg.block_out * 32, cfg.block_out * (cfg.lut_entries * 8 + 72), isa.INSN_BITS, 64]
    wr_w = max(widths)
    vparams = {**{k: v for k, v in params.verilog().items() if k != "WEIGHT_MODE"},
               "LUT_MODE": LUT_MODE_PARAM[cfg.lut_mode], "LUT_ENTRIES": cfg.lut_entries,
               "INP_DEPTH": cfg.inp_depth(1), "WGT_DEPTH": cfg.wgt_depth(1), "ACC_DEPTH": cfg.acc_depth,
               "UOP_DEPTH": cfg.uop_depth, "PRM_DEPTH": cfg.prm_depth, "WR_W": wr_w, "N_RECORDS": len(records)}
    with tempfile.TemporaryDirectory(prefix="qnn_cosim_") as tmp:
        work = Path(workdir or tmp)
        (work / "isa_fields.vh").write_text(isa_header())
        words = [kind | scope << 4 | addr << 8 | payload << 32 for kind, scope, addr, payload in records]
        write_hex(work / "commands.hex", words, wr_w + 32)
        stdout = run_testbench("tb_qnn_compute", COMPUTE_MODULES, vparams, {"commands": work / "commands.hex"},
                               simulator=simulator, workdir=work, include_dirs=[work])
    rtl_cycles, dumps = [], []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "insn":
            rtl_cycles.append(int(parts[3]))
        elif len(parts) == 3 and parts[0] == "acc":
            dumps.append((int(parts[1]), unpack_words(int(parts[2], 16), cfg.batch * cfg.block_out, 32)))
    report = CosimReport(config=cfg.name, n_compute_insns=len(compute), rtl_cycles=rtl_cycles,
                         model_cycles=[timing.insn_cycles(cfg, i) for _, i in compute],
                         acc_entries_checked=len(expected))
    if len(rtl_cycles) != len(compute) or len(dumps) != len(expected):
        report.mismatches.append(f"RTL ran {len(rtl_cycles)}/{len(compute)} instructions and printed "
                                 f"{len(dumps)}/{len(expected)} accumulator entries:\n{stdout[-2000:]}")
        return report, sim_dram, rtl_dram
    for (addr, want, position), (got_addr, got) in zip(expected, dumps):
        want = want.reshape(-1)
        if got_addr != addr or not np.array_equal(got, want):
            k = int(np.argmax(got != want))
            report.mismatches.append(
                f"accumulator entry {addr} (batch {k // cfg.block_out}, out {k % cfg.block_out}): RTL {got[k]} vs "
                f"sim {want[k]}, checked after instruction {position} ({isa.describe(insns[position])})")
    for (position, insn), got, want in zip(compute, rtl_cycles, report.model_cycles):
        if got != rtl_cycles_expected(insn):
            report.mismatches.append(f"instruction {position} ({isa.describe(insn)}): RTL took {got} cycles, "
                                     f"its own formula says {rtl_cycles_expected(insn)}")
    # outputs: the STORE semantics applied to the RTL's accumulator entries
    for insn, first, count in stores:
        rtl_state = functional.CoreState(cfg)
        entries = insn.sram_base + np.arange(count)
        rtl_state.acc[entries] = np.stack([dumps[first + j][1] for j in range(count)]).reshape(
            count, cfg.batch, cfg.block_out)
        functional.run_stream(cfg, [insn, FinishInsn()], rtl_dram, rtl_state)
    return report, sim_dram, rtl_dram


def cosim_program(program, act_codes, simulator="iverilog"):
    """Co-simulate a compiled layer (``vta_ext.compiler.LayerProgram``) on input codes.

    Returns ``(report, sim_output, rtl_output)``; ``report.outputs_equal`` compares the two and a
    mismatch names the first differing output element (n, o, y, x)."""
    dram = program.load_input(act_codes)
    report, sim_dram, rtl_dram = cosim_stream(program.config, program.insns, dram, simulator)
    sim_out, rtl_out = program.read_output(sim_dram), program.read_output(rtl_dram)
    report.outputs_equal = bool(np.array_equal(sim_out, rtl_out))
    if not report.outputs_equal:
        where = tuple(int(v) for v in np.argwhere(sim_out != rtl_out)[0])
        report.mismatches.append(f"output element {where}: RTL {rtl_out[where]} vs sim {sim_out[where]}")
    return report, sim_out, rtl_out


def with_rtl_pipeline(cfg):
    """``cfg`` with the timing model's per-instruction overheads set to the RTL's."""
    return dataclasses.replace(cfg, gemm_pipeline_cycles=RTL_PIPELINE_CYCLES, alu_pipeline_cycles=RTL_PIPELINE_CYCLES)

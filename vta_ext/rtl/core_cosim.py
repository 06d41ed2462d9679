"""Whole-core co-simulation: the compiler's instruction stream and DRAM image through ``qnn_core``.

The core fetches the instruction stream from DRAM (placed after the image, as a host driver
would), runs it with its load / compute / store modules, dependency tokens and DMA engines
against ``dram_model`` (fixed latency ``dma_latency_cycles``, ``dma_bytes_per_cycle`` per beat
on each module's port), and writes back the DRAM. The result is compared byte for byte with the
DRAM after ``vta_ext.sim.functional.run_stream`` on the same image, and the core's cycles (start
to done) with ``vta_ext.sim.timing.simulate``.

iverilog is the default simulator; ``simulator="verilator"`` where speed matters.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvm_qnn.errors import QnnError
from vta_ext import isa
from vta_ext.rtl.cosim import COMPUTE_MODULES, LUT_MODE_PARAM, isa_header, stream_core_params
from vta_ext.rtl.simulate import build_testbench, run_built
from vta_ext.sim import functional, timing

CORE_MODULES = ("qnn_core", "dma_read", "dma_write", "dma_byte_read", "dma_byte_write", "insn_queue", "dram_model",
                *COMPUTE_MODULES)
INSN_ALIGN = 64  # the instruction stream starts at a multiple of this many bytes after the image
_BUILDS = {}  # (simulator, parameters) -> (directory, run command): one build per layer shape per process


class CoreCosimMismatch(QnnError, AssertionError):
    """The whole core's DRAM or cycle count differs from the simulator's; names the first difference."""


def max_elem_bytes(cfg, a_bits=None, w_bits=None):
    """The widest DMA element of the core in bytes (INP/WGT at the widest bits, ACC, UOP, PRM, an instruction)."""
    a_bits, w_bits = a_bits or cfg.max_a_bits, w_bits or cfg.max_w_bits
    return max(cfg.inp_vector_bytes(a_bits), cfg.wgt_block_bytes(w_bits), cfg.acc_vector_bytes, 8,
               cfg.prm_entry_bytes, isa.INSN_BYTES, -(-cfg.batch * cfg.block_in * a_bits // 8),
               -(-cfg.block_out * cfg.block_in * w_bits // 8))


def core_parameters(cfg, a_bits=None, w_bits=None, soft_mul=True):
    """Verilog parameters of ``qnn_core`` for ``cfg`` (buffer depths in entries at the narrowest packing);
    ``a_bits``/``w_bits`` may build the core narrower than the config's maxima (simulation speed).
    ``soft_mul``: the ALU's multipliers built from adders (what a part without DSP blocks synthesizes; the
    co-simulation runs it, the other form is the plain Verilog product)."""
    a_bits, w_bits = a_bits or cfg.max_a_bits, w_bits or cfg.max_w_bits
    maxe = max_elem_bytes(cfg, a_bits, w_bits)
    return {"BATCH": cfg.batch, "BLOCK_IN": cfg.block_in, "BLOCK_OUT": cfg.block_out, "A_BITS": a_bits,
            "W_BITS": w_bits, "LUT_MODE": LUT_MODE_PARAM[cfg.lut_mode], "LUT_ENTRIES": cfg.lut_entries,
            "INP_DEPTH": cfg.inp_depth(1), "WGT_DEPTH": cfg.wgt_depth(1), "ACC_DEPTH": cfg.acc_depth,
            "UOP_DEPTH": cfg.uop_depth, "PRM_DEPTH": cfg.prm_depth, "BPC": cfg.dma_bytes_per_cycle,
            "QDEPTH": cfg.insn_queue_depth, "MAXE": maxe, "WR_W": maxe * 8, "ALU_LANES": cfg.alu_lane_count,
            "SOFT_MUL": int(soft_mul), "MUL_CLOCKS": cfg.alu_mul_cycles,
            "GEMM_LANES": cfg.gemm_out_lane_count, "PRM_BEATS": int(cfg.prm_row_beats)}


def _write_bytes_hex(path, data):
    Path(path).write_text("".join(f"{b:02x}\n" for b in data.tolist()))


def _read_bytes_hex(path, size):
    lines = (line.split("//")[0].strip() for line in Path(path).read_text().splitlines())
    tokens = [t for line in lines for t in line.split() if not t.startswith("@")]
    unknown = [i for i, t in enumerate(tokens[:size]) if not all(c in "0123456789abcdefABCDEF" for c in t)]
    if unknown:
        raise CoreCosimMismatch(f"core wrote unknown (x/z) values to {len(unknown)} DRAM bytes, first at byte "
                                f"{unknown[0]}")
    values = [int(t, 16) for t in tokens]
    if len(values) < size:
        raise CoreCosimMismatch(f"core wrote back {len(values)} DRAM bytes; expected {size}")
    return np.array(values[:size], dtype=np.uint8)


def run_core(cfg, insns, dram, simulator="iverilog", workdir=None, timeout_s=600.0):
    """Run ``insns`` (ending in FINISH) on ``dram`` in the RTL; returns ``(dram after, cycles)``. The core has
    ``cfg.insn_queue_depth`` entries per instruction queue, as synthesized."""
    insns = list(insns)
    n = next((i + 1 for i, insn in enumerate(insns) if isinstance(insn, isa.FinishInsn)), None)
    if n is None:
        raise QnnError("instruction stream has no FINISH: the core would never report done")
    base = -(-dram.size // INSN_ALIGN) * INSN_ALIGN
    stream = np.frombuffer(isa.encode_stream(insns[:n]), dtype=np.uint8)
    image = np.zeros(base + stream.size, dtype=np.uint8)
    image[: dram.size] = dram
    image[base:] = stream
    narrow = stream_core_params(cfg, insns[:n])  # the widest bits the stream uses: a smaller core simulates faster
    params = dict(core_parameters(cfg, a_bits=narrow.a_bits, w_bits=narrow.w_bits),
                  LATENCY=cfg.dma_latency_cycles, DRAM_BYTES=image.size, INSN_BASE=base,
                  INSN_COUNT=n)
    key = (simulator, tuple(sorted(params.items())))
    if key not in _BUILDS or workdir is not None:  # a board runs the same layers again: build each once
        if workdir is not None:
            build = Path(workdir)
        else:
            build = Path(tempfile.mkdtemp(prefix="qnn_core_build_"))
            atexit.register(shutil.rmtree, build, True)
        (build / "isa_fields.vh").write_text(isa_header())
        _BUILDS[key] = (build, build_testbench("tb_qnn_core", CORE_MODULES, params, simulator, build, timeout_s,
                                               include_dirs=[build]))
    build, run_cmd = _BUILDS[key]
    with tempfile.TemporaryDirectory(prefix="qnn_core_") as tmp:
        work = Path(workdir or tmp)
        _write_bytes_hex(work / "dram.hex", image)
        stdout = run_built(run_cmd, {"dram": work / "dram.hex", "dram_out": work / "dram_out.hex"}, build,
                           timeout_s, f"{simulator} run of tb_qnn_core ({cfg.name})")
        lines = [line.split() for line in stdout.splitlines()]
        cycles = next((int(p[1]) for p in lines if len(p) == 2 and p[0] == "cycles"), None)
        if cycles is None:
            raise CoreCosimMismatch(f"[{cfg.name}] the core did not finish:\n{stdout[-1500:]}")
        out = _read_bytes_hex(work / "dram_out.hex", image.size)
    return out[: dram.size], cycles


@dataclass
class CoreReport:
    """Outcome of one whole-core co-simulation."""

    config: str
    rtl_cycles: int
    model_cycles: int
    dram_equal: bool
    first_difference: str = ""

    @property
    def cycle_ratio(self):
        return self.rtl_cycles / max(self.model_cycles, 1)

    def check(self, cycle_tolerance=0.05):
        if not self.dram_equal:
            raise CoreCosimMismatch(f"[{self.config}] {self.first_difference}")
        if abs(self.cycle_ratio - 1.0) > cycle_tolerance:
            raise CoreCosimMismatch(f"[{self.config}] core took {self.rtl_cycles} cycles, timing model "
                                    f"{self.model_cycles} (ratio {self.cycle_ratio:.3f}, tolerance {cycle_tolerance})")
        return self


def cosim_core(cfg, insns, dram, simulator="iverilog", workdir=None):
    """Both sides on the same image: ``(CoreReport, sim_dram, rtl_dram)``."""
    sim_dram = dram.copy()
    functional.run_stream(cfg, insns, sim_dram)
    rtl_dram, cycles = run_core(cfg, insns, dram.copy(), simulator, workdir)
    model = timing.simulate(cfg, insns).cycles
    equal = bool(np.array_equal(sim_dram, rtl_dram))
    first = ""
    if not equal:
        k = int(np.argmax(sim_dram != rtl_dram))
        first = f"DRAM byte {k}: core {rtl_dram[k]:#04x} vs simulator {sim_dram[k]:#04x}"
    return CoreReport(cfg.name, cycles, model, equal, first), sim_dram, rtl_dram


def cosim_core_program(program, act_codes, simulator="iverilog"):
    """A compiled layer on the whole core: ``(CoreReport, sim_output, rtl_output)``."""
    dram = program.load_input(act_codes)
    report, sim_dram, rtl_dram = cosim_core(program.config, program.insns, dram, simulator)
    return report, program.read_output(sim_dram), program.read_output(rtl_dram)

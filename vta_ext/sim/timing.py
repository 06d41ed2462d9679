"""Cycle model of the core: three in-order modules synchronised by dependency tokens.

Each instruction goes to its module (``isa.Insn.module``); a module starts its next instruction
when it is free and every token the instruction pops has been pushed (tokens carry the cycle at
which they were pushed, FIFO per direction). Because modules are in order and token queues
FIFO, resolving the modules in any interleaving gives the same schedule; if at some point no
module can start its next instruction, the stream would hang on hardware: a
:class:`DeadlockError` names each module's blocked instruction and the token it waits for.

Costs (cycles; every constant comes from the ``HwConfig``):

* LOAD / STORE: ``dma_latency_cycles + ceil(bytes / dma_bytes_per_cycle)`` with ``bytes`` the
  DRAM bytes moved (packed at the element's bit width; zero padding costs no DRAM traffic).
* GEMM: ``gemm_pipeline_cycles + iter_out * iter_in * uops * a_bits * cfg.gemm_passes`` (bit-serial:
  one activation plane per cycle; ``gemm_passes`` > 1 on an array folded over its outputs); a
  ``reset`` costs ``cfg.gemm_reset_cycles`` per destination instead (1, or ``block_out`` on the
  lane-serial datapath);
  an instruction with no work (a pure token wait) costs 1.
* ALU: ``alu_pipeline_cycles + iter_out * iter_in * uops * c`` with ``c = 2^w_bits`` for
  ``LUT_APPLY`` (one level per cycle per output lane), ``cfg.alu_passes * cfg.alu_mul_cycles``
  for ``MUL`` and ``REQUANT`` (a serial multiplier holds each pass that many clocks) and
  ``cfg.alu_passes`` for the others (1 unless the core has fewer ALU lanes than output elements).
* FINISH: 1.

No instruction starts before it is fetched: the stream's words arrive one per
``ceil(INSN_BYTES / dma_bytes_per_cycle)`` clocks after ``dma_latency_cycles``, and a word whose
module queue is full (``cfg.insn_queue_depth``: one entry on the one-byte-port cores) holds up
fetch until that module pops (``_Fetch``). On a small layer of the one-byte iCE40 core the fetch
is most of the time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from tvm_qnn.errors import QnnError

from ..isa import INSN_BYTES, AluOp, FinishInsn, GemmInsn, MemInsn, MemScope, Module, Opcode, describe

# token FIFOs by (from module, to module)
_QUEUES = {(Module.LOAD, Module.COMPUTE): "l2c", (Module.COMPUTE, Module.LOAD): "c2l",
           (Module.COMPUTE, Module.STORE): "c2s", (Module.STORE, Module.COMPUTE): "s2c"}
_PREV = {Module.COMPUTE: Module.LOAD, Module.STORE: Module.COMPUTE}
_NEXT = {Module.LOAD: Module.COMPUTE, Module.COMPUTE: Module.STORE}


class DeadlockError(QnnError, RuntimeError):
    """The instruction stream would hang: every module waits for a token that never comes."""


@dataclass
class TimingReport:
    """Cycles of one instruction stream."""

    cycles: int
    busy: dict  # module name -> busy cycles
    gemm_cycles: int
    alu_cycles: int
    dram_read_bytes: int
    dram_write_bytes: int
    n_insns: int
    macs: int = 0  # useful multiply-accumulates (set by the caller that knows the layer)
    a_bits: int = 8
    lanes: int = 1
    clock_mhz: float = 100.0
    leftover_tokens: dict = field(default_factory=dict)

    @property
    def utilisation(self):
        """Useful MACs over what the array could do in ``cycles`` at this ``a_bits``."""
        capacity = self.cycles * self.lanes / self.a_bits
        return self.macs / capacity if capacity else 0.0

    @property
    def latency_us(self):
        return self.cycles / self.clock_mhz

    @property
    def dram_bytes(self):
        return self.dram_read_bytes + self.dram_write_bytes


def mem_bytes(cfg, insn):
    """DRAM bytes a LOAD/STORE moves."""
    scope, bits = insn.scope, insn.elem_bits
    if insn.opcode == Opcode.STORE:
        elem = cfg.out_vector_bytes(bits)
    else:
        elem = {MemScope.INP: lambda: cfg.inp_vector_bytes(bits), MemScope.WGT: lambda: cfg.wgt_block_bytes(bits),
                MemScope.ACC: lambda: cfg.acc_vector_bytes, MemScope.UOP: lambda: 8,
                MemScope.PRM: lambda: cfg.prm_row_bytes}[scope]()
    return insn.y_size * insn.x_size * elem


def insn_cycles(cfg, insn):
    """Cycles one instruction occupies its module (see the module docstring)."""
    if isinstance(insn, MemInsn):
        return cfg.dma_latency_cycles + math.ceil(mem_bytes(cfg, insn) / cfg.dma_bytes_per_cycle)
    if isinstance(insn, FinishInsn):
        return 1
    steps = insn.iter_out * insn.iter_in * max(insn.uop_end - insn.uop_bgn, 0)
    if steps == 0:
        return 1
    if isinstance(insn, GemmInsn):
        return cfg.gemm_pipeline_cycles + steps * (cfg.gemm_reset_cycles if insn.reset else insn.a_bits * cfg.gemm_passes)
    if insn.alu_op == AluOp.LUT_APPLY:
        per_step = 1 << insn.w_bits
    elif insn.alu_op in (AluOp.MUL, AluOp.REQUANT):  # a serial multiplier holds each pass alu_mul_cycles clocks
        per_step = cfg.alu_passes * cfg.alu_mul_cycles
    else:
        per_step = cfg.alu_passes
    return cfg.alu_pipeline_cycles + steps * per_step


def _pops(module, insn):
    """Token queues an instruction pops before it starts."""
    out = []
    if insn.pop_prev:
        out.append(_QUEUES[(_PREV[module], module)] if module in _PREV else None)
    if insn.pop_next:
        out.append(_QUEUES[(_NEXT[module], module)] if module in _NEXT else None)
    return out


def _pushes(module, insn):
    out = []
    if insn.push_prev:
        out.append(_QUEUES[(module, _PREV[module])] if module in _PREV else None)
    if insn.push_next:
        out.append(_QUEUES[(module, _NEXT[module])] if module in _NEXT else None)
    return out


class _Fetch:
    """When each instruction word reaches its module's queue (``pushed``, a clock; the module can start it
    the clock after). Fetch reads the stream in order, ``ceil(INSN_BYTES / dma_bytes_per_cycle)``
    clocks a word after ``dma_latency_cycles``; a word whose queue is full (``insn_queue_depth``
    entries) waits in the fetch register, and the words behind it with it, until the module starts
    the instruction that many places earlier (a queue takes the word the clock after that pop).
    The next word assembles in the fetch register a beat per clock from the clock the one before
    it is taken, so it is queued a word's clocks later at the earliest (bytes the engine's skid
    buffer read ahead while it waited do not enter it faster)."""

    def __init__(self, cfg, insns):
        self.cfg = cfg
        self.word = math.ceil(INSN_BYTES / cfg.dma_bytes_per_cycle)
        self.started = {}  # position -> start clock
        self.times = []  # push clock of each word fetched so far, in stream order
        self.earlier = []  # position of the instruction insn_queue_depth places earlier in the same module
        seen = {m: [] for m in Module}
        for position, insn in enumerate(insns):
            mine = seen[insn.module]
            self.earlier.append(mine[-cfg.insn_queue_depth] if len(mine) >= cfg.insn_queue_depth else None)
            mine.append(position)

    def pushed(self, position):
        """The push clock of word ``position``, or None while a full queue ahead of it has not been popped."""
        while len(self.times) <= position:
            j = len(self.times)
            streamed = self.cfg.dma_latency_cycles + (j + 1) * self.word
            ready = streamed if j == 0 else max(streamed, self.times[-1] + self.word)
            earlier = self.earlier[j]
            if earlier is not None:
                if earlier not in self.started:
                    return None
                ready = max(ready, self.started[earlier] + 1)
            self.times.append(ready)
        return self.times[position]


def simulate(cfg, insns) -> TimingReport:
    """Cycle count of ``insns`` on ``cfg``; raises :class:`DeadlockError` for a stream that would hang."""
    queues = {m: deque() for m in Module}
    for position, insn in enumerate(insns):
        queues[insn.module].append((position, insn))
        if isinstance(insn, FinishInsn):
            break
    tokens = {name: deque() for name in _QUEUES.values()}
    free_at = {m: 0 for m in Module}
    busy = {m: 0 for m in Module}
    gemm = alu = read = write = 0
    for module in Module:
        for position, insn in queues[module]:
            for name in _pops(module, insn) + _pushes(module, insn):
                if name is None:
                    raise QnnError(f"instruction {position} ({describe(insn)}) uses a dependency flag that has no "
                                   f"queue on the {module.name.lower()} module")
    fetch = _Fetch(cfg, insns[:sum(len(q) for q in queues.values())])
    progress = True
    while progress and any(queues.values()):
        progress = False
        for module in Module:
            while queues[module]:
                position, insn = queues[module][0]
                needed = _pops(module, insn)
                if any(len(tokens[name]) < needed.count(name) for name in set(needed)):
                    break
                queued = fetch.pushed(position)
                if queued is None:  # fetch is stalled on a full queue ahead of this word
                    break
                start = max([free_at[module], queued + 1] + [tokens[name].popleft() for name in needed])
                fetch.started[position] = start
                cost = insn_cycles(cfg, insn)
                end = start + cost
                free_at[module], busy[module] = end, busy[module] + cost
                for name in _pushes(module, insn):
                    tokens[name].append(end)
                if isinstance(insn, MemInsn):
                    if insn.opcode == Opcode.STORE:
                        write += mem_bytes(cfg, insn)
                    else:
                        read += mem_bytes(cfg, insn)
                elif isinstance(insn, GemmInsn):
                    gemm += cost
                elif not isinstance(insn, FinishInsn):
                    alu += cost
                queues[module].popleft()
                progress = True
    if any(queues.values()):
        blocked = []
        for module in Module:
            if queues[module]:
                position, insn = queues[module][0]
                waits = [name for name in set(_pops(module, insn)) if len(tokens[name]) < _pops(module, insn).count(name)]
                if not waits:
                    waits = [f"its fetch (instruction queue depth {cfg.insn_queue_depth})"]
                blocked.append(f"{module.name.lower()} at instruction {position} ({describe(insn)}) waits for "
                               f"{'/'.join(waits)}")
        raise DeadlockError("instruction stream deadlocks: " + "; ".join(blocked))
    return TimingReport(cycles=max(free_at.values()), busy={m.name.lower(): busy[m] for m in Module},
                        gemm_cycles=gemm, alu_cycles=alu, dram_read_bytes=read, dram_write_bytes=write,
                        n_insns=len(insns), lanes=cfg.lanes, clock_mhz=cfg.clock_mhz,
                        leftover_tokens={k: len(v) for k, v in tokens.items() if v})


def simulate_program(program) -> TimingReport:
    """Timing of a compiled layer, with its useful MACs for the utilisation figure."""
    report = simulate(program.config, program.insns)
    g = program.geometry
    report.macs = g.n * g.o * g.c * g.kh * g.kw * g.ho * g.wo
    report.a_bits = g.a_bits
    return report

"""Instruction set of the VTA-style core: opcodes, memory scopes, ALU ops, micro-ops, encoding.

Modelled on VTA (``vta/include/vta/hw_spec.h``): three modules — *load*, *compute*, *store* —
each with an instruction queue, synchronised by dependency tokens on four FIFOs
(``load->compute``, ``compute->load``, ``compute->store``, ``store->compute``). Every
instruction carries four flags: ``pop_prev``/``pop_next`` wait for a token from the
previous/next module before it starts, ``push_prev``/``push_next`` send one when it finishes.
Module order: load (prev: none, next: compute), compute (prev: load, next: store), store
(prev: compute, next: none).

Dispatch (VTA's): LOAD of INP/WGT -> load module; LOAD of UOP/ACC/PRM, GEMM, ALU, FINISH ->
compute module; STORE -> store module.

Instructions (each encoded in a fixed ``INSN_BITS = 192``-bit word, LSB first: opcode (3),
the four flags, then the fields of its class in the order listed in ``FIELDS``):

* ``LOAD``/``STORE`` (``MemInsn``): a 2-D DMA between DRAM and one SRAM scope. DRAM side: ``y_size``
  rows of ``x_size`` elements, row pitch ``x_stride``, base ``dram_base``; the SRAM side is
  contiguous from ``sram_base`` and, for a LOAD of INP or WGT (the load module), surrounded by zero
  padding (``y_pad0/y_pad1`` rows, ``x_pad0/x_pad1`` elements per row); the compute module's loads
  (UOP, ACC, PRM) take no padding (refused, so that their DMA engine needs no pad logic). Addresses count
  elements of the scope (an INP element is one ``batch x block_in`` vector packed at ``elem_bits``
  bits; WGT a ``block_out x block_in`` block of ``elem_bits``-bit indices; ACC a ``batch x
  block_out`` int32 vector; a STORE from ACC writes ``elem_bits``-bit codes (or 32 = raw int32); UOP
  one 64-bit micro-op; PRM one parameter row).
* ``GEMM``: for ``i0 < iter_out``, ``i1 < iter_in``, ``u in [uop_bgn, uop_end)``:
  ``acc[dst] += inp[src] . wgt[w]^T`` with ``dst = uop.dst + i0*dst_factor_out + i1*dst_factor_in``
  (same for src and wgt). Bit-serial: each step costs ``a_bits`` cycles. ``reset`` zeroes the
  destination instead. ``lut_mode`` onehot: ``dst`` names a group of ``2^w_bits`` level sums
  ``acc[dst*L + q] += sum_i [w[o,i] == q] inp[b,i]``; decode: ``acc[dst][b,o] += sum_i
  lut[prm=lut_row][o, w[o,i]] * inp[b,i]``.
* ``ALU``: same loop nest (no weights); per micro-op ``dst``/``src`` accumulator vectors and
  ``wgt`` = the parameter row. Ops (``AluOp``): ADD/MIN/MAX/MUL/SHR with ``src`` or the
  immediate; ``LUT_APPLY`` (``acc[dst] = sum_q lut[o,q] * acc[src*L + q]``), ``BIAS``
  (``acc[dst] += bias[o]``), ``REQUANT`` (``acc[dst] = sat32((acc*M[o] + 2^(sh-1)) >> sh[o])``).
* ``FINISH``: ends the stream.

A micro-op is one 64-bit word: ``dst`` (21 bits), ``src`` (22), ``wgt`` (21), LSB first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from tvm_qnn.errors import QnnError

INSN_BITS = 192
INSN_BYTES = INSN_BITS // 8
UOP_BITS = 64
HEADER_BITS = 3 + 4


class IsaError(QnnError, ValueError):
    """An instruction or micro-op field does not fit its encoding, or a word does not decode."""


class Opcode(IntEnum):
    LOAD = 0
    STORE = 1
    GEMM = 2
    ALU = 3
    FINISH = 4


class MemScope(IntEnum):
    UOP = 0
    WGT = 1
    INP = 2
    ACC = 3
    PRM = 4


class AluOp(IntEnum):
    ADD = 0
    MIN = 1
    MAX = 2
    MUL = 3
    SHR = 4
    LUT_APPLY = 5
    BIAS = 6
    REQUANT = 7


class Module(IntEnum):
    LOAD = 0
    COMPUTE = 1
    STORE = 2


def _check_field(cls_name, name, value, bits, signed):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IsaError(f"{cls_name}.{name}={value!r} is not an integer")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= int(value) <= hi:
        raise IsaError(f"{cls_name}.{name}={int(value)} does not fit its {bits}-bit field ({lo}..{hi})")


@dataclass(frozen=True)
class _Insn:
    """Common header: the four dependency flags."""

    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False

    FIELDS = ()  # (name, bits, signed), encoded in this order after the header

    def __post_init__(self):
        for flag in ("pop_prev", "pop_next", "push_prev", "push_next"):
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        for name, bits, signed in self.FIELDS:
            value = getattr(self, name)
            _check_field(type(self).__name__, name, value, bits, signed)
            object.__setattr__(self, name, int(value))

    @property
    def module(self) -> Module:
        raise NotImplementedError

    def flags(self):
        return (self.pop_prev, self.pop_next, self.push_prev, self.push_next)


@dataclass(frozen=True)
class MemInsn(_Insn):
    opcode: Opcode = Opcode.LOAD
    scope: MemScope = MemScope.INP
    elem_bits: int = 8
    sram_base: int = 0
    dram_base: int = 0
    y_size: int = 1
    x_size: int = 1
    x_stride: int = 1
    y_pad0: int = 0
    y_pad1: int = 0
    x_pad0: int = 0
    x_pad1: int = 0

    FIELDS = (("scope", 3, False), ("elem_bits", 6, False), ("sram_base", 22, False), ("dram_base", 32, False),
              ("y_size", 16, False), ("x_size", 16, False), ("x_stride", 16, False), ("y_pad0", 4, False),
              ("y_pad1", 4, False), ("x_pad0", 4, False), ("x_pad1", 4, False))

    def __post_init__(self):
        if self.opcode not in (Opcode.LOAD, Opcode.STORE):
            raise IsaError(f"MemInsn.opcode={self.opcode!r}; expected LOAD or STORE")
        object.__setattr__(self, "opcode", Opcode(self.opcode))
        super().__post_init__()
        if self.scope not in MemScope.__members__.values():
            raise IsaError(f"MemInsn.scope={self.scope}; expected one of {[s.name for s in MemScope]}")
        object.__setattr__(self, "scope", MemScope(self.scope))
        if self.opcode == Opcode.LOAD and self.scope not in (MemScope.INP, MemScope.WGT):
            for name in ("y_pad0", "y_pad1", "x_pad0", "x_pad1"):
                if getattr(self, name):
                    raise IsaError(f"MemInsn.{name}={getattr(self, name)} on a {self.scope.name} load: only INP and "
                                   f"WGT loads are padded (the compute module's loads take no padding)")

    @property
    def module(self):
        if self.opcode == Opcode.STORE:
            return Module.STORE
        return Module.LOAD if self.scope in (MemScope.INP, MemScope.WGT) else Module.COMPUTE


@dataclass(frozen=True)
class GemmInsn(_Insn):
    reset: bool = False
    a_bits: int = 8
    w_bits: int = 8
    lut_row: int = 0
    uop_bgn: int = 0
    uop_end: int = 1
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    wgt_factor_out: int = 0
    wgt_factor_in: int = 0

    opcode = Opcode.GEMM
    FIELDS = (("reset", 1, False), ("a_bits", 4, False), ("w_bits", 4, False), ("lut_row", 16, False),
              ("uop_bgn", 16, False), ("uop_end", 17, False), ("iter_out", 14, False), ("iter_in", 14, False),
              ("dst_factor_out", 16, False), ("dst_factor_in", 16, False), ("src_factor_out", 16, False),
              ("src_factor_in", 16, False), ("wgt_factor_out", 16, False), ("wgt_factor_in", 16, False))

    def __post_init__(self):
        object.__setattr__(self, "reset", int(bool(self.reset)))
        super().__post_init__()

    @property
    def module(self):
        return Module.COMPUTE


@dataclass(frozen=True)
class AluInsn(_Insn):
    alu_op: AluOp = AluOp.ADD
    use_imm: bool = False
    imm: int = 0
    w_bits: int = 1
    uop_bgn: int = 0
    uop_end: int = 1
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0

    opcode = Opcode.ALU
    FIELDS = (("alu_op", 4, False), ("use_imm", 1, False), ("imm", 32, True), ("w_bits", 4, False),
              ("uop_bgn", 16, False), ("uop_end", 17, False), ("iter_out", 14, False), ("iter_in", 14, False),
              ("dst_factor_out", 16, False), ("dst_factor_in", 16, False), ("src_factor_out", 16, False),
              ("src_factor_in", 16, False))

    def __post_init__(self):
        object.__setattr__(self, "use_imm", int(bool(self.use_imm)))
        super().__post_init__()
        if self.alu_op not in AluOp.__members__.values():
            raise IsaError(f"AluInsn.alu_op={self.alu_op}; expected one of {[a.name for a in AluOp]}")
        object.__setattr__(self, "alu_op", AluOp(self.alu_op))

    @property
    def module(self):
        return Module.COMPUTE


@dataclass(frozen=True)
class FinishInsn(_Insn):
    opcode = Opcode.FINISH

    @property
    def module(self):
        return Module.COMPUTE


_CLASS_OF = {Opcode.LOAD: MemInsn, Opcode.STORE: MemInsn, Opcode.GEMM: GemmInsn, Opcode.ALU: AluInsn,
             Opcode.FINISH: FinishInsn}

for _cls in (MemInsn, GemmInsn, AluInsn, FinishInsn):
    assert HEADER_BITS + sum(bits for _, bits, _ in _cls.FIELDS) <= INSN_BITS, _cls


@dataclass(frozen=True)
class Uop:
    """One micro-op: accumulator ``dst``, input ``src`` and weight (or parameter row) ``wgt`` indices."""

    dst: int = 0
    src: int = 0
    wgt: int = 0

    FIELDS = (("dst", 21, False), ("src", 22, False), ("wgt", 21, False))

    def __post_init__(self):
        for name, bits, signed in self.FIELDS:
            _check_field("Uop", name, getattr(self, name), bits, signed)
            object.__setattr__(self, name, int(getattr(self, name)))


# --------------------------------------------------------------------------- encoding
def _pack(fields_and_values):
    word, offset = 0, 0
    for value, bits, signed in fields_and_values:
        word |= (int(value) & ((1 << bits) - 1)) << offset
        offset += bits
    return word


def encode(insn) -> bytes:
    """One instruction as ``INSN_BYTES`` little-endian bytes."""
    opcode = insn.opcode
    items = [(int(opcode), 3, False)] + [(int(f), 1, False) for f in insn.flags()]
    items += [(getattr(insn, name), bits, signed) for name, bits, signed in insn.FIELDS]
    return _pack(items).to_bytes(INSN_BYTES, "little")


def decode(word: bytes):
    """Inverse of :func:`encode`."""
    if len(word) != INSN_BYTES:
        raise IsaError(f"instruction word has {len(word)} bytes; expected {INSN_BYTES}")
    value = int.from_bytes(word, "little")
    opcode_value = value & 0b111
    if opcode_value not in _CLASS_OF:
        raise IsaError(f"unknown opcode {opcode_value}; known: {[o.name for o in Opcode]}")
    opcode = Opcode(opcode_value)
    cls = _CLASS_OF[opcode]
    flags = [(value >> (3 + i)) & 1 for i in range(4)]
    kwargs = dict(zip(("pop_prev", "pop_next", "push_prev", "push_next"), map(bool, flags)))
    offset = HEADER_BITS
    for name, bits, signed in cls.FIELDS:
        raw = (value >> offset) & ((1 << bits) - 1)
        if signed and raw >= 1 << (bits - 1):
            raw -= 1 << bits
        kwargs[name] = raw
        offset += bits
    if cls is MemInsn:
        kwargs["opcode"] = opcode
        if kwargs["scope"] not in MemScope.__members__.values():
            raise IsaError(f"unknown memory scope {kwargs['scope']} in a {opcode.name} word")
    if cls is AluInsn and kwargs["alu_op"] not in AluOp.__members__.values():
        raise IsaError(f"unknown ALU op {kwargs['alu_op']} in an ALU word")
    return cls(**kwargs)


def encode_uop(uop: Uop) -> int:
    return _pack([(getattr(uop, n), b, s) for n, b, s in Uop.FIELDS])


def decode_uop(word: int) -> Uop:
    word, kwargs, offset = int(word), {}, 0
    for name, bits, _ in Uop.FIELDS:
        kwargs[name] = (word >> offset) & ((1 << bits) - 1)
        offset += bits
    return Uop(**kwargs)


def encode_stream(insns) -> bytes:
    return b"".join(encode(i) for i in insns)


def decode_stream(blob: bytes):
    if len(blob) % INSN_BYTES:
        raise IsaError(f"instruction stream of {len(blob)} bytes is not a multiple of {INSN_BYTES}")
    return [decode(blob[i : i + INSN_BYTES]) for i in range(0, len(blob), INSN_BYTES)]


def encode_uops(uops) -> np.ndarray:
    """Micro-ops as a uint64 array (the DRAM image the UOP loads read)."""
    return np.array([encode_uop(u) for u in uops], dtype=np.uint64)


def uop_fields(words: np.ndarray):
    """Vectorised decode of uint64 micro-op words into ``(dst, src, wgt)`` int64 arrays."""
    words = np.asarray(words, dtype=np.uint64)
    out, offset = [], 0
    for _, bits, _ in Uop.FIELDS:
        out.append(((words >> np.uint64(offset)) & np.uint64((1 << bits) - 1)).astype(np.int64))
        offset += bits
    return tuple(out)


def describe(insn) -> str:
    """One readable line per instruction (for dumps and error messages)."""
    name = insn.opcode.name if not isinstance(insn, MemInsn) else f"{insn.opcode.name} {insn.scope.name}"
    flags = "".join(c if f else "-" for c, f in zip("PpUu", insn.flags()))
    fields = " ".join(f"{n}={getattr(insn, n)}" for n, _, _ in insn.FIELDS if n != "scope")
    return f"{name:<10} [{flags}] {fields}"


def field_ranges(cls):
    """``{name: (lo, hi)}`` of an instruction class's fields (used by the round-trip tests)."""
    return {n: ((-(1 << (b - 1)), (1 << (b - 1)) - 1) if s else (0, (1 << b) - 1)) for n, b, s in cls.FIELDS}


__all__ = ["Opcode", "MemScope", "AluOp", "Module", "MemInsn", "GemmInsn", "AluInsn", "FinishInsn", "Uop",
           "encode", "decode", "encode_uop", "decode_uop", "encode_stream", "decode_stream", "encode_uops",
           "uop_fields", "describe", "field_ranges", "IsaError", "INSN_BITS", "INSN_BYTES", "UOP_BITS"]

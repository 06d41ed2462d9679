"""ISA: encode/decode round trip over every field (hypothesis), range errors, stream helpers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vta_ext import isa
from vta_ext.isa import AluInsn, AluOp, FinishInsn, GemmInsn, IsaError, MemInsn, MemScope, Opcode, Uop

FLAGS = dict(pop_prev=st.booleans(), pop_next=st.booleans(), push_prev=st.booleans(), push_next=st.booleans())


def _fields(cls, **overrides):
    ranges = isa.field_ranges(cls)
    strategies = {name: st.integers(lo, hi) for name, (lo, hi) in ranges.items()}
    strategies.update(FLAGS)
    strategies.update(overrides)
    return st.builds(cls, **strategies)


_COMPUTE_SCOPES = [MemScope.UOP, MemScope.ACC, MemScope.PRM]  # loaded by the compute module: never padded
mem_insns = st.one_of(
    _fields(MemInsn, opcode=st.just(Opcode.LOAD), scope=st.sampled_from([MemScope.INP, MemScope.WGT])),
    _fields(MemInsn, opcode=st.just(Opcode.STORE), scope=st.sampled_from(list(MemScope))),
    _fields(MemInsn, opcode=st.just(Opcode.LOAD), scope=st.sampled_from(_COMPUTE_SCOPES),
            **{name: st.just(0) for name in ("y_pad0", "y_pad1", "x_pad0", "x_pad1")}))
gemm_insns = _fields(GemmInsn, reset=st.booleans())
alu_insns = _fields(AluInsn, alu_op=st.sampled_from(list(AluOp)), use_imm=st.booleans())
finish_insns = st.builds(FinishInsn, **FLAGS)


@given(st.one_of(mem_insns, gemm_insns, alu_insns, finish_insns))
def test_round_trip(insn):
    word = isa.encode(insn)
    assert len(word) == isa.INSN_BYTES
    assert isa.decode(word) == insn


@given(st.lists(st.one_of(mem_insns, gemm_insns, alu_insns), max_size=8))
def test_stream_round_trip(insns):
    assert isa.decode_stream(isa.encode_stream(insns)) == insns


@given(st.integers(0, 2**21 - 1), st.integers(0, 2**22 - 1), st.integers(0, 2**21 - 1))
def test_uop_round_trip(dst, src, wgt):
    uop = Uop(dst, src, wgt)
    assert isa.decode_uop(isa.encode_uop(uop)) == uop
    assert [int(a[0]) for a in isa.uop_fields(isa.encode_uops([uop]))] == [dst, src, wgt]


def test_extreme_values_keep_their_sign_and_width():
    insn = AluInsn(alu_op=AluOp.MIN, use_imm=True, imm=-(2**31))
    assert isa.decode(isa.encode(insn)).imm == -(2**31)
    mem = MemInsn(opcode=Opcode.STORE, scope=MemScope.ACC, dram_base=2**32 - 1, x_pad1=15)
    assert isa.decode(isa.encode(mem)) == mem


@pytest.mark.parametrize("make,field", [
    (lambda: GemmInsn(iter_out=2**14), "iter_out"),
    (lambda: MemInsn(y_pad0=16), "y_pad0"),
    (lambda: MemInsn(scope=MemScope.ACC, x_pad1=1), "x_pad1.*ACC load"),
    (lambda: MemInsn(scope=MemScope.PRM, y_pad0=2), "y_pad0.*PRM load"),
    (lambda: AluInsn(imm=2**31), "imm"),
    (lambda: Uop(dst=2**21), "dst"),
    (lambda: MemInsn(sram_base=-1), "sram_base"),
])
def test_field_out_of_range_is_named(make, field):
    with pytest.raises(IsaError, match=field):
        make()


def test_bad_words():
    with pytest.raises(IsaError, match="unknown opcode 7"):
        isa.decode((7).to_bytes(isa.INSN_BYTES, "little"))
    with pytest.raises(IsaError, match="bytes"):
        isa.decode(b"\x00" * 3)
    with pytest.raises(IsaError, match="multiple"):
        isa.decode_stream(b"\x00" * (isa.INSN_BYTES + 1))


def test_dispatch_modules():
    assert MemInsn(opcode=Opcode.LOAD, scope=MemScope.INP).module == isa.Module.LOAD
    assert MemInsn(opcode=Opcode.LOAD, scope=MemScope.UOP).module == isa.Module.COMPUTE
    assert MemInsn(opcode=Opcode.STORE, scope=MemScope.ACC).module == isa.Module.STORE
    assert GemmInsn().module == AluInsn().module == FinishInsn().module == isa.Module.COMPUTE
    assert np.dtype(np.uint64).itemsize * 8 == isa.UOP_BITS

"""The ``dot_16x4`` VNNI tensor intrinsic, registered here (one place for two TVM problems).

TVM 0.27 ships it as ``tvm.s_tir.tensor_intrin.x86.dot_16x4_vnni``: description
``C[i] += int32(A[k]) * int32(B[i, k])`` over ``A`` (4,) uint8, ``B`` (16, 4) int8, ``C`` (16,)
int32, implemented by one ``llvm.x86.avx512.vpdpbusd.512``. It cannot be used as shipped:

1. its implementation passes the byte operands as ``<16 x i32>``, the intrinsic's signature up to
   LLVM 21; LLVM 22 (the LLVM in the ``apache-tvm==0.27.0.post1`` wheel,
   ``tvm.target.codegen.llvm_version_major()``) declares them ``<64 x i8>``
   (llvm/llvm-project#155194, "Fix VPDPBUSD Argument Types") and LLVM's verifier rejects the
   module ("Call parameter type does not match function signature");
2. importing ``tvm.s_tir.tensor_intrin.x86`` runs the package's ``__init__``, which parses and
   registers every target's intrinsics (CUDA, ARM, ROCm, Hexagon, RISC-V): ~100 CPU-seconds per
   process here (measured: 97 s user time), paid by every compile that builds an int8 kernel.

So the same description and a ``vpdpbusd`` implementation with the operand types of the LLVM at
hand are registered under :data:`INTRIN_NAME` on first use. Same instruction, same semantics
(``vpdpbusd`` reads the first byte operand as unsigned, the second as signed, whatever the IR
type says); the kernel's assembly is checked for ``vpdpbusd`` in the tests.

CPUs with AVX2 but no AVX-512 VNNI (Zen 3, Intel client cores before Ice Lake) get the same
description under :data:`AVX2_INTRIN_NAME`, implemented by the instruction pair int8 libraries
use there: ``vpmaddubsw`` (u8 x s8 products, adjacent pairs summed into *saturating* s16 lanes)
then ``vpmaddwd`` with ones (adjacent s16 pairs into s32), two 256-bit halves for the 16 lanes.
It equals the description only while no pair sum leaves int16: ``2 * max(a) * max|b| <= 32767``,
which holds for any int8 weight when the codes are below 128 (``a_bits <= 7``,
:data:`AVX2_MAX_A_BITS`). 8-bit codes are split, ``a = 2 h + l`` with ``h = a >> 1 <= 127`` and
``l = a & 1``: one ``vpmaddubsw`` per part (neither saturates), the high part's pair sums doubled
by ``vpmaddwd`` with twos (:data:`AVX2_SPLIT_INTRIN_NAME`), exact for every u8 code at twice the
instructions.

When the weights are small enough that every int16 pair lane's whole sum fits (``max(a) * sum|b|``
over the products that lane sums is at most 32767, :data:`INT16_SUM_LIMIT`, as at 2-4 bit codes and
weights), the AVX2 kernel keeps the ``vpmaddubsw`` pair sums in int16 accumulators across the
whole reduction (``vpaddw``) and widens them to int32 once per output, after it
(:data:`AVX2_PAIRS_INTRIN_NAME`, description ``C[i, p] += A[2p + j] * B[i, 2p + j]`` in int16): one
multiply instruction per 32 products instead of two, since ``vpmaddwd`` shares the multiply
pipes. No partial sum can leave int16 then, so no ``vpmaddubsw`` saturates and the int16 wraparound
of the description never happens.
"""

from __future__ import annotations

import functools

LLVM_BYTE_OPERANDS = 22  # first LLVM major version whose vpdpbusd takes <64 x i8> operands
INTRIN_NAME = "qnn_dot_16x4_vnni"
AVX2_INTRIN_NAME = "qnn_dot_16x4_avx2"
AVX2_SPLIT_INTRIN_NAME = "qnn_dot_16x4_avx2_split"  # 8-bit codes, as two vpmaddubsw
AVX2_PAIRS_INTRIN_NAME = "qnn_dot_16x4_avx2_pairs16"  # int16 pair sums accumulated, widened after
AVX2_WIDEN_INTRIN_NAME = "qnn_widen_pairs_16_avx2"  # a channel's two int16 pair sums into one int32
AVX2_MAX_A_BITS = 7  # 2 * 127 * 128 = 32512 fits a vpmaddubsw int16 lane; 2 * 255 * 128 does not
INT16_SUM_LIMIT = 32767  # the largest |sum| an int16 pair accumulator may reach


def _description():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for lane, k in T.grid(16, 4):
                with T.sblock("update"):
                    vl, vk = T.axis.remap("SR", [lane, k])
                    c[vl] = c[vl] + T.cast(a[vk], "int32") * T.cast(b[vl, vk], "int32")

    return desc


def _implementation(byte_dtype):
    """``vpdpbusd`` with the byte operands typed ``byte_dtype`` ("int8x64" or "int32x16")."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            four_codes = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")  # one dword, broadcast below
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                c.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(four_codes, 16), dtype=byte_dtype),
                T.reinterpret(b.vload([0, 0], dtype="int8x64"), dtype=byte_dtype),
                dtype="int32x16")

    return impl


@functools.lru_cache(maxsize=None)
def vnni_intrin_name() -> str:
    """Name of the registered ``TensorIntrin`` (registered on the first call)."""
    from tvm.s_tir import TensorIntrin
    from tvm.target.codegen import llvm_version_major

    byte_dtype = "int8x64" if llvm_version_major() >= LLVM_BYTE_OPERANDS else "int32x16"
    TensorIntrin.register(INTRIN_NAME, _description(), _implementation(byte_dtype), override=True)
    return INTRIN_NAME


def _avx2_implementation(split):
    """``vpmaddubsw`` + ``vpmaddwd`` on each 8-lane half (lanes 0-7, then 8-15); ``split``: 8-bit codes
    ``a = 2 (a >> 1) + (a & 1)``, a ``vpmaddubsw`` per part and the high part doubled in ``vpmaddwd``."""
    from tvm.script import tirx as T

    madd_bytes = "llvm.x86.avx2.pmadd.ub.sw"  # u8 x s8, adjacent pairs into saturating s16
    madd_words = "llvm.x86.avx2.pmadd.wd"  # s16 x s16, adjacent pairs into s32

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            four_codes = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            ones = T.broadcast(T.int16(1), 16)
            for half in T.unroll(2):
                weights = b.vload([half * 8, 0], dtype="int8x32")
                if split:
                    high = T.reinterpret(T.broadcast(T.bitwise_and(T.shift_right(four_codes, 1), 0x7F7F7F7F), 8),
                                         dtype="int8x32")
                    low = T.reinterpret(T.broadcast(T.bitwise_and(four_codes, 0x01010101), 8), dtype="int8x32")
                    c[T.ramp(half * 8, 1, 8)] = (
                        c.vload([half * 8], dtype="int32x8")
                        + T.call_llvm_pure_intrin(
                            T.llvm_lookup_intrinsic_id(madd_words),
                            T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(madd_bytes), high, weights,
                                                    dtype="int16x16"),
                            T.broadcast(T.int16(2), 16), dtype="int32x8")
                        + T.call_llvm_pure_intrin(
                            T.llvm_lookup_intrinsic_id(madd_words),
                            T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(madd_bytes), low, weights,
                                                    dtype="int16x16"),
                            ones, dtype="int32x8"))
                else:
                    codes = T.reinterpret(T.broadcast(four_codes, 8), dtype="int8x32")
                    c[T.ramp(half * 8, 1, 8)] = c.vload([half * 8], dtype="int32x8") + T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id(madd_words),
                        T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(madd_bytes), codes, weights,
                                                dtype="int16x16"),
                        ones, dtype="int32x8")

    return impl


@functools.lru_cache(maxsize=None)
def avx2_intrin_name(split=False) -> str:
    """Name of the registered AVX2 ``TensorIntrin`` (registered on the first call); ``split``: the
    8-bit-code variant."""
    from tvm.s_tir import TensorIntrin

    name = AVX2_SPLIT_INTRIN_NAME if split else AVX2_INTRIN_NAME
    TensorIntrin.register(name, _description(), _avx2_implementation(split), override=True)
    return name


def _pairs_description():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16, 2), "int16", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16, 0:2], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16, 0:2])
            for lane, pair, k in T.grid(16, 2, 2):
                with T.sblock("update"):
                    vl, vp, vk = T.axis.remap("SSR", [lane, pair, k])
                    c[vl, vp] = c[vl, vp] + T.cast(a[vp * 2 + vk], "int16") * T.cast(b[vl, vp * 2 + vk], "int16")

    return desc


def _avx2_pairs_implementation():
    """``vpmaddubsw`` + ``vpaddw`` on each 8-lane half: ``c[i, p]`` is int16 lane ``2 i + p``, the
    order in which ``vpmaddubsw`` writes the pair sums of ``(lane, 4 products)`` rows."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16, 2), "int16", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16, 0:2], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16, 0:2])
            lanes = T.decl_buffer((32,), "int16", data=c.data, elem_offset=c.elem_offset)
            codes = T.reinterpret(T.broadcast(T.reinterpret(a.vload([0], "uint8x4"), dtype="int32"), 8),
                                  dtype="int8x32")
            for half in T.unroll(2):
                lanes[T.ramp(half * 16, 1, 16)] = lanes.vload([half * 16], dtype="int16x16") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"), codes,
                    b.vload([half * 8, 0], dtype="int8x32"), dtype="int16x16")

    return impl


@functools.lru_cache(maxsize=None)
def avx2_pairs_intrin_name() -> str:
    """Name of the registered int16-pair-sum AVX2 ``TensorIntrin`` (registered on the first call)."""
    from tvm.s_tir import TensorIntrin

    TensorIntrin.register(AVX2_PAIRS_INTRIN_NAME, _pairs_description(), _avx2_pairs_implementation(), override=True)
    return AVX2_PAIRS_INTRIN_NAME


def _widen_description():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((16, 2), "int16", offset_factor=1, scope="local"),
             c: T.Buffer((16,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(a[0:16, 0:2])
            T.writes(c[0:16])
            for lane in T.serial(16):
                with T.sblock("widen"):
                    vl = T.axis.spatial(16, lane)
                    c[vl] = T.cast(a[vl, 0], "int32") + T.cast(a[vl, 1], "int32")

    return desc


def _avx2_widen_implementation():
    """``vpmaddwd`` with ones on each 8-lane half: adjacent int16 lanes (a channel's two pair sums, in the
    order the pair intrinsic leaves them) summed into int32, with no shuffle or gather."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((16, 2), "int16", offset_factor=1, scope="local"),
             c: T.Buffer((16,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(a[0:16, 0:2])
            T.writes(c[0:16])
            lanes = T.decl_buffer((32,), "int16", data=a.data, elem_offset=a.elem_offset, scope="local")
            for half in T.unroll(2):
                c[T.ramp(half * 8, 1, 8)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), lanes.vload([half * 16], dtype="int16x16"),
                    T.broadcast(T.int16(1), 16), dtype="int32x8")

    return impl


@functools.lru_cache(maxsize=None)
def avx2_widen_intrin_name() -> str:
    """Name of the registered pair-widening AVX2 ``TensorIntrin`` (registered on the first call)."""
    from tvm.s_tir import TensorIntrin

    TensorIntrin.register(AVX2_WIDEN_INTRIN_NAME, _widen_description(), _avx2_widen_implementation(), override=True)
    return AVX2_WIDEN_INTRIN_NAME

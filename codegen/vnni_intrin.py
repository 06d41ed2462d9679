"""The ``dot_16x4_vnni`` tensor intrinsic for the LLVM that TVM was built with (one place for a TVM bug).

TVM 0.27's ``tvm.s_tir.tensor_intrin.x86.dot_16x4_vnni`` calls ``llvm.x86.avx512.vpdpbusd.512``
with three ``<16 x i32>`` operands -- the intrinsic's signature up to LLVM 21. LLVM 22 (the LLVM
in the ``apache-tvm==0.27.0.post1`` wheel, ``tvm.target.codegen.llvm_version_major()``) declares
the two byte operands as ``<64 x i8>`` (llvm/llvm-project#155194, "Fix VPDPBUSD Argument
Types"), and the module built from TVM's intrinsic fails LLVM's verifier ("Call parameter type
does not match function signature"). :func:`vnni_intrin_name` returns TVM's own intrinsic when
the LLVM predates the change, else an intrinsic registered here with TVM's own description
(``dot_product_16x4_u8i8i32_desc``: ``C[i] += u8(A[k]) * s8(B[i, k])``) and an implementation that
passes the byte operands as ``int8x64``. Same instruction, same semantics (``vpdpbusd`` treats
the first byte operand as unsigned whatever the IR type says).
"""

from __future__ import annotations

import functools

LLVM_BYTE_OPERANDS = 22  # first LLVM major version whose vpdpbusd takes <64 x i8> operands
INTRIN_NAME = "qnn_dot_16x4_vnni_i8x64"


def _byte_operand_impl():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            four_codes = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")  # one dword, broadcast below
            codes = T.reinterpret(T.broadcast(four_codes, 16), dtype="int8x64")
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                c.vload([0], dtype="int32x16"), codes, b.vload([0, 0], dtype="int8x64"), dtype="int32x16")

    return impl


@functools.lru_cache(maxsize=None)
def vnni_intrin_name() -> str:
    """Name of a registered ``TensorIntrin`` computing TVM's ``dot_16x4`` description with ``vpdpbusd``."""
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.tensor_intrin.x86 import VNNI_DOT_16x4_INTRIN, dot_product_16x4_u8i8i32_desc
    from tvm.target.codegen import llvm_version_major

    if llvm_version_major() < LLVM_BYTE_OPERANDS:
        return VNNI_DOT_16x4_INTRIN
    TensorIntrin.register(INTRIN_NAME, dot_product_16x4_u8i8i32_desc, _byte_operand_impl(), override=True)
    return INTRIN_NAME

"""The RTL vector ALU (alu_lanes) against the ISA's integer semantics, operation by operation, at edge
operands: shifts of every amount in both directions, saturating REQUANT at every shift, int32 wrap."""

import numpy as np
import pytest

from vta_ext.isa import AluOp
from vta_ext.rtl.simulate import verilog_sources
from vta_ext.rtl.tools import find_tool, run_bounded
from vta_ext.sim.functional import MAX_REQUANT_SHIFT

pytestmark = pytest.mark.rtl

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
EDGES = [INT32_MIN, INT32_MIN + 1, INT32_MAX, -1, 0, 1, 3, -3, 1 << 16, -(1 << 16) - 7, 123456789]
SHIFTS = [INT32_MIN, -100, -33, -32, -31, -17, -1, 0, 1, 7, 31, 32, 33, 62, 63, 64, 65, 1000, INT32_MAX]


def _wrap(x):
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def expected(op, a, r, bias, mult, sh):
    """One lane's result, from the ISA's definition in Python integers (vta_ext/isa.py AluOp)."""
    if op == AluOp.ADD:
        return _wrap(a + r)
    if op == AluOp.MIN:
        return min(a, r)
    if op == AluOp.MAX:
        return max(a, r)
    if op == AluOp.MUL:
        return _wrap(a * r)
    if op == AluOp.SHR:
        return a >> min(r, 63) if r >= 0 else _wrap(a << -r) if r >= -31 else 0
    if op == AluOp.BIAS:
        return _wrap(a + bias)
    rounded = (a * mult + ((1 << (sh - 1)) if sh else 0)) >> sh
    return min(max(rounded, INT32_MIN), INT32_MAX)


def _cases(rng):
    cases = []
    for op in (AluOp.ADD, AluOp.MIN, AluOp.MAX, AluOp.MUL, AluOp.BIAS):
        cases += [(op, a, r, r, 0, 0) for a in EDGES for r in EDGES]
        cases += [(op, int(a), int(r), int(r), 0, 0) for a, r in rng.integers(INT32_MIN, INT32_MAX, (60, 2))]
    cases += [(AluOp.SHR, a, r, 0, 0, 0) for a in EDGES for r in SHIFTS]
    cases += [(AluOp.SHR, int(a), int(r), 0, 0, 0) for a, r in zip(rng.integers(INT32_MIN, INT32_MAX, 200),
                                                                    rng.integers(-40, 70, 200))]
    # REQUANT at every shift: products near the saturation bounds, exact halves (rounding up), zero
    for sh in range(MAX_REQUANT_SHIFT + 1):
        for a, m in [(INT32_MIN, INT32_MIN), (INT32_MIN, INT32_MAX), (INT32_MAX, INT32_MAX), (-1, 1), (0, 5),
                     (3 << 20, 1 << 20), (-(3 << 20), 1 << 20), (1, 1 << 30), (-1, 1 << 30)]:
            cases.append((AluOp.REQUANT, a, 0, 0, m, sh))
        for a, m in rng.integers(INT32_MIN, INT32_MAX, (4, 2)):
            cases.append((AluOp.REQUANT, int(a), 0, 0, int(m), sh))
        if sh:  # (2k+1) * 2^(sh-1): exactly half way, rounds up
            for k in (-3, -1, 0, 2):
                product = (2 * k + 1) << (sh - 1)
                if INT32_MIN <= product <= INT32_MAX:
                    cases.append((AluOp.REQUANT, product, 0, 0, 1, sh))
    return cases


@pytest.mark.parametrize("mul_clocks, soft_mul", [(1, 0), (8, 1)])
def test_alu_lane_matches_the_isa_on_edge_operands(tmp_path, mul_clocks, soft_mul):
    cases = _cases(np.random.default_rng(mul_clocks))
    step_bits = max(mul_clocks.bit_length() - 2, 0)
    lines = []
    for op, a, r, bias, mult, sh in cases:
        lines.append(f"        op = {int(op)}; a = {a}; r = {r}; bias = {bias}; m = {mult}; sh = {sh};\n"
                     f"        for (s = 0; s < {mul_clocks}; s = s + 1) begin step = s; #1;\n"
                     f"            if (s == {mul_clocks - 1}) $display(\"%0d\", $signed(result));\n"
                     "            clk = 1; #1; clk = 0; end\n")
    (tmp_path / "tb.v").write_text(
        f"module tb;\n    reg clk = 0;\n    reg [{step_bits}:0] step = 0;\n    reg [3:0] op;\n"
        "    reg signed [31:0] a, r, bias, m;\n    reg [7:0] sh;\n    wire [31:0] result, product_lo;\n"
        "    integer s;\n"
        f"    alu_lanes #(.BATCH(1), .BLOCK_OUT(1), .SOFT_MUL({soft_mul}), .MUL_CLOCKS({mul_clocks})) dut (\n"
        "        .clk(clk), .mul_step(step), .alu_op(op), .lhs(a), .rhs(r), .bias(bias), .multiplier(m),\n"
        "        .shift(sh), .result(result), .product_lo(product_lo));\n"
        "    initial begin\n" + "".join(lines) + "    end\nendmodule\n")
    sources = verilog_sources("alu_lanes", "serial_mul32", "soft_mul32")
    build = run_bounded([find_tool("iverilog"), "-o", "tb", "tb.v", *map(str, sources)], cwd=tmp_path, timeout_s=120)
    assert build.returncode == 0, build.tail()
    run = run_bounded([find_tool("vvp"), "tb"], cwd=tmp_path, timeout_s=300)
    got = [int(line) for line in run.stdout.split()]
    assert len(got) == len(cases), run.tail()
    wrong = [(AluOp(c[0]).name, *c[1:], g, expected(*c)) for c, g in zip(cases, got) if g != expected(*c)]
    assert not wrong, f"{len(wrong)} of {len(cases)} wrong; first (op, a, r, bias, m, sh, rtl, isa): {wrong[:5]}"

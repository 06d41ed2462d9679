// alu_lanes -- the vector ALU of the core (vta_ext/isa.py AluOp), one lane per accumulator
// element, including the integer-only requantization of DESIGN.md.
//
//   ADD  a + r          MIN min(a, r)        MAX max(a, r)       MUL a * r (low 32 bits)
//   SHR  r >= 0 ? a >>> r : a << -r          BIAS a + bias[o]
//   REQUANT  sat32((a * M[o] + 2^(sh[o]-1)) >>> sh[o])   (64-bit product, as reference.requantize)
// The clamp to codes 0 .. 2^b - 1 is MAX 0 / MIN hi with an immediate (what the compiler emits).
// LUT_APPLY is multi-cycle and lives in lut_apply.
//
// Ports (lane n = b*BLOCK_OUT + o; all signed two's complement):
//   alu_op     [4]                 AluOp value
//   lhs        [LANES*32]          acc[dst]
//   rhs        [LANES*32]          acc[src], or the immediate broadcast by the sequencer
//   bias       [BLOCK_OUT*32]      parameter row: bias of output o at o*32
//   multiplier [BLOCK_OUT*32]      parameter row: M of output o
//   shift      [BLOCK_OUT*8]       parameter row: sh of output o (0..62)
//   result     [LANES*32]
//   product_lo [LANES*32]          low 32 bits of the lane's multiplier (lhs * rhs unless REQUANT):
//                                  qnn_compute's serial LUT_APPLY multiplies here
//   clk, mul_step [log2 MUL_CLOCKS] the serial multiplier's clock (MUL_CLOCKS > 1 only)
// Timing: combinational (one micro-op per clock; the sequencer writes result to acc[dst]), except
// that with MUL_CLOCKS > 1 the product (MUL, REQUANT and product_lo) is valid in the last of
// MUL_CLOCKS clocks with the operands held (serial_mul32; the sequencer counts mul_step).
// SOFT_MUL = 1 builds the 32 x 32 multipliers from adders (soft_mul32) for parts without DSP
// blocks; 0 leaves the product to the synthesis tool (DSP48 / SB_MAC16). MUL_CLOCKS > 1 (a power
// of two up to 32) overrides both with serial_mul32 (HwConfig.alu_mul_cycles).
module alu_lanes #(
    parameter BATCH = 1,
    parameter BLOCK_OUT = 16,
    parameter SOFT_MUL = 0,
    parameter MUL_CLOCKS = 1
) (
    input  wire                        clk,
    input  wire [(MUL_CLOCKS > 1 ? $clog2(MUL_CLOCKS) : 1)-1:0] mul_step,
    input  wire [3:0]                  alu_op,
    input  wire [BATCH*BLOCK_OUT*32-1:0] lhs,
    input  wire [BATCH*BLOCK_OUT*32-1:0] rhs,
    input  wire [BLOCK_OUT*32-1:0]     bias,
    input  wire [BLOCK_OUT*32-1:0]     multiplier,
    input  wire [BLOCK_OUT*8-1:0]      shift,
    output reg  [BATCH*BLOCK_OUT*32-1:0] result,
    output reg  [BATCH*BLOCK_OUT*32-1:0] product_lo
);
    localparam OP_ADD = 0, OP_MIN = 1, OP_MAX = 2, OP_MUL = 3, OP_SHR = 4, OP_BIAS = 6, OP_REQUANT = 7;
    localparam signed [64:0] INT32_MAX = 65'sd2147483647, INT32_MIN = -65'sd2147483648;
    // one 32 x 32 multiplier per lane, shared by MUL and REQUANT (the 64-bit product is exact)
    wire [BATCH*BLOCK_OUT*64-1:0] products;
    genvar g;
    generate
        for (g = 0; g < BATCH*BLOCK_OUT; g = g + 1) begin : lane
            wire signed [31:0] x = lhs[g*32 +: 32];
            wire signed [31:0] y = (alu_op == OP_REQUANT) ? multiplier[(g % BLOCK_OUT)*32 +: 32] : rhs[g*32 +: 32];
            if (MUL_CLOCKS > 1) begin : serial
                serial_mul32 #(.CLOCKS(MUL_CLOCKS)) mul (.clk(clk), .step(mul_step), .a(x), .b(y),
                                                         .p(products[g*64 +: 64]));
            end else if (SOFT_MUL) begin : adders
                soft_mul32 mul (.a(x), .b(y), .p(products[g*64 +: 64]));
            end else begin : product_op
                assign products[g*64 +: 64] = x * y;
            end
        end
    endgenerate
    reg signed [31:0] a, r;
    reg [7:0] sh, amount;
    reg signed [64:0] wide, product, rounding, shifted;
    reg less;
    integer n;
    always @* begin
        for (n = 0; n < BATCH*BLOCK_OUT; n = n + 1) begin
            a = lhs[n*32 +: 32];
            r = rhs[n*32 +: 32];
            sh = shift[(n % BLOCK_OUT)*8 +: 8];
            product = $signed(products[n*64 +: 64]);
            rounding = (sh == 0) ? 65'sd0 : (65'sd1 <<< (sh - 1));
            // one arithmetic right shifter for REQUANT (the rounded product by sh) and SHR by r >= 0
            // (a by 64 or more is all sign bits, as by 64); one comparator for MIN and MAX
            amount = (alu_op == OP_SHR) ? ((r > 64) ? 8'd64 : r[7:0]) : sh;
            shifted = ((alu_op == OP_SHR) ? $signed({{33{a[31]}}, a}) : product + rounding) >>> amount;
            less = a < r;
            case (alu_op)
                OP_ADD:  wide = a + r;
                OP_MIN:  wide = less ? a : r;
                OP_MAX:  wide = less ? r : a;
                OP_MUL:  wide = product;
                OP_SHR:  wide = (r >= 0) ? shifted : (r < -31) ? 65'sd0 : (a <<< -r);
                OP_BIAS: wide = a + $signed(bias[(n % BLOCK_OUT)*32 +: 32]);
                default: wide = (shifted > INT32_MAX) ? INT32_MAX : (shifted < INT32_MIN) ? INT32_MIN : shifted;
            endcase
            result[n*32 +: 32] = wide[31:0];
            product_lo[n*32 +: 32] = product[31:0];
        end
    end
endmodule

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
    // REQUANT and SHR share one right shifter of a 65-bit word V by 0..63, of which only the low 34
    // bits and whether the rest is sign bits are used (its stages run largest first, so the bits a
    // later stage does not read are dead logic: ~260 LUT4 instead of a 65-bit 7-stage shifter and a
    // separate 32-bit left shifter):
    //   REQUANT  V = 2P (P the 64-bit product), amount sh: t = floor(P / 2^(sh-1)) (2P when sh = 0),
    //            and the rounded result is floor((P + 2^(sh-1)) / 2^sh) = (t + 1) >>> 1 (also for
    //            sh = 0), so the rounding is a 35-bit increment instead of a 65-bit add of a decoded
    //            2^(sh-1); it saturates when t does not fit 34 bits or (t + 1) >>> 1 does not fit 32
    //   SHR      V = a * 2^32, amount 32 + r for -32 <= r <= 31 (a >> r, or a << -r), 63 for r > 31
    //            (a >> 31 is all sign bits already); r < -32 gives 0
    // sh is 0..62 (vta_ext.sim refuses a REQUANT shift outside that range; the shifter reads sh[5:0])
    reg signed [31:0] a, r;
    reg [64:0] v, s32, s16, s8, s4, s2, s1;
    reg [31:0] differ;
    reg [5:0] amount;
    reg [34:0] up;
    reg signed [64:0] wide, product;
    reg less, fits, left_zero;
    integer n;
    always @* begin
        for (n = 0; n < BATCH*BLOCK_OUT; n = n + 1) begin
            a = lhs[n*32 +: 32];
            r = rhs[n*32 +: 32];
            product = $signed(products[n*64 +: 64]);
            v = (alu_op == OP_REQUANT) ? {product[63:0], 1'b0} : {a[31], a, 32'd0};
            amount = (alu_op == OP_REQUANT) ? shift[(n % BLOCK_OUT)*8 +: 6]
                   : (!r[31] && r[30:5] != 0) ? 6'd63 : {~r[5], r[4:0]};
            left_zero = r[31] && r[30:5] != {26{1'b1}};  // r < -32
            // stages largest first, written as whole-word selects (one vector operation each in a
            // simulator); only s1[33:0] is read, so synthesis keeps each stage as wide as the stages
            // after it read: 65, 49, 41, 37, 35 and 34 two-way selects
            s32 = amount[5] ? {{32{v[64]}}, v[64:32]} : v;
            s16 = amount[4] ? {{16{v[64]}}, s32[64:16]} : s32;
            s8 = amount[3] ? {{8{v[64]}}, s16[64:8]} : s16;
            s4 = amount[2] ? {{4{v[64]}}, s8[64:4]} : s8;
            s2 = amount[1] ? {{2{v[64]}}, s4[64:2]} : s4;
            s1 = amount[0] ? {v[64], s2[64:1]} : s2;
            // the shifted word fits 34 bits when v[64 : amount+33] are all sign bits: the bits of
            // v[64:33] that differ from the sign, read as a number, are below 2^amount
            differ = v[64:33] ^ {32{v[64]}};
            fits = amount[5] || differ < (32'd1 << amount[4:0]);
            up = {s1[33], s1[33:0]} + 35'd1;  // t + 1; the result is up[34:1]
            less = a < r;
            case (alu_op)
                OP_ADD:  wide = a + r;
                OP_MIN:  wide = less ? a : r;
                OP_MAX:  wide = less ? r : a;
                OP_MUL:  wide = product;
                OP_SHR:  wide = left_zero ? 65'sd0 : {33'd0, s1[31:0]};
                OP_BIAS: wide = a + $signed(bias[(n % BLOCK_OUT)*32 +: 32]);
                default: wide = (fits && up[34:32] == {3{up[34]}}) ? {33'd0, up[32:1]}
                                : {33'd0, v[64] ? 32'h80000000 : 32'h7fffffff};
            endcase
            result[n*32 +: 32] = wide[31:0];
            product_lo[n*32 +: 32] = product[31:0];
        end
    end
endmodule

// requant_alu -- vector ALU of the core: add / min / max with an operand, and the integer-only
// requantization of DESIGN.md:  clip((acc * M + 2^(sh-1)) >> sh, 0, 2^out_bits - 1).
//
// The requant product is formed in 64 bits (a 32 x 32 signed multiply) with an arithmetic
// shift, exactly as tvm_qnn.reference.requantize does in int64.
//
// Ports:
//   clk
//   valid_in                    operands valid this clock
//   opcode  [3]                 0 ADD, 1 MIN, 2 MAX, 3 REQUANT (see OPCODES below)
//   lhs     [LANES*ACC_W]       signed accumulator lanes
//   rhs     [LANES*ACC_W]       signed second operand (ADD/MIN/MAX; an immediate is broadcast by the caller)
//   multiplier [LANES*32]       signed M of each lane's output channel (REQUANT)
//   shift   [LANES*6]           sh of each lane (0..62) (REQUANT)
//   out_bits[4]                 b of the next layer, 1..8 (REQUANT clamps to 0..2^b - 1)
//   valid_out, result [LANES*ACC_W]   registered result, one clock after valid_in
// Timing: fully pipelined, latency 1, one vector per clock.
module requant_alu #(
    parameter LANES = 16,
    parameter ACC_W = 32
) (
    input  wire                   clk,
    input  wire                   valid_in,
    input  wire [2:0]             opcode,
    input  wire [LANES*ACC_W-1:0] lhs,
    input  wire [LANES*ACC_W-1:0] rhs,
    input  wire [LANES*32-1:0]    multiplier,
    input  wire [LANES*6-1:0]     shift,
    input  wire [3:0]             out_bits,
    output reg                    valid_out,
    output reg  [LANES*ACC_W-1:0] result
);
    localparam OP_ADD = 3'd0, OP_MIN = 3'd1, OP_MAX = 3'd2, OP_REQUANT = 3'd3;
    initial valid_out = 1'b0;
    wire signed [ACC_W-1:0] upper = (1 << out_bits) - 1;

    genvar n;
    generate
        for (n = 0; n < LANES; n = n + 1) begin : lane
            wire signed [ACC_W-1:0] a = lhs[n*ACC_W +: ACC_W];
            wire signed [ACC_W-1:0] b = rhs[n*ACC_W +: ACC_W];
            wire signed [31:0] m = multiplier[n*32 +: 32];
            wire [5:0] sh = shift[n*6 +: 6];
            wire signed [64:0] product = a * m;
            wire signed [64:0] rounding = (sh == 0) ? 65'sd0 : (65'sd1 <<< (sh - 1'b1));
            wire signed [64:0] shifted = (product + rounding) >>> sh;
            wire signed [ACC_W-1:0] clamped = (shifted < 0) ? 0 : (shifted > upper) ? upper : shifted[ACC_W-1:0];
            reg signed [ACC_W-1:0] value;
            always @* begin
                case (opcode)
                    OP_ADD: value = a + b;
                    OP_MIN: value = (a < b) ? a : b;
                    OP_MAX: value = (a > b) ? a : b;
                    default: value = clamped;
                endcase
            end
            always @(posedge clk) result[n*ACC_W +: ACC_W] <= value;
        end
    endgenerate
    always @(posedge clk) valid_out <= valid_in;
endmodule

// pnr_harness -- gemm_unit between registers with a handful of pins, for place and route (Fmax).
//
// A GEMM unit's operand ports are thousands of bits wide, more than any package has pins, so
// the harness fills registered operands through a one-bit shift chain and folds the registered
// result into one output pin. The timed path is the one of the core: operand registers ->
// activation plane mux -> GEMM slice -> bit-serial accumulate -> result register.
//
// Ports:
//   clk, load      load shifts shift_in into the operand chain (one bit per clock)
//   enable, first  forwarded to gemm_unit (first = the tile's most significant bit)
//   bit_index [4]  activation bit of this clock
//   result_bit     XOR of the registered acc_next
// Timing: one activation bit per clock; result registered one clock after.
module pnr_harness #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 8,
    parameter BLOCK_OUT = 8,
    parameter A_BITS = 4,
    parameter W_BITS = 2,
    parameter WEIGHT_MODE = 0
) (
    input  wire       clk,
    input  wire       load,
    input  wire       shift_in,
    input  wire       enable,
    input  wire       first,
    input  wire [3:0] bit_index,
    output reg        result_bit
);
    localparam LEVELS = 1 << W_BITS;
    localparam ACT_W = BATCH * BLOCK_IN * A_BITS;
    localparam WGT_W = BLOCK_OUT * BLOCK_IN * W_BITS;
    localparam LUT_W = BLOCK_OUT * LEVELS * 8;
    localparam ACC_W = BATCH * BLOCK_OUT * (WEIGHT_MODE == 1 ? LEVELS : 1) * 32;
    localparam CHAIN_W = ACT_W + WGT_W + LUT_W + ACC_W;

    reg [CHAIN_W-1:0] chain;
    always @(posedge clk)
        if (load) chain <= {chain[CHAIN_W-2:0], shift_in};

    reg enable_r, first_r;
    reg [3:0] bit_index_r;
    always @(posedge clk) begin
        enable_r <= enable;
        first_r <= first;
        bit_index_r <= bit_index;
    end

    wire [ACC_W-1:0] acc_next;
    gemm_unit #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT), .A_BITS(A_BITS),
                .W_BITS(W_BITS), .WEIGHT_MODE(WEIGHT_MODE))
        core (.clk(clk), .enable(enable_r), .first(first_r), .bit_index(bit_index_r),
              .act_tile(chain[0 +: ACT_W]), .weight_idx(chain[ACT_W +: WGT_W]),
              .lut(chain[ACT_W + WGT_W +: LUT_W]), .acc_init(chain[ACT_W + WGT_W + LUT_W +: ACC_W]),
              .acc_next(acc_next));

    reg [ACC_W-1:0] result;
    always @(posedge clk) begin
        result <= acc_next;
        result_bit <= ^result;
    end
endmodule

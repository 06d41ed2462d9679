// gemm_unit -- the bit-serial GEMM unit of the core: one weight-storage variant + accumulators.
//
// WEIGHT_MODE selects the variant measured side by side by the calibration sweep:
//   0 bitplane : symmetric uniform weights as index bit planes       logic ~ lanes x W_BITS
//                (weight = 2 idx - (2^W_BITS - 1) half-steps; the lut port is unused)
//   1 onehot   : per-level sums from one-hot index planes; the LUT   logic ~ lanes x 2^W_BITS
//                is applied later by lut_apply (acc elements are the  (1-bit popcounts)
//                BATCH*BLOCK_OUT*LEVELS level sums)
//   2 decode   : per-lane LUT decode                                 logic ~ lanes x 2^W_BITS x 8
// lanes = BATCH * BLOCK_IN * BLOCK_OUT.
//
// Ports:
//   clk
//   enable       process one activation bit this clock
//   first        the tile's first clock (its most significant activation bit)
//   bit_index    [4]                          activation bit of this clock: a_bits-1 down to 0
//   act_tile     [BATCH*BLOCK_IN*A_BITS]      activation code (b, c) at (b*BLOCK_IN + c)*A_BITS
//   weight_idx   [BLOCK_OUT*BLOCK_IN*W_BITS]  weight index (o, c) at (o*BLOCK_IN + c)*W_BITS
//   lut          [BLOCK_OUT*LEVELS*8]         int8 LUT rows (onehot and bitplane ignore it)
//   acc_init     [ACC_ELEMS*ACC_W]            accumulator-buffer entry read for this tile
//   acc_next     [ACC_ELEMS*ACC_W]            entry to write back after the tile's last bit
// Timing: a tile of b_a activation bits takes b_a clocks, most significant bit first (enable
// high, first on the first); acc_next is combinational, the caller writes it on the last bit's clock.
module gemm_unit #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 16,
    parameter BLOCK_OUT = 16,
    parameter A_BITS = 8,
    parameter W_BITS = 2,
    parameter WEIGHT_MODE = 0,
    parameter ACC_W = 32,
    parameter LEVELS = 1 << W_BITS,
    parameter ACC_ELEMS = BATCH * BLOCK_OUT * (WEIGHT_MODE == 1 ? LEVELS : 1)
) (
    input  wire                                 clk,
    input  wire                                 enable,
    input  wire                                 first,
    input  wire [3:0]                           bit_index,
    input  wire [BATCH*BLOCK_IN*A_BITS-1:0]     act_tile,
    input  wire [BLOCK_OUT*BLOCK_IN*W_BITS-1:0] weight_idx,
    input  wire [BLOCK_OUT*LEVELS*8-1:0]        lut,
    input  wire [ACC_ELEMS*ACC_W-1:0]           acc_init,
    output wire [ACC_ELEMS*ACC_W-1:0]           acc_next
);
    localparam CNT_W = $clog2(BLOCK_IN + 1);
    localparam BP_PART_W = W_BITS + CNT_W + 2;
    localparam DEC_PART_W = 9 + CNT_W;
    localparam PART_W = WEIGHT_MODE == 0 ? BP_PART_W : WEIGHT_MODE == 1 ? CNT_W + 1 : DEC_PART_W;

    // bit plane i of the activation tile (a mux per activation, shared by all outputs)
    wire [BATCH*BLOCK_IN-1:0] act_plane;
    genvar k;
    generate
        for (k = 0; k < BATCH*BLOCK_IN; k = k + 1) begin : plane
            wire [A_BITS-1:0] code = act_tile[k*A_BITS +: A_BITS];  // slice first: an A_BITS:1 mux
            assign act_plane[k] = code[bit_index];
        end
    endgenerate

    wire [ACC_ELEMS*PART_W-1:0] partial;
    generate
        if (WEIGHT_MODE == 0) begin : bitplane
            gemm_bitplane #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT),
                            .W_BITS(W_BITS), .PART_W(PART_W))
                core (.act_plane(act_plane), .weight_idx(weight_idx), .partial(partial));
        end else if (WEIGHT_MODE == 1) begin : onehot
            wire [ACC_ELEMS*CNT_W-1:0] level_count;
            gemm_onehot #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT),
                          .W_BITS(W_BITS), .LEVELS(LEVELS), .CNT_W(CNT_W))
                core (.act_plane(act_plane), .weight_idx(weight_idx), .level_count(level_count));
            reg [ACC_ELEMS*PART_W-1:0] widened;  // counts are unsigned: add a zero sign bit
            integer e;
            always @*
                for (e = 0; e < ACC_ELEMS; e = e + 1)
                    widened[e*PART_W +: PART_W] = {1'b0, level_count[e*CNT_W +: CNT_W]};
            assign partial = widened;
        end else begin : decode
            gemm_decode #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT),
                          .W_BITS(W_BITS), .LEVELS(LEVELS), .PART_W(PART_W))
                core (.act_plane(act_plane), .weight_idx(weight_idx), .lut(lut), .partial(partial));
        end
    endgenerate

    bitserial_acc #(.N(ACC_ELEMS), .PART_W(PART_W), .ACC_W(ACC_W), .A_BITS(A_BITS))
        accumulate (.clk(clk), .enable(enable), .first(first), .partial(partial),
                    .acc_init(acc_init), .acc_next(acc_next));
endmodule

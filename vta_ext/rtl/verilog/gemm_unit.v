// gemm_unit -- the bit-serial GEMM unit of the core: one weight-storage variant + accumulators.
//
// WEIGHT_MODE selects the variant measured side by side by the calibration sweep:
//   0 bitplane : uniform (affine) weights as index bit planes       logic ~ lanes x W_BITS
//   1 onehot   : per-level sums from one-hot index planes; the LUT   logic ~ lanes x 2^W_BITS
//                is applied later by lut_apply (acc elements are the  (1-bit popcounts)
//                BATCH*BLOCK_OUT*LEVELS level sums)
//   2 decode   : per-lane LUT decode                                 logic ~ lanes x 2^W_BITS x 8
// lanes = BATCH * BLOCK_IN * BLOCK_OUT.
//
// Ports:
//   clk
//   enable       process one activation bit this clock
//   first        bit 0 of a tile (accumulate onto acc_init)
//   bit_index    [4]                          activation bit of this clock (0 .. a_bits-1)
//   act_tile     [BATCH*BLOCK_IN*A_BITS]      activation code (b, c) at (b*BLOCK_IN + c)*A_BITS
//   weight_idx   [BLOCK_OUT*BLOCK_IN*W_BITS]  weight index (o, c) at (o*BLOCK_IN + c)*W_BITS
//   lut          [BLOCK_OUT*LEVELS*8]         int8 LUT rows; bitplane uses entries 0 and 1 only
//   acc_init     [ACC_ELEMS*ACC_W]            accumulator-buffer entry read for this tile
//   acc_next     [ACC_ELEMS*ACC_W]            entry to write back after the tile's last bit
// Timing: a tile of b_a activation bits takes b_a clocks (enable high, first on the first);
// acc_next is combinational, so the caller writes it on the clock of the last bit.
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
    localparam BP_PART_W = 11 + W_BITS + CNT_W;
    localparam DEC_PART_W = 9 + CNT_W;
    localparam PART_W = WEIGHT_MODE == 0 ? BP_PART_W : WEIGHT_MODE == 1 ? CNT_W + 1 : DEC_PART_W;

    // bit plane i of the activation tile (a mux per activation, shared by all outputs)
    wire [BATCH*BLOCK_IN-1:0] act_plane;
    genvar k;
    generate
        for (k = 0; k < BATCH*BLOCK_IN; k = k + 1) begin : plane
            assign act_plane[k] = act_tile[k*A_BITS + bit_index];
        end
    endgenerate

    wire [ACC_ELEMS*PART_W-1:0] partial;
    wire [ACC_ELEMS*ACC_W-1:0] acc_reg;
    generate
        if (WEIGHT_MODE == 0) begin : bitplane
            wire [BLOCK_OUT*8-1:0] lut_base;
            wire [BLOCK_OUT*9-1:0] lut_step;
            for (k = 0; k < BLOCK_OUT; k = k + 1) begin : affine
                wire signed [7:0] q0 = lut[(k*LEVELS + 0)*8 +: 8];
                wire signed [7:0] q1 = lut[(k*LEVELS + 1)*8 +: 8];
                assign lut_base[k*8 +: 8] = q0;
                assign lut_step[k*9 +: 9] = q1 - q0;
            end
            gemm_bitplane #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT),
                            .W_BITS(W_BITS), .PART_W(PART_W))
                core (.act_plane(act_plane), .weight_idx(weight_idx), .lut_base(lut_base),
                      .lut_step(lut_step), .partial(partial));
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

    bitserial_acc #(.N(ACC_ELEMS), .PART_W(PART_W), .ACC_W(ACC_W), .IDX_W(4))
        accumulate (.clk(clk), .enable(enable), .first(first), .bit_index(bit_index),
                    .partial(partial), .acc_init(acc_init), .acc_next(acc_next), .acc(acc_reg));
endmodule

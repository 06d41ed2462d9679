// gemm_decode -- bit-serial GEMM slice with per-lane LUT decode of the weights.
//
// Every lane (o, c) decodes its weight index through the int8 LUT row of output channel o
// (a LEVELS:1 x 8-bit mux, so logic grows as lanes x 2^W_BITS), then the slice adds the decoded
// weights of the lanes whose activation bit is set; one gemm_decode_column per output channel.
//
// Ports (all packed, lane-major, least significant element first):
//   act_plane  [BATCH*BLOCK_IN]            bit i of activation code (b, c) at b*BLOCK_IN + c
//   weight_idx [BLOCK_OUT*BLOCK_IN*W_BITS] weight index of lane (o, c) at (o*BLOCK_IN + c)*W_BITS
//   lut        [BLOCK_OUT*LEVELS*8]        signed int8 LUT entry (o, q) at (o*LEVELS + q)*8
//   partial    [BATCH*BLOCK_OUT*PART_W]    signed sum_c a_i[b, c] * lut[o, idx[o, c]] at b*BLOCK_OUT + o
// Timing: combinational. The accumulator (bitserial_acc) adds partial << i, one activation
// bit per clock, so a tile takes b_a cycles.
module gemm_decode #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 16,
    parameter BLOCK_OUT = 16,
    parameter W_BITS = 2,
    parameter LEVELS = 1 << W_BITS,
    parameter PART_W = 8 + $clog2(BLOCK_IN) + 1
) (
    input  wire [BATCH*BLOCK_IN-1:0]            act_plane,
    input  wire [BLOCK_OUT*BLOCK_IN*W_BITS-1:0] weight_idx,
    input  wire [BLOCK_OUT*LEVELS*8-1:0]        lut,
    output wire [BATCH*BLOCK_OUT*PART_W-1:0]    partial
);
    genvar b, o;
    generate
        for (o = 0; o < BLOCK_OUT; o = o + 1) begin : column
            wire [BATCH*PART_W-1:0] column_partial;
            gemm_decode_column #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .W_BITS(W_BITS), .LEVELS(LEVELS),
                                 .PART_W(PART_W))
                lanes (.act_plane(act_plane), .weight_idx(weight_idx[o*BLOCK_IN*W_BITS +: BLOCK_IN*W_BITS]),
                       .lut_row(lut[o*LEVELS*8 +: LEVELS*8]), .partial(column_partial));
            for (b = 0; b < BATCH; b = b + 1) begin : to_batch
                assign partial[(b*BLOCK_OUT + o)*PART_W +: PART_W] = column_partial[b*PART_W +: PART_W];
            end
        end
    endgenerate
endmodule

// gemm_decode -- bit-serial GEMM slice with per-lane LUT decode of the weights.
//
// Every lane (o, c) decodes its weight index through the int8 LUT row of output channel o
// (a LEVELS:1 x 8-bit mux, so logic grows as lanes x 2^W_BITS), then the slice adds the decoded
// weights of the lanes whose activation bit is set.
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
    genvar b, o, c;
    wire [BLOCK_OUT*BLOCK_IN*8-1:0] weight;  // decoded int8 weight of lane (o, c)

    generate
        for (o = 0; o < BLOCK_OUT; o = o + 1) begin : decode_row
            for (c = 0; c < BLOCK_IN; c = c + 1) begin : decode_lane
                wire [W_BITS-1:0] idx = weight_idx[(o*BLOCK_IN + c)*W_BITS +: W_BITS];
                wire [LEVELS*8-1:0] row = lut[o*LEVELS*8 +: LEVELS*8];  // slice first: a LEVELS:1 mux
                assign weight[(o*BLOCK_IN + c)*8 +: 8] = row[idx*8 +: 8];
            end
        end
        for (b = 0; b < BATCH; b = b + 1) begin : reduce_batch
            for (o = 0; o < BLOCK_OUT; o = o + 1) begin : reduce_out
                reg signed [PART_W-1:0] sum;
                integer k;
                always @* begin
                    sum = 0;
                    for (k = 0; k < BLOCK_IN; k = k + 1)
                        if (act_plane[b*BLOCK_IN + k])
                            sum = sum + {{(PART_W-8){weight[(o*BLOCK_IN + k)*8 + 7]}},
                                         weight[(o*BLOCK_IN + k)*8 +: 8]};
                end
                assign partial[(b*BLOCK_OUT + o)*PART_W +: PART_W] = sum;
            end
        end
    endgenerate
endmodule

// gemm_decode_column -- one output column of gemm_decode: BLOCK_IN lanes sharing one LUT row.
//
// Every lane c decodes its weight index through the column's int8 LUT row (a LEVELS:1 x 8-bit
// mux, so logic grows as BLOCK_IN x 2^W_BITS), then the column adds, per batch row, the decoded
// weights of the lanes whose activation bit is set. gemm_decode instantiates one per output, so a
// hierarchical synthesis maps one column and counts it BLOCK_OUT times.
//
// Ports (all packed, lane-major, least significant element first):
//   act_plane  [BATCH*BLOCK_IN]   bit i of activation code (b, c) at b*BLOCK_IN + c
//   weight_idx [BLOCK_IN*W_BITS]  weight index of lane c at c*W_BITS
//   lut_row    [LEVELS*8]         signed int8 LUT entry q at q*8
//   partial    [BATCH*PART_W]     signed sum_c a_i[b, c] * lut_row[idx[c]] at b*PART_W
// Timing: combinational.
module gemm_decode_column #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 16,
    parameter W_BITS = 2,
    parameter LEVELS = 1 << W_BITS,
    parameter PART_W = 8 + $clog2(BLOCK_IN) + 1
) (
    input  wire [BATCH*BLOCK_IN-1:0]  act_plane,
    input  wire [BLOCK_IN*W_BITS-1:0] weight_idx,
    input  wire [LEVELS*8-1:0]        lut_row,
    output wire [BATCH*PART_W-1:0]    partial
);
    genvar b, c;
    wire [BLOCK_IN*8-1:0] weight;  // decoded int8 weight of lane c

    generate
        for (c = 0; c < BLOCK_IN; c = c + 1) begin : decode_lane
            wire [W_BITS-1:0] idx = weight_idx[c*W_BITS +: W_BITS];
            assign weight[c*8 +: 8] = lut_row[idx*8 +: 8];
        end
        for (b = 0; b < BATCH; b = b + 1) begin : reduce_batch
            reg signed [PART_W-1:0] sum;
            integer k;
            always @* begin
                sum = 0;
                for (k = 0; k < BLOCK_IN; k = k + 1)
                    if (act_plane[b*BLOCK_IN + k])
                        sum = sum + {{(PART_W-8){weight[k*8 + 7]}}, weight[k*8 +: 8]};
            end
            assign partial[b*PART_W +: PART_W] = sum;
        end
    endgenerate
endmodule

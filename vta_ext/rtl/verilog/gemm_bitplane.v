// gemm_bitplane -- bit-serial GEMM slice for uniform (affine) weights stored as index bit planes.
//
// A uniform LUT row is affine, lut[o, q] = base[o] + step[o] * q, so
//   sum_c a[b, c] * lut[o, idx[o, c]] = base[o] * sum_c a[b, c] + step[o] * sum_c a[b, c] * idx[o, c].
// Per activation bit the slice forms, for each weight bit plane j, popcount(a_i & w_j) and weights
// it by 2^j (logic grows as lanes x W_BITS), then applies one small multiply by step[o] and one
// by base[o] per output.
//
// Ports:
//   act_plane  [BATCH*BLOCK_IN]            bit i of activation code (b, c) at b*BLOCK_IN + c
//   weight_idx [BLOCK_OUT*BLOCK_IN*W_BITS] weight index of lane (o, c) at (o*BLOCK_IN + c)*W_BITS
//                                          (bit j of every index is weight bit plane j)
//   lut_base   [BLOCK_OUT*8]               signed int8 lut[o, 0]
//   lut_step   [BLOCK_OUT*9]               signed 9-bit lut[o, 1] - lut[o, 0] (int8 - int8 needs 9 bits)
//   partial    [BATCH*BLOCK_OUT*PART_W]    signed sum_c a_i[b, c] * lut[o, idx[o, c]]
// Timing: combinational; bitserial_acc adds partial << i, one activation bit per clock.
module gemm_bitplane #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 16,
    parameter BLOCK_OUT = 16,
    parameter W_BITS = 2,
    parameter CNT_W = $clog2(BLOCK_IN + 1),
    parameter PART_W = 11 + W_BITS + CNT_W
) (
    input  wire [BATCH*BLOCK_IN-1:0]            act_plane,
    input  wire [BLOCK_OUT*BLOCK_IN*W_BITS-1:0] weight_idx,
    input  wire [BLOCK_OUT*8-1:0]               lut_base,
    input  wire [BLOCK_OUT*9-1:0]               lut_step,
    output wire [BATCH*BLOCK_OUT*PART_W-1:0]    partial
);
    localparam DOT_W = W_BITS + CNT_W;  // sum_c a_i * idx < BLOCK_IN * 2^W_BITS
    genvar b, o;
    generate
        for (b = 0; b < BATCH; b = b + 1) begin : batch_row
            // popcount of the activation plane: the base[o] term, shared by all outputs
            reg [CNT_W-1:0] act_count;
            integer k;
            always @* begin
                act_count = 0;
                for (k = 0; k < BLOCK_IN; k = k + 1)
                    act_count = act_count + act_plane[b*BLOCK_IN + k];
            end
            for (o = 0; o < BLOCK_OUT; o = o + 1) begin : out_col
                reg [DOT_W-1:0] dot;  // sum_j 2^j popcount(a_i & w_j)
                reg [CNT_W-1:0] plane_count;
                integer j, c;
                always @* begin
                    dot = 0;
                    for (j = 0; j < W_BITS; j = j + 1) begin
                        plane_count = 0;
                        for (c = 0; c < BLOCK_IN; c = c + 1)
                            plane_count = plane_count
                                + (act_plane[b*BLOCK_IN + c] & weight_idx[(o*BLOCK_IN + c)*W_BITS + j]);
                        dot = dot + (plane_count << j);
                    end
                end
                wire signed [7:0] base = lut_base[o*8 +: 8];
                wire signed [8:0] step = lut_step[o*9 +: 9];
                wire signed [PART_W-1:0] scaled = step * $signed({1'b0, dot}) + base * $signed({1'b0, act_count});
                assign partial[(b*BLOCK_OUT + o)*PART_W +: PART_W] = scaled;
            end
        end
    endgenerate
endmodule

// gemm_bitplane -- bit-serial GEMM slice for symmetric uniform weights stored as index bit planes.
//
// A symmetric uniform (NICE) weight row has levels lut[q] = (2q - (2^W_BITS - 1)) * step / 2, so
// in units of half a step every weight is the odd integer 2*idx - (2^W_BITS - 1) and
//   sum_c a[b, c] * w[o, c] = 2 * sum_c a[b, c] * idx[o, c] - (2^W_BITS - 1) * sum_c a[b, c].
// step / 2 is folded into the requant multiplier, so the slice needs no multiplier at all: per
// activation bit it forms, for each weight bit plane j, popcount(a_i & w_j) weighted by 2^j (logic
// grows as lanes x W_BITS) and subtracts the shared popcount(a_i) times 2^W_BITS - 1 (shifts).
//
// Ports:
//   act_plane  [BATCH*BLOCK_IN]            bit i of activation code (b, c) at b*BLOCK_IN + c
//   weight_idx [BLOCK_OUT*BLOCK_IN*W_BITS] weight index of lane (o, c) at (o*BLOCK_IN + c)*W_BITS
//                                          (bit j of every index is weight bit plane j)
//   partial    [BATCH*BLOCK_OUT*PART_W]    signed sum_c a_i[b, c] * (2 idx[o, c] - (2^W_BITS - 1))
// Timing: combinational; bitserial_acc accumulates one activation bit per clock.
module gemm_bitplane #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 16,
    parameter BLOCK_OUT = 16,
    parameter W_BITS = 2,
    parameter CNT_W = $clog2(BLOCK_IN + 1),
    parameter PART_W = W_BITS + CNT_W + 2
) (
    input  wire [BATCH*BLOCK_IN-1:0]            act_plane,
    input  wire [BLOCK_OUT*BLOCK_IN*W_BITS-1:0] weight_idx,
    output wire [BATCH*BLOCK_OUT*PART_W-1:0]    partial
);
    localparam DOT_W = W_BITS + CNT_W;  // sum_c a_i * idx < BLOCK_IN * 2^W_BITS
    genvar b, o, j, c;
    generate
        for (b = 0; b < BATCH; b = b + 1) begin : batch_row
            wire [BLOCK_IN-1:0] act = act_plane[b*BLOCK_IN +: BLOCK_IN];
            // popcount of the activation plane, shared by all outputs: the offset term
            wire [CNT_W-1:0] act_count;
            popcount #(.N(BLOCK_IN)) count_act (.bits(act), .count(act_count));
            wire [PART_W-1:0] offset = ({{(PART_W-CNT_W){1'b0}}, act_count} << W_BITS) - act_count;
            for (o = 0; o < BLOCK_OUT; o = o + 1) begin : out_col
                // one popcount tree per weight bit plane: popcount(a_i & w_j)
                wire [W_BITS*CNT_W-1:0] plane_count;
                for (j = 0; j < W_BITS; j = j + 1) begin : plane
                    wire [BLOCK_IN-1:0] w_plane;
                    for (c = 0; c < BLOCK_IN; c = c + 1) begin : lane
                        assign w_plane[c] = weight_idx[(o*BLOCK_IN + c)*W_BITS + j];
                    end
                    popcount #(.N(BLOCK_IN)) count_plane (.bits(act & w_plane),
                                                          .count(plane_count[j*CNT_W +: CNT_W]));
                end
                reg [DOT_W-1:0] dot;  // sum_j 2^j popcount(a_i & w_j)
                integer k;
                always @* begin
                    dot = 0;
                    for (k = 0; k < W_BITS; k = k + 1)
                        dot = dot + (plane_count[k*CNT_W +: CNT_W] << k);
                end
                assign partial[(b*BLOCK_OUT + o)*PART_W +: PART_W] = ({{(PART_W-DOT_W){1'b0}}, dot} << 1) - offset;
            end
        end
    endgenerate
endmodule

// gemm_onehot -- bit-serial GEMM slice producing per-level sums from one-hot index planes.
//
// For LUT (k-quantile) weights the core does not decode weights at all: each weight index
// selects one of LEVELS one-hot planes, and the slice counts, per output and level, the set
// activation bits whose weight falls in that level. The LUT is applied once per output, after
// the whole reduction, by lut_apply (one multiplier per output).
//
// Ports:
//   act_plane  [BATCH*BLOCK_IN]               bit i of activation code (b, c) at b*BLOCK_IN + c
//   weight_idx [BLOCK_OUT*BLOCK_IN*W_BITS]    weight index of lane (o, c) at (o*BLOCK_IN + c)*W_BITS
//   level_count[BATCH*BLOCK_OUT*LEVELS*CNT_W] unsigned #{c : a_i[b, c] = 1 and idx[o, c] = q}
//                                             at ((b*BLOCK_OUT + o)*LEVELS + q)*CNT_W
// Timing: combinational; bitserial_acc adds level_count << i, one activation bit per clock.
module gemm_onehot #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 16,
    parameter BLOCK_OUT = 16,
    parameter W_BITS = 2,
    parameter LEVELS = 1 << W_BITS,
    parameter CNT_W = $clog2(BLOCK_IN + 1)
) (
    input  wire [BATCH*BLOCK_IN-1:0]               act_plane,
    input  wire [BLOCK_OUT*BLOCK_IN*W_BITS-1:0]    weight_idx,
    output wire [BATCH*BLOCK_OUT*LEVELS*CNT_W-1:0] level_count
);
    genvar b, o, q, c;
    generate
        for (b = 0; b < BATCH; b = b + 1) begin : batch_row
            wire [BLOCK_IN-1:0] act = act_plane[b*BLOCK_IN +: BLOCK_IN];
            for (o = 0; o < BLOCK_OUT; o = o + 1) begin : out_col
                for (q = 0; q < LEVELS; q = q + 1) begin : level
                    // the one-hot plane of level q: lanes whose weight index is q
                    wire [BLOCK_IN-1:0] onehot_plane;
                    for (c = 0; c < BLOCK_IN; c = c + 1) begin : lane
                        assign onehot_plane[c] = weight_idx[(o*BLOCK_IN + c)*W_BITS +: W_BITS] == q;
                    end
                    popcount #(.N(BLOCK_IN)) count_level (.bits(act & onehot_plane),
                        .count(level_count[((b*BLOCK_OUT + o)*LEVELS + q)*CNT_W +: CNT_W]));
                end
            end
        end
    endgenerate
endmodule

// lut_apply -- applies the int8 LUT once per output to per-level sums (one multiplier per output).
//
//   acc[b, o] = sum_q lut[o, q] * level_sum_q[b, o]
// computed level-serially: the sequencer presents level q's sums (accumulator entry src*L + q)
// and LUT column q, one level per clock, so a micro-op takes L = 2^w_bits clocks.
//
// Ports (lane n = b*BLOCK_OUT + o):
//   clk
//   enable       acc <= acc_next this clock
//   first        level 0 (start from zero)
//   level_sum    [LANES*32]     signed sums of this level
//   lut_column   [BLOCK_OUT*8]  signed int8 lut[o, q] of this level at o*8
//   acc_next     [LANES*32]     combinational running sum including this level
//   acc          [LANES*32]     registered running sum
// Timing: one level per clock; the sequencer writes acc_next on the clock of level L-1.
module lut_apply #(
    parameter BATCH = 1,
    parameter BLOCK_OUT = 16
) (
    input  wire                          clk,
    input  wire                          enable,
    input  wire                          first,
    input  wire [BATCH*BLOCK_OUT*32-1:0] level_sum,
    input  wire [BLOCK_OUT*8-1:0]        lut_column,
    output reg  [BATCH*BLOCK_OUT*32-1:0] acc_next,
    output reg  [BATCH*BLOCK_OUT*32-1:0] acc
);
    reg signed [31:0] base, sum;
    reg signed [7:0] weight;
    integer n;
    always @* begin
        for (n = 0; n < BATCH*BLOCK_OUT; n = n + 1) begin
            base = first ? 32'sd0 : acc[n*32 +: 32];
            sum = level_sum[n*32 +: 32];
            weight = lut_column[(n % BLOCK_OUT)*8 +: 8];
            acc_next[n*32 +: 32] = base + weight * sum;
        end
    end
    always @(posedge clk)
        if (enable) acc <= acc_next;
endmodule

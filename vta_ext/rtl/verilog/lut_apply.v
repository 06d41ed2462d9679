// lut_apply -- applies the int8 LUT once per output to per-level sums (one multiplier per output).
//
//   acc[b, o] = acc_init[b, o] + sum_q lut[o, q] * level_sum[b, o, q]
// computed level-serially: one multiply-add per output per clock, LEVELS clocks in total.
//
// Ports:
//   clk, start            start pulses for one clock with the operands valid; they must stay
//                         valid until done
//   level_sum [N_OUT*LEVELS*SUM_W]  unsigned per-level sums, (n*LEVELS + q)*SUM_W, n = b*BLOCK_OUT + o
//   lut       [BLOCK_OUT*LEVELS*8]  signed int8 LUT entry (o, q) at (o*LEVELS + q)*8
//   acc_init  [N_OUT*ACC_W]         signed bias / previous accumulator
//   acc       [N_OUT*ACC_W]         result, valid when done is high
//   done                            high for one clock, LEVELS clocks after start
module lut_apply #(
    parameter BATCH = 1,
    parameter BLOCK_OUT = 16,
    parameter LEVELS = 4,
    parameter SUM_W = 24,
    parameter ACC_W = 32
) (
    input  wire                                  clk,
    input  wire                                  start,
    input  wire [BATCH*BLOCK_OUT*LEVELS*SUM_W-1:0] level_sum,
    input  wire [BLOCK_OUT*LEVELS*8-1:0]         lut,
    input  wire [BATCH*BLOCK_OUT*ACC_W-1:0]      acc_init,
    output reg  [BATCH*BLOCK_OUT*ACC_W-1:0]      acc,
    output reg                                   done
);
    localparam N_OUT = BATCH * BLOCK_OUT;
    localparam Q_W = (LEVELS > 1) ? $clog2(LEVELS) : 1;
    reg [Q_W:0] level;   // LEVELS while idle
    reg busy;
    initial begin busy = 1'b0; done = 1'b0; level = 0; end

    always @(posedge clk) begin
        done <= 1'b0;
        if (start) begin
            busy <= 1'b1;
            level <= 0;
        end else if (busy) begin
            level <= level + 1'b1;
            if (level == LEVELS - 1) begin
                busy <= 1'b0;
                done <= 1'b1;
            end
        end
    end

    genvar n;
    generate
        for (n = 0; n < N_OUT; n = n + 1) begin : out_lane
            localparam O = n % BLOCK_OUT;
            wire signed [7:0] weight = lut[(O*LEVELS + level[Q_W-1:0])*8 +: 8];
            wire signed [ACC_W-1:0] sum = $signed({1'b0, level_sum[(n*LEVELS + level[Q_W-1:0])*SUM_W +: SUM_W]});
            always @(posedge clk) begin
                if (start)
                    acc[n*ACC_W +: ACC_W] <= acc_init[n*ACC_W +: ACC_W];
                else if (busy)
                    acc[n*ACC_W +: ACC_W] <= acc[n*ACC_W +: ACC_W] + weight * sum;
            end
        end
    endgenerate
endmodule

// bitserial_acc -- N accumulators fed one activation bit plane per clock, most significant first.
//
// Per clock a running sum doubles and adds the plane's partial result (no barrel shifter):
//   total    = first ? partial : 2*run + partial
//   acc_next = acc_init + total            (meaningful on the tile's last bit)
// so a tile of b_a activation bits takes exactly b_a clocks and the caller writes acc_next back
// to the accumulator buffer on the clock of the last bit.
//
// Ports:
//   clk
//   enable     run <= total this clock
//   first      this is the tile's most significant activation bit
//   partial    [N*PART_W]   signed partial sums of this bit plane, element n at n*PART_W
//   acc_init   [N*ACC_W]    signed accumulator-buffer entry read for this tile
//   acc_next   [N*ACC_W]    acc_init + the tile's sum so far (combinational)
// Timing: one activation bit per clock, no bubbles between tiles.
module bitserial_acc #(
    parameter N = 16,
    parameter PART_W = 16,
    parameter ACC_W = 32,
    parameter A_BITS = 8,
    parameter RUN_W = (PART_W + A_BITS < ACC_W) ? PART_W + A_BITS : ACC_W
) (
    input  wire                clk,
    input  wire                enable,
    input  wire                first,
    input  wire [N*PART_W-1:0] partial,
    input  wire [N*ACC_W-1:0]  acc_init,
    output reg  [N*ACC_W-1:0]  acc_next
);
    // one always block over all lanes (not N generate blocks): event-driven simulators then
    // evaluate the lanes once per input change instead of N times
    reg [N*RUN_W-1:0] run, total;
    reg signed [RUN_W-1:0] part, sum;
    integer n;
    always @* begin
        for (n = 0; n < N; n = n + 1) begin
            part = $signed(partial[n*PART_W +: PART_W]);
            sum = first ? part : ($signed(run[n*RUN_W +: RUN_W]) <<< 1) + part;
            total[n*RUN_W +: RUN_W] = sum;
            acc_next[n*ACC_W +: ACC_W] = acc_init[n*ACC_W +: ACC_W] + {{(ACC_W-RUN_W){sum[RUN_W-1]}}, sum};
        end
    end
    always @(posedge clk)
        if (enable) run <= total;
endmodule

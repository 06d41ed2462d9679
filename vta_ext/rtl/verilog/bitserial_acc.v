// bitserial_acc -- N accumulators that add a bit-serial partial result shifted by the bit index.
//
//   acc_next = (first ? acc_init : acc) + (partial << bit_index)
// so a tile of b_a activation bits takes exactly b_a clocks: the first bit starts from the
// value read from the accumulator buffer, the last bit's acc_next is written back by the caller.
//
// Ports:
//   clk
//   enable     acc <= acc_next this clock
//   first      this is activation bit 0 of a tile (start from acc_init)
//   bit_index  [IDX_W]      activation bit of this clock
//   partial    [N*PART_W]   signed partial sums, element n at n*PART_W
//   acc_init   [N*ACC_W]    signed value read from the accumulator buffer
//   acc_next   [N*ACC_W]    combinational running sum including this clock's bit
//   acc        [N*ACC_W]    registered running sum (two's complement, wraps like int32)
// Timing: one activation bit per clock, no bubbles between tiles.
module bitserial_acc #(
    parameter N = 16,
    parameter PART_W = 16,
    parameter ACC_W = 32,
    parameter IDX_W = 3
) (
    input  wire                clk,
    input  wire                enable,
    input  wire                first,
    input  wire [IDX_W-1:0]    bit_index,
    input  wire [N*PART_W-1:0] partial,
    input  wire [N*ACC_W-1:0]  acc_init,
    output wire [N*ACC_W-1:0]  acc_next,
    output reg  [N*ACC_W-1:0]  acc
);
    // one always block over all lanes (not N generate blocks): event-driven simulators then
    // evaluate the lanes once per input change instead of N times
    reg [N*ACC_W-1:0] sum;
    reg signed [ACC_W-1:0] part, base;
    integer n;
    always @* begin
        for (n = 0; n < N; n = n + 1) begin
            part = $signed(partial[n*PART_W +: PART_W]);
            base = first ? acc_init[n*ACC_W +: ACC_W] : acc[n*ACC_W +: ACC_W];
            sum[n*ACC_W +: ACC_W] = base + (part <<< bit_index);
        end
    end
    assign acc_next = sum;
    always @(posedge clk)
        if (enable) acc <= sum;
endmodule

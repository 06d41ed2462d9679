// serial_mul32 -- signed 32 x 32 -> 64-bit product over CLOCKS clocks, for the smallest parts.
//
// The unsigned product of the two's-complement bit patterns is built R = 32 / CLOCKS bits of b per
// clock: the clock's R radix-2 rows (each a 33-bit carry-chain adder, a AND'ed with one bit of b,
// which an iCE40 LUT4 folds into the adder) add into the running sum, whose low R bits are final
// and shift into `lo`. The signed product subtracts a * 2^32 when b < 0 and b * 2^32 when a < 0, as
// soft_mul32 does. About 40 LUT4 per row plus the correction, against soft_mul32's 1.7k.
//
// Ports:
//   clk
//   step [max(1, log2 CLOCKS)]  the multiply's clock, 0 .. CLOCKS-1 (the caller counts; a and b stay
//                               constant from step 0 to step CLOCKS-1)
//   a, b                        the operands
//   p                           the product, valid during step CLOCKS-1 (combinational from the
//                               registered partial sum and that clock's rows)
module serial_mul32 #(
    parameter CLOCKS = 8  // 2, 4, 8, 16 or 32
) (
    input  wire                                  clk,
    input  wire [$clog2(CLOCKS)-1:0]             step,
    input  wire signed [31:0]                    a,
    input  wire signed [31:0]                    b,
    output wire signed [63:0]                    p
);
    localparam R = 32 / CLOCKS;
    reg  [32:0] hi = 33'd0;     // the running sum's bits from R*step up (below R*step: final, in lo)
    reg  [31:0] lo = 32'd0;     // final low bits, shifted in from the top
    wire [R-1:0] chunk = b[R*step +: R];
    wire [32:0] start = (step == 0) ? 33'd0 : hi;
    wire [32:0] row [0:R];
    wire [R-1:0] out_bits;
    assign row[0] = start;
    genvar i;
    generate
        for (i = 0; i < R; i = i + 1) begin : rows
            wire [33:0] t = {1'b0, row[i]} + (chunk[i] ? {2'b0, a} : 34'd0);
            assign out_bits[i] = t[0];
            assign row[i+1] = t[33:1];
        end
    endgenerate
    always @(posedge clk) begin
        hi <= row[R];
        lo <= {out_bits, lo[31:R]};
    end
    wire [31:0] low_final = {out_bits, lo[31:R]};
    wire [31:0] high = row[R][31:0] - (a[31] ? b : 32'd0) - (b[31] ? a : 32'd0);  // the signed correction
    assign p = {high, low_final};
endmodule

// soft_mul32 -- signed 32 x 32 -> 64-bit product from adders, for parts without DSP blocks.
// The unsigned product of the two's-complement bit patterns is a column of 16 carry-chain adders,
// row i adding base-4 digit i of b times a (0, a, 2a or a precomputed 3a: a 4-way select per
// bit); the signed product subtracts a * 2^32 when b < 0 and b * 2^32 when a < 0. On an iCE40
// this is about 1.7k LUT4 where yosys' generic multiplier (a full-adder tree) takes about 3k.
module soft_mul32 (
    input  wire signed [31:0] a,
    input  wire signed [31:0] b,
    output wire signed [63:0] p
);
    wire [33:0] a3 = {2'b0, a} + {1'b0, a, 1'b0};
    wire [34:0] hi [0:16];  // running sum bits 2i .. 2i+34 before row i (the bits below 2i are final)
    wire [31:0] lo;
    assign hi[0] = 35'd0;
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : row
            wire [1:0] d = b[2*i +: 2];
            wire [33:0] pp = (d == 2'd0) ? 34'd0 : (d == 2'd1) ? {2'b0, a} : (d == 2'd2) ? {1'b0, a, 1'b0} : a3;
            wire [34:0] t = {2'b0, hi[i][34:2]} + {1'b0, pp};
            assign lo[2*i +: 2] = t[1:0];
            assign hi[i+1] = t;
        end
    endgenerate
    wire [63:0] u = {hi[16][33:2], lo};
    assign p = u - ((a[31] ? {32'd0, b} : 64'd0) << 32) - ((b[31] ? {32'd0, a} : 64'd0) << 32);
endmodule

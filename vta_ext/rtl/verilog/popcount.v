// popcount -- number of set bits of an N-bit word, as a balanced adder tree.
//
// Level l of the tree holds N >> l partial sums of l + 1 bits each (level 0 = the input bits);
// all levels live in one flat vector, level l starting at offset(l). A tree needs about half
// the adder bits of a chain and log2(N) instead of N adder delays.
//
// Ports:
//   bits  [N]              input word (N a power of two)
//   count [log2(N) + 1]    number of ones
// Timing: combinational.
module popcount #(
    parameter N = 16,
    parameter DEPTH = $clog2(N)
) (
    input  wire [N-1:0]   bits,
    output wire [DEPTH:0] count
);
    // bit offset of tree level l in the flat vector
    function integer offset(input integer l);
        integer j;
        begin
            offset = 0;
            for (j = 0; j < l; j = j + 1)
                offset = offset + (N >> j) * (j + 1);
        end
    endfunction

    wire [offset(DEPTH + 1)-1:0] tree;
    assign tree[N-1:0] = bits;
    genvar l, i;
    generate
        for (l = 1; l <= DEPTH; l = l + 1) begin : level
            for (i = 0; i < (N >> l); i = i + 1) begin : pair
                assign tree[offset(l) + i*(l+1) +: l+1] =
                    tree[offset(l-1) + (2*i)*l +: l] + tree[offset(l-1) + (2*i+1)*l +: l];
            end
        end
    endgenerate
    assign count = tree[offset(DEPTH) +: DEPTH + 1];
endmodule

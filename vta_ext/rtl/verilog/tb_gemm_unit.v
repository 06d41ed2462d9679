// tb_gemm_unit -- test bench (simulation only): runs N_TILES tiles through gemm_unit.
//
// Reads one hex vector per tile from the files named by plusargs +act= +wgt= +lut= +acc= +bits=
// (bits: the tile's a_bits), clocks b_a activation bits per tile (MSB first) and prints, per tile,
//   "tile <t> cycles <n> acc <hex of acc_next at the last bit>"
module tb_gemm_unit;
    parameter BATCH = 1, BLOCK_IN = 16, BLOCK_OUT = 16, A_BITS = 8, W_BITS = 2, WEIGHT_MODE = 0;
    parameter N_TILES = 1;
    localparam LEVELS = 1 << W_BITS;
    localparam ACC_ELEMS = BATCH * BLOCK_OUT * (WEIGHT_MODE == 1 ? LEVELS : 1);

    reg clk = 0, enable = 0, first = 0;
    reg [3:0] bit_index = 0;
    reg [BATCH*BLOCK_IN*A_BITS-1:0] act_tile;
    reg [BLOCK_OUT*BLOCK_IN*W_BITS-1:0] weight_idx;
    reg [BLOCK_OUT*LEVELS*8-1:0] lut;
    reg [ACC_ELEMS*32-1:0] acc_init;
    wire [ACC_ELEMS*32-1:0] acc_next;

    reg [BATCH*BLOCK_IN*A_BITS-1:0] act_mem [0:N_TILES-1];
    reg [BLOCK_OUT*BLOCK_IN*W_BITS-1:0] wgt_mem [0:N_TILES-1];
    reg [BLOCK_OUT*LEVELS*8-1:0] lut_mem [0:N_TILES-1];
    reg [ACC_ELEMS*32-1:0] acc_mem [0:N_TILES-1];
    reg [3:0] bits_mem [0:N_TILES-1];

    gemm_unit #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT), .A_BITS(A_BITS),
                .W_BITS(W_BITS), .WEIGHT_MODE(WEIGHT_MODE))
        dut (.clk(clk), .enable(enable), .first(first), .bit_index(bit_index), .act_tile(act_tile),
             .weight_idx(weight_idx), .lut(lut), .acc_init(acc_init), .acc_next(acc_next));

    always #5 clk = ~clk;

    reg [1023:0] path;
    integer t, i, cycles;
    initial begin
        if ($value$plusargs("act=%s", path)) $readmemh(path, act_mem);
        if ($value$plusargs("wgt=%s", path)) $readmemh(path, wgt_mem);
        if ($value$plusargs("lut=%s", path)) $readmemh(path, lut_mem);
        if ($value$plusargs("acc=%s", path)) $readmemh(path, acc_mem);
        if ($value$plusargs("bits=%s", path)) $readmemh(path, bits_mem);
        @(negedge clk);
        for (t = 0; t < N_TILES; t = t + 1) begin
            act_tile = act_mem[t]; weight_idx = wgt_mem[t]; lut = lut_mem[t]; acc_init = acc_mem[t];
            cycles = 0;
            for (i = 0; i < bits_mem[t]; i = i + 1) begin
                enable = 1; first = (i == 0); bit_index = bits_mem[t] - 1 - i;
                #1;
                if (i == bits_mem[t] - 1) $display("tile %0d cycles %0d acc %h", t, cycles + 1, acc_next);
                @(negedge clk);
                cycles = cycles + 1;
            end
            enable = 0;
        end
        $finish;
    end
endmodule

// tb_qnn_core -- test bench (simulation only): runs one instruction stream on qnn_core against
// dram_model and prints "cycles <n>" (clocks from start to done), then writes the DRAM back.
// Plusargs: +dram=<hex of DRAM_BYTES bytes, one per line> +dram_out=<path>.
`include "isa_fields.vh"
module tb_qnn_core;
    parameter BATCH = 1, BLOCK_IN = 16, BLOCK_OUT = 16, A_BITS = 8, W_BITS = 8, LUT_MODE = 2;
    parameter LUT_ENTRIES = 256, INP_DEPTH = 256, WGT_DEPTH = 256, ACC_DEPTH = 256, UOP_DEPTH = 256;
    parameter PRM_DEPTH = 16, BPC = 8, LATENCY = 32, QDEPTH = 64, MAXE = 256, WR_W = 2048, ALU_LANES = BATCH * BLOCK_OUT;
    parameter SOFT_MUL = 0, MUL_CLOCKS = 1, GEMM_LANES = BLOCK_OUT, PRM_BEATS = 0;
    parameter DRAM_BYTES = 4096, INSN_BASE = 0, INSN_COUNT = 1, MAX_CYCLES = 10000000;

    reg clk = 0;
    always #5 clk = ~clk;
    reg [7:0] dram [0:DRAM_BYTES-1];
    reg [63:0] now = 0;
    always @(posedge clk) now <= now + 1;

    reg start = 0;
    wire done;
    wire f_ar_valid, f_ar_ready, f_r_valid, f_r_ready, l_ar_valid, l_ar_ready, l_r_valid, l_r_ready;
    wire c_ar_valid, c_ar_ready, c_r_valid, c_r_ready, s_aw_valid, s_aw_ready, s_w_valid, s_w_ready, s_b_valid;
    wire [31:0] f_ar_addr, f_ar_len, l_ar_addr, l_ar_len, c_ar_addr, c_ar_len, s_aw_addr, s_aw_len;
    wire [BPC*8-1:0] f_r_data, l_r_data, c_r_data, s_w_data;
    wire [15:0] f_r_bytes, l_r_bytes, c_r_bytes, s_w_bytes;

    qnn_core #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT), .A_BITS(A_BITS), .W_BITS(W_BITS),
               .LUT_MODE(LUT_MODE), .LUT_ENTRIES(LUT_ENTRIES), .INP_DEPTH(INP_DEPTH), .WGT_DEPTH(WGT_DEPTH),
               .ACC_DEPTH(ACC_DEPTH), .UOP_DEPTH(UOP_DEPTH), .PRM_DEPTH(PRM_DEPTH), .BPC(BPC), .QDEPTH(QDEPTH),
               .MAXE(MAXE), .WR_W(WR_W), .ALU_LANES(ALU_LANES), .SOFT_MUL(SOFT_MUL), .MUL_CLOCKS(MUL_CLOCKS),
               .GEMM_LANES(GEMM_LANES), .PRM_BEATS(PRM_BEATS))
        dut (.clk(clk), .start(start), .insn_base(INSN_BASE), .insn_count(INSN_COUNT), .done(done),
             .f_ar_valid(f_ar_valid), .f_ar_addr(f_ar_addr), .f_ar_len(f_ar_len), .f_ar_ready(f_ar_ready),
             .f_r_valid(f_r_valid), .f_r_data(f_r_data), .f_r_bytes(f_r_bytes), .f_r_ready(f_r_ready),
             .l_ar_valid(l_ar_valid), .l_ar_addr(l_ar_addr), .l_ar_len(l_ar_len), .l_ar_ready(l_ar_ready),
             .l_r_valid(l_r_valid), .l_r_data(l_r_data), .l_r_bytes(l_r_bytes), .l_r_ready(l_r_ready),
             .c_ar_valid(c_ar_valid), .c_ar_addr(c_ar_addr), .c_ar_len(c_ar_len), .c_ar_ready(c_ar_ready),
             .c_r_valid(c_r_valid), .c_r_data(c_r_data), .c_r_bytes(c_r_bytes), .c_r_ready(c_r_ready),
             .s_aw_valid(s_aw_valid), .s_aw_addr(s_aw_addr), .s_aw_len(s_aw_len), .s_aw_ready(s_aw_ready),
             .s_w_valid(s_w_valid), .s_w_data(s_w_data), .s_w_bytes(s_w_bytes), .s_w_ready(s_w_ready),
             .s_b_valid(s_b_valid));
    dram_read_port #(.BPC(BPC), .LATENCY(LATENCY)) f_port (.clk(clk), .now(now), .ar_valid(f_ar_valid),
        .ar_addr(f_ar_addr), .ar_len(f_ar_len), .ar_ready(f_ar_ready), .r_valid(f_r_valid), .r_data(f_r_data),
        .r_bytes(f_r_bytes), .r_ready(f_r_ready));
    dram_read_port #(.BPC(BPC), .LATENCY(LATENCY)) l_port (.clk(clk), .now(now), .ar_valid(l_ar_valid),
        .ar_addr(l_ar_addr), .ar_len(l_ar_len), .ar_ready(l_ar_ready), .r_valid(l_r_valid), .r_data(l_r_data),
        .r_bytes(l_r_bytes), .r_ready(l_r_ready));
    dram_read_port #(.BPC(BPC), .LATENCY(LATENCY)) c_port (.clk(clk), .now(now), .ar_valid(c_ar_valid),
        .ar_addr(c_ar_addr), .ar_len(c_ar_len), .ar_ready(c_ar_ready), .r_valid(c_r_valid), .r_data(c_r_data),
        .r_bytes(c_r_bytes), .r_ready(c_r_ready));
    dram_write_port #(.BPC(BPC), .LATENCY(LATENCY)) s_port (.clk(clk), .now(now), .aw_valid(s_aw_valid),
        .aw_addr(s_aw_addr), .aw_len(s_aw_len), .aw_ready(s_aw_ready), .w_valid(s_w_valid), .w_data(s_w_data),
        .w_bytes(s_w_bytes), .w_ready(s_w_ready), .b_valid(s_b_valid));

    reg [1023:0] path, out_path;
    reg [63:0] t0;
    initial begin
        if (!$value$plusargs("dram=%s", path) || !$value$plusargs("dram_out=%s", out_path)) begin
            $display("error: +dram= and +dram_out= are required");
            $finish;
        end
        $readmemh(path, dram);
        @(negedge clk);
        start = 1;
        @(posedge clk);
        t0 = now;
        #1 start = 0;
        while (!done && now - t0 < MAX_CYCLES) @(posedge clk);
        if (!done) $display("timeout after %0d cycles", now - t0);
        else $display("cycles %0d", now - t0);
        #1 $writememh(out_path, dram);
        $finish;
    end
endmodule

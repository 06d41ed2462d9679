// tb_mvau_stream -- test bench (simulation only): N_VEC input vectors through mvau_stream.
//
// Reads the weight words (+wgt=), threshold words (+thr=) and input beats (+act=, N_VEC*SF beats)
// as hex files, writes the memories through the configuration ports, then streams the beats in.
// +stall=<percent> drops in_valid / out_ready at random (seed +seed=) to exercise back-pressure.
// Prints one line per output beat: "out <beat> cycle <clock> data <hex>".
module tb_mvau_stream;
    parameter PE = 2, SIMD = 4, MW = 8, MH = 4, W_BITS = 2, A_BITS = 2, O_BITS = 2, N_VEC = 2;
    localparam ACC_W = W_BITS + A_BITS + $clog2(MW) + 1;
    localparam SF = MW / SIMD, NF = MH / PE, T = (1 << O_BITS) - 1;
    localparam WA_W = (NF * SF > 1) ? $clog2(NF * SF) : 1, TA_W = (NF > 1) ? $clog2(NF) : 1;

    reg clk = 0, rst = 1;
    reg wgt_we = 0, thr_we = 0;
    reg [31:0] wgt_addr = 0, thr_addr = 0;
    reg [PE*SIMD*W_BITS-1:0] wgt_data = 0;
    reg [PE*T*ACC_W-1:0] thr_data = 0;
    reg in_valid = 0, out_ready = 0;
    reg [SIMD*A_BITS-1:0] in_data = 0;
    wire in_ready, out_valid;
    wire [PE*O_BITS-1:0] out_data;

    reg [PE*SIMD*W_BITS-1:0] wgt_mem [0:NF*SF-1];
    reg [PE*T*ACC_W-1:0] thr_mem [0:NF-1];
    reg [SIMD*A_BITS-1:0] act_mem [0:N_VEC*SF-1];

    mvau_stream #(.PE(PE), .SIMD(SIMD), .MW(MW), .MH(MH), .W_BITS(W_BITS), .A_BITS(A_BITS), .O_BITS(O_BITS))
        dut (.clk(clk), .rst(rst), .wgt_we(wgt_we), .wgt_addr(wgt_addr[WA_W-1:0]), .wgt_data(wgt_data),
             .thr_we(thr_we), .thr_addr(thr_addr[TA_W-1:0]), .thr_data(thr_data),
             .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
             .out_valid(out_valid), .out_ready(out_ready), .out_data(out_data));

    always #5 clk = ~clk;

    reg [1023:0] path;
    integer i, sent = 0, got = 0, cycle = 0, stall = 0, seed = 1;
    initial begin
        if ($value$plusargs("wgt=%s", path)) $readmemh(path, wgt_mem);
        if ($value$plusargs("thr=%s", path)) $readmemh(path, thr_mem);
        if ($value$plusargs("act=%s", path)) $readmemh(path, act_mem);
        if (!$value$plusargs("stall=%d", stall)) stall = 0;
        if (!$value$plusargs("seed=%d", seed)) seed = 1;
        for (i = 0; i < NF*SF; i = i + 1) begin
            @(negedge clk); wgt_we = 1; wgt_addr = i; wgt_data = wgt_mem[i];
        end
        for (i = 0; i < NF; i = i + 1) begin
            @(negedge clk); wgt_we = 0; thr_we = 1; thr_addr = i; thr_data = thr_mem[i];
        end
        @(negedge clk); wgt_we = 0; thr_we = 0; rst = 0;
    end

    // stimulus and sink change on the falling edge; the DUT samples on the rising edge
    always @(negedge clk) if (!rst) begin
        in_valid = (sent < N_VEC*SF) && (stall == 0 || ($urandom(seed) % 100) >= stall);
        if (sent < N_VEC*SF) in_data = act_mem[sent];
        out_ready = (stall == 0 || ($urandom(seed) % 100) >= stall);
    end
    always @(posedge clk) if (!rst) begin
        cycle <= cycle + 1;
        if (in_valid && in_ready) sent <= sent + 1;
        if (out_valid && out_ready) begin
            $display("out %0d cycle %0d data %h", got, cycle, out_data);
            got <= got + 1;
            if (got + 1 == N_VEC * NF) $finish;
        end
        if (cycle > 100000 + N_VEC * NF * SF * A_BITS * 20) begin
            $display("timeout after %0d cycles, %0d beats out", cycle, got);
            $finish;
        end
    end
endmodule

// tb_qnn_compute -- test bench (simulation only): replays a co-simulation command file on qnn_compute.
//
// The file (plusarg +commands=) holds N_RECORDS hex records {payload, addr[24], scope[4], kind[4]}:
//   kind 1  host write of one buffer entry (what a LOAD put into the SRAM)
//   kind 2  execute the instruction in payload[INSN_BITS-1:0]; prints "insn <seq> cycles <n>"
//   kind 3  read accumulator entry addr; prints "acc <addr> <hex>"
// cycles counts clocks from the one that accepts the instruction to the one that raises done.
`include "isa_fields.vh"
module tb_qnn_compute;
    parameter BATCH = 1, BLOCK_IN = 16, BLOCK_OUT = 16, A_BITS = 8, W_BITS = 8, LUT_MODE = 2;
    parameter LUT_ENTRIES = 256, INP_DEPTH = 256, WGT_DEPTH = 256, ACC_DEPTH = 256, UOP_DEPTH = 256;
    parameter PRM_DEPTH = 16, WR_W = 4096, N_RECORDS = 1;
    localparam REC_W = WR_W + 32;

    reg clk = 0;
    reg insn_valid = 0, wr_en = 0;
    reg [`INSN_BITS-1:0] insn = 0;
    reg [2:0] wr_scope = 0;
    reg [23:0] wr_addr = 0, rd_addr = 0;
    reg [WR_W-1:0] wr_data = 0;
    wire insn_ready, done;
    wire [BATCH*BLOCK_OUT*32-1:0] rd_data;

    qnn_compute #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT), .A_BITS(A_BITS),
                  .W_BITS(W_BITS), .LUT_MODE(LUT_MODE), .LUT_ENTRIES(LUT_ENTRIES),
                  .INP_DEPTH(INP_DEPTH), .WGT_DEPTH(WGT_DEPTH), .ACC_DEPTH(ACC_DEPTH),
                  .UOP_DEPTH(UOP_DEPTH), .PRM_DEPTH(PRM_DEPTH), .WR_W(WR_W))
        dut (.clk(clk), .insn_valid(insn_valid), .insn(insn), .insn_ready(insn_ready), .done(done),
             .wr_en(wr_en), .wr_scope(wr_scope), .wr_addr(wr_addr), .wr_data(wr_data),
             .ld_en(1'b0), .ld_scope(3'd0), .ld_addr(24'd0), .ld_data({WR_W{1'b0}}),
             .rd_addr(rd_addr), .rd_data(rd_data));

    always #5 clk = ~clk;

    reg [REC_W-1:0] records [0:N_RECORDS-1];
    reg [1023:0] path;
    integer r, n_insn, cycles;
    initial begin
        if (!$value$plusargs("commands=%s", path)) begin
            $display("error: no +commands= file");
            $finish;
        end
        $readmemh(path, records);
        n_insn = 0;
        @(negedge clk);
        for (r = 0; r < N_RECORDS; r = r + 1) begin
            case (records[r][3:0])
                4'd1: begin
                    wr_en = 1; wr_scope = records[r][6:4]; wr_addr = records[r][31:8];
                    wr_data = records[r][REC_W-1:32];
                    @(negedge clk);
                    wr_en = 0;
                end
                4'd2: begin
                    insn = records[r][32 +: `INSN_BITS];
                    insn_valid = 1;
                    cycles = 0;
                    @(posedge clk);  // accepted on this clock
                    #1 insn_valid = 0;
                    cycles = 1;
                    while (!done) begin
                        @(posedge clk);
                        #1 cycles = cycles + 1;
                    end
                    $display("insn %0d cycles %0d", n_insn, cycles);
                    n_insn = n_insn + 1;
                    @(negedge clk);
                end
                4'd3: begin
                    rd_addr = records[r][31:8];
                    #1 $display("acc %0d %h", rd_addr, rd_data);
                end
                default: ;
            endcase
        end
        $finish;
    end
endmodule

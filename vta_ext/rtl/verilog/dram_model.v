// dram_model -- test-bench DRAM behind the core's AXI4-like ports (simulation only).
//
// One byte array (the DRAM image, $readmemh from +dram=, written back to +dram_out= at the end)
// serves three read ports and one write port independently, as separate AXI masters on a
// memory controller would be served, each with the same fixed latency and bandwidth:
//   read:  a request accepted on clock t delivers its first beat no earlier than t + LATENCY,
//          then one beat of up to BPC bytes per clock (r_ready permitting), requests in order;
//   write: beats are accepted every clock; a request's response comes one clock after its last
//          beat, and no earlier than LATENCY clocks after the request was accepted.
module dram_read_port #(
    parameter BPC = 8,
    parameter LATENCY = 32,
    parameter QN = 4096
) (
    input  wire             clk,
    input  wire [63:0]      now,
    input  wire             ar_valid,
    input  wire [31:0]      ar_addr,
    input  wire [31:0]      ar_len,
    output wire             ar_ready,
    output wire             r_valid,
    output reg  [BPC*8-1:0] r_data,
    output wire [15:0]      r_bytes,
    input  wire             r_ready
);
    reg [31:0] q_addr [0:QN-1];
    reg [31:0] q_len [0:QN-1];
    reg [63:0] q_time [0:QN-1];
    integer head = 0, tail = 0, b;
    reg [31:0] off = 0;
    assign ar_ready = (tail - head) < QN;
    wire pending = head != tail;
    wire [31:0] left = pending ? q_len[head % QN] - off : 0;
    assign r_valid = pending && now >= q_time[head % QN] + LATENCY;
    assign r_bytes = (left < BPC) ? left[15:0] : BPC;
    always @* begin
        r_data = 0;
        if (pending)
            for (b = 0; b < BPC; b = b + 1)
                if (b < r_bytes) r_data[b*8 +: 8] = tb_qnn_core.dram[q_addr[head % QN] + off + b];
    end
    always @(posedge clk) begin
        if (ar_valid && ar_ready) begin
            q_addr[tail % QN] <= ar_addr; q_len[tail % QN] <= ar_len; q_time[tail % QN] <= now;
            tail <= tail + 1;
        end
        if (r_valid && r_ready) begin
            if (left <= BPC) begin
                head <= head + 1;
                off <= 0;
            end else
                off <= off + BPC;
        end
    end
endmodule

module dram_write_port #(
    parameter BPC = 8,
    parameter LATENCY = 32,
    parameter QN = 4096
) (
    input  wire             clk,
    input  wire [63:0]      now,
    input  wire             aw_valid,
    input  wire [31:0]      aw_addr,
    input  wire [31:0]      aw_len,
    output wire             aw_ready,
    input  wire             w_valid,
    input  wire [BPC*8-1:0] w_data,
    input  wire [15:0]      w_bytes,
    output wire             w_ready,
    output wire             b_valid
);
    reg [31:0] q_addr [0:QN-1];
    reg [31:0] q_len [0:QN-1];
    reg [63:0] q_time [0:QN-1];
    reg [63:0] resp_time [0:QN-1];
    integer head = 0, tail = 0, r_head = 0, r_tail = 0, b;
    reg [31:0] off = 0;
    assign aw_ready = (tail - head) < QN;
    assign w_ready = head != tail;
    assign b_valid = r_head != r_tail && now >= resp_time[r_head % QN];
    always @(posedge clk) begin
        if (aw_valid && aw_ready) begin
            q_addr[tail % QN] <= aw_addr; q_len[tail % QN] <= aw_len; q_time[tail % QN] <= now;
            tail <= tail + 1;
        end
        if (w_valid && w_ready) begin
            for (b = 0; b < BPC; b = b + 1)
                if (b < w_bytes) tb_qnn_core.dram[q_addr[head % QN] + off + b] <= w_data[b*8 +: 8];
            if (off + w_bytes >= q_len[head % QN]) begin
                resp_time[r_tail % QN] <= (now + 1 > q_time[head % QN] + LATENCY) ? now + 1 : q_time[head % QN] + LATENCY;
                r_tail <= r_tail + 1;
                head <= head + 1;
                off <= 0;
            end else
                off <= off + w_bytes;
        end
        if (b_valid)
            r_head <= r_head + 1;
    end
endmodule

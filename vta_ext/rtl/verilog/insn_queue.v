// insn_queue -- first-in first-out queue of WIDTH-bit words (instruction queues of the core).
//
// Ports: push/push_data (taken when !full), pop (taken when !empty), head (the oldest word,
// combinational), empty, full. DEPTH entries (a power of two; 1 is one register).
// Timing: a pushed word is visible at head on the next clock; push and pop may share a clock.
module insn_queue #(
    parameter WIDTH = 192,
    parameter DEPTH = 16
) (
    input  wire             clk,
    input  wire             push,
    input  wire [WIDTH-1:0] push_data,
    input  wire             pop,
    output wire [WIDTH-1:0] head,
    output wire             empty,
    output wire             full
);
    generate
        if (DEPTH == 1) begin : one_entry
            // one register and its valid bit: the head needs no read multiplexer (the iCE40 cores,
            // where two entries' 2:1 selects cost ~200 LUT4 per queue)
            reg [WIDTH-1:0] word;
            reg valid = 1'b0;
            assign head = word;
            assign empty = !valid;
            assign full = valid;
            always @(posedge clk) begin
                if (pop && valid) valid <= 1'b0;
                if (push && !valid) begin
                    word <= push_data;
                    valid <= 1'b1;
                end
            end
        end else begin : entries
            localparam AW = $clog2(DEPTH);
            reg [WIDTH-1:0] mem [0:DEPTH-1];
            reg [AW:0] wr_ptr = 0, rd_ptr = 0;
            // the read address is its own register without an initial value, so yosys folds it into a
            // synchronous block-RAM read port (it does not fold a register with an init value); it holds
            // rd_ptr's low bits from the first clock on, and head is only used when the queue is not empty
            reg [AW-1:0] rd_addr;
            wire [AW:0] rd_next = rd_ptr + (pop && !empty);
            // the occupancy is taken modulo 2^(AW+1): compared with DEPTH at 32 bits, the difference of
            // wrapped pointers would be negative and the queue would never be full
            wire [AW:0] used = wr_ptr - rd_ptr;
            assign empty = wr_ptr == rd_ptr;
            assign full = used == DEPTH;
            assign head = mem[rd_addr];
            always @(posedge clk) begin
                if (push && !full) begin
                    mem[wr_ptr[AW-1:0]] <= push_data;
                    wr_ptr <= wr_ptr + 1'b1;
                end
                rd_ptr <= rd_next;
                rd_addr <= rd_next[AW-1:0];
            end
        end
    endgenerate
endmodule

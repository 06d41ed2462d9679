// dma_byte_write -- dma_write for a port of one byte per beat (dma_bytes_per_cycle = 1).
//
// Same SRAM side, DRAM side and timing as dma_write, except that the caller gives the row length
// in bytes (ROW_BYTES = ROW_ELEMS * ELEM_BYTES, formed with shifts) and the counters are as wide
// as the fields that feed them. A beat is one byte and never crosses a row, so the element read
// from SRAM is held whole and sent one byte per clock through a byte multiplexer; the next
// element is read on the clock of the last byte, so bytes leave back to back. This replaces the
// disassembly buffer and its barrel shifters (thousands of LUT4 on an iCE40).
module dma_byte_write #(
    parameter MAXE = 64,
    parameter CW = 16,   // bits of rows and row_elems
    parameter AW = 24    // bits of the SRAM address
) (
    input  wire                clk,
    input  wire                start,
    input  wire [31:0]         base,
    input  wire [31:0]         stride,
    input  wire [CW-1:0]       rows,
    input  wire [CW-1:0]       row_elems,
    input  wire [31:0]         row_bytes,   // row_elems * elem_bytes
    input  wire [15:0]         elem_bytes,  // 1 .. MAXE
    input  wire [AW-1:0]       sram_base,
    output reg                 done,
    output wire                busy,
    output reg  [AW-1:0]       sr_addr,
    input  wire [MAXE*8-1:0]   sr_data,
    output wire                aw_valid,
    output reg  [31:0]         aw_addr,
    output wire [31:0]         aw_len,
    input  wire                aw_ready,
    output wire                w_valid,
    output wire [7:0]          w_data,
    output wire [15:0]         w_bytes,
    input  wire                w_ready,
    input  wire                b_valid
);
    localparam EB = $clog2(MAXE + 1);

    reg          active = 1'b0;
    reg [CW-1:0] req_left, resp_left, rows_left, col, last_col;
    reg [31:0]   step, len;  // latched: the caller's inputs are only valid with start
    reg [EB-1:0] e_last, idx;  // the element's last byte; the byte on the port
    reg          have = 1'b0;  // element holds bytes not yet sent
    reg [MAXE*8-1:0] element;
    initial done = 1'b0;

    assign busy = active;
    assign aw_valid = active && req_left != 0;
    assign aw_len = len;
    assign w_valid = active && have;
    assign w_data = element[idx*8 +: 8];
    assign w_bytes = 16'd1;
    wire send = w_valid && w_ready;
    wire last_byte = idx == e_last;
    wire fetch = active && rows_left != 0 && (!have || (send && last_byte));

    always @(posedge clk) begin
        done <= 1'b0;
        if (start) begin
            active <= 1'b1;
            len <= row_bytes;
            step <= stride;
            e_last <= elem_bytes[EB-1:0] - 1'b1;
            req_left <= (row_elems == 0) ? {CW{1'b0}} : rows;
            resp_left <= (row_elems == 0) ? {CW{1'b0}} : rows;
            rows_left <= (row_elems == 0) ? {CW{1'b0}} : rows;
            last_col <= row_elems - 1'b1;
            col <= 0;
            aw_addr <= base;
            sr_addr <= sram_base;
            have <= 1'b0;
        end else if (active) begin
            if (aw_valid && aw_ready) begin
                req_left <= req_left - 1'b1;
                aw_addr <= aw_addr + step;
            end
            if (fetch) begin
                element <= sr_data;
                idx <= 0;
                have <= 1'b1;
                sr_addr <= sr_addr + 1'b1;
                if (col == last_col) begin
                    col <= 0;
                    rows_left <= rows_left - 1'b1;
                end else
                    col <= col + 1'b1;
            end else if (send) begin
                if (last_byte) have <= 1'b0;
                else idx <= idx + 1'b1;
            end
            if (b_valid)
                resp_left <= resp_left - 1'b1;
            if (resp_left == 0 || (resp_left == 1 && b_valid)) begin
                active <= 1'b0;
                done <= 1'b1;
            end
        end
    end
endmodule

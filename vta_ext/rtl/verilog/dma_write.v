// dma_write -- the 2-D DMA of a STORE: SRAM entries -> DRAM rows.
//
// SRAM side: ROWS * ROW_ELEMS consecutive entries from SRAM_BASE, read one per clock through an
// asynchronous read port (sr_addr -> sr_data, already packed to ELEM_BYTES raw bytes by the caller).
// DRAM side: row r at byte BASE + r*STRIDE, ROW_ELEMS*ELEM_BYTES bytes, on an AXI4-like write
// port: aw (address + length in bytes, one request per row, issued back to back), w (beats of
// up to BPC bytes, w_bytes valid, in request order, never crossing a row), b (one response per
// request, which the DRAM model gives no earlier than its latency after the request).
// Timing: start is a one-clock pulse; done pulses once every row's response has arrived.
module dma_write #(
    parameter MAXE = 64,
    parameter BPC = 8
) (
    input  wire                clk,
    input  wire                start,
    input  wire [31:0]         base,
    input  wire [31:0]         stride,
    input  wire [31:0]         rows,
    input  wire [31:0]         row_elems,
    input  wire [15:0]         elem_bytes,
    input  wire [23:0]         sram_base,
    output reg                 done,
    output wire                busy,
    output reg  [23:0]         sr_addr,
    input  wire [MAXE*8-1:0]   sr_data,
    output wire                aw_valid,
    output reg  [31:0]         aw_addr,
    output wire [31:0]         aw_len,
    input  wire                aw_ready,
    output wire                w_valid,
    output reg  [BPC*8-1:0]    w_data,
    output wire [15:0]         w_bytes,
    input  wire                w_ready,
    input  wire                b_valid
);
    localparam CAP = MAXE + BPC;

    reg        active = 1'b0;
    reg [31:0] req_left, elems_left, resp_left, row_bytes, row_left, n_elems, rows_to_send;
    reg [15:0] e_bytes;
    reg [31:0] step;  // the row stride, latched: the caller's inputs are only valid with start
    reg [CAP*8-1:0] buffer;
    reg [15:0] count = 0;
    initial done = 1'b0;

    assign busy = active;
    assign aw_valid = active && req_left != 0;
    assign aw_len = n_elems * e_bytes;
    wire [31:0] beat = (row_left < BPC) ? row_left : BPC;
    assign w_bytes = beat[15:0];
    assign w_valid = active && row_left != 0 && count >= beat;
    wire send = w_valid && w_ready;
    wire fetch = active && elems_left != 0 && (count - (send ? beat[15:0] : 16'd0)) + e_bytes <= CAP;

    integer b;
    always @*
        for (b = 0; b < BPC; b = b + 1)
            w_data[b*8 +: 8] = (b < beat) ? buffer[b*8 +: 8] : 8'd0;

    // buffer update: drop the sent beat, append the fetched element after what remains. The buffer
    // is zero above its count bytes, so appending is an OR of the element shifted by remain bytes:
    // one barrel shifter, not a byte multiplexer per (buffer byte, element byte) pair, which grew as
    // CAP x MAXE (16k LUT4 of a 26-byte element on an iCE40).
    wire [15:0] remain = count - (send ? beat[15:0] : 16'd0);
    reg [MAXE*8-1:0] element;  // sr_data's first e_bytes bytes
    always @*
        for (b = 0; b < MAXE; b = b + 1)
            element[b*8 +: 8] = (b < e_bytes) ? sr_data[b*8 +: 8] : 8'd0;
    wire [CAP*8-1:0] kept = send ? (buffer >> (beat * 8)) : buffer;
    wire [CAP*8-1:0] appended = {{(CAP - MAXE)*8{1'b0}}, element} << (remain * 8);
    wire [CAP*8-1:0] next_buffer = fetch ? (kept | appended) : kept;

    always @(posedge clk) begin
        done <= 1'b0;
        if (start) begin
            active <= 1'b1;
            n_elems <= row_elems;
            e_bytes <= elem_bytes;
            step <= stride;
            req_left <= (row_elems == 0) ? 32'd0 : rows;
            resp_left <= (row_elems == 0) ? 32'd0 : rows;
            elems_left <= rows * row_elems;
            row_bytes <= row_elems * elem_bytes;
            row_left <= (rows == 0) ? 32'd0 : row_elems * elem_bytes;
            rows_to_send <= rows;
            aw_addr <= base;
            sr_addr <= sram_base;
            count <= 0;
            buffer <= 0;
        end else if (active) begin
            if (aw_valid && aw_ready) begin
                req_left <= req_left - 1'b1;
                aw_addr <= aw_addr + step;
            end
            buffer <= next_buffer;
            count <= remain + (fetch ? e_bytes : 16'd0);
            if (fetch) begin
                elems_left <= elems_left - 1'b1;
                sr_addr <= sr_addr + 1'b1;
            end
            if (send) begin
                if (row_left == beat) begin  // the row's last beat: on to the next row
                    rows_to_send <= rows_to_send - 1'b1;
                    row_left <= (rows_to_send > 1) ? row_bytes : 32'd0;
                end else
                    row_left <= row_left - beat;
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

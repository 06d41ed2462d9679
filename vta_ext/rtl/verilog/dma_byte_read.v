// dma_byte_read -- dma_read for a port of one byte per beat (dma_bytes_per_cycle = 1).
//
// Same DRAM side, SRAM side and timing as dma_read, except that the caller gives the row length
// in bytes (ROW_BYTES = ROW_ELEMS * ELEM_BYTES, which it forms with shifts) and the counters are
// as wide as the fields that feed them. A beat is one byte, so an element is assembled in place:
// byte i of the element is written to byte lane i of the element register (a demultiplexer, one
// clock enable per byte lane) instead of appending beats to a reassembly buffer through a barrel
// shifter, which cost thousands of LUT4 per engine on an iCE40. While the assembled element
// waits for its SRAM position (pad positions before it, or sw_ready low), arriving bytes go to a
// small skid buffer, so the stream keeps one byte per clock across runs of up to SKID pad
// positions, as the reassembly buffer did.
// The byte port shows each byte as it enters the element, so a caller can write elements wider
// than the register (MAXB > MAXE bytes) straight into their buffer (qnn_core's parameter rows).
module dma_byte_read #(
    parameter MAXE = 64,   // bytes of the element register (the widest element the SRAM port takes whole)
    parameter MAXB = MAXE, // widest element in bytes: bytes past MAXE go out on the byte port only
    parameter CW = 16,     // bits of row_elems
    parameter RW = CW,     // bits of rows (1 for the fetch: one row, no pads)
    parameter AW = 24,     // bits of the SRAM address
    parameter SKID = 8,    // bytes that wait while the assembled element does (a power of two; 1 where an
                           // element never waits: no pads and sw_ready always high)
    parameter PADS = 1     // 0: the caller never pads (every position is data: no pad compares or zeroing)
) (
    input  wire                clk,
    input  wire                start,
    input  wire [31:0]         base,
    input  wire [31:0]         stride,      // bytes between rows
    input  wire [RW-1:0]       rows,
    input  wire [CW-1:0]       row_elems,
    input  wire [31:0]         row_bytes,   // row_elems * elem_bytes
    input  wire [15:0]         elem_bytes,  // 1 .. MAXE
    input  wire [3:0]          y_pad0, y_pad1, x_pad0, x_pad1,
    input  wire [AW-1:0]       sram_base,
    output reg                 done,
    output wire                busy,
    // read port
    output wire                ar_valid,
    output reg  [31:0]         ar_addr,
    output wire [31:0]         ar_len,
    input  wire                ar_ready,
    input  wire                r_valid,
    input  wire [7:0]          r_data,
    input  wire [15:0]         r_bytes,     // always 1
    output wire                r_ready,
    // SRAM write
    output wire                sw_en,
    output reg  [AW-1:0]       sw_addr,
    output wire [MAXE*8-1:0]   sw_data,
    input  wire                sw_ready,
    // byte port: each byte as it enters the element (byte_idx of the element at SRAM position
    // byte_addr); with PADS = 0 a caller can write an element wider than the register byte by byte
    output wire                byte_en,
    output wire [AW-1:0]       byte_addr,
    output wire [$clog2(MAXB + 1)-1:0] byte_idx,
    output wire [7:0]          byte_data
);
    localparam EB = $clog2(MAXB + 1), PB = (SKID > 1) ? $clog2(SKID) : 1;

    reg          active = 1'b0;
    reg [RW-1:0] req_left;
    reg [CW:0]   width, c, x_hi;  // pads add at most 30 positions: one bit more
    reg [RW:0]   height, r, y_hi;
    reg [3:0]    y_lo, x_lo;
    reg [31:0]   step, len;  // latched: the caller's inputs are only valid with start
    reg [EB-1:0] e_last, idx;  // the element's last byte; the byte the next beat fills
    reg          full = 1'b0;  // the element register holds a whole element
    reg [MAXE*8-1:0] element;  // zero above the element's bytes (cleared by start)
    reg [SKID*8-1:0] skid;     // registers, not a RAM: its read address changes every clock
    reg [PB-1:0] head, tail;
    reg [PB:0]   held = 0;
    initial done = 1'b0;

    assign busy = active;
    assign ar_valid = active && req_left != 0;
    assign ar_len = len;
    assign r_ready = active && held != SKID;

    wire is_data = !PADS || (r >= y_lo && r < y_hi && c >= x_lo && c < x_hi);
    assign sw_en = active && height != 0 && width != 0 && (!is_data || full);
    assign sw_data = is_data ? element : {MAXE*8{1'b0}};
    wire take = sw_en && sw_ready;
    wire pop = take && is_data;

    // the next byte of the stream: the oldest waiting one, else the beat on the port
    wire accept = r_valid && r_ready;
    wire skid_empty = held == 0;
    wire [7:0] next_byte = skid_empty ? r_data : skid[(SKID > 1 ? head : 0)*8 +: 8];  // one entry: always 0
    wire fill = (!skid_empty || accept) && (!full || pop);  // it enters the element this clock
    wire to_skid = accept && !(skid_empty && fill);
    // a byte that enters while the full element leaves (fill with full implies pop) starts the next one
    assign byte_en = fill;
    assign byte_addr = full ? sw_addr + 1'b1 : sw_addr;
    assign byte_idx = idx;
    assign byte_data = next_byte;
    wire from_skid = !skid_empty && fill;

    integer b;
    always @(posedge clk) begin
        done <= 1'b0;
        if (start) begin
            active <= 1'b1;
            req_left <= (row_elems == 0) ? {RW{1'b0}} : rows;
            ar_addr <= base;
            len <= row_bytes;
            step <= stride;
            e_last <= elem_bytes[EB-1:0] - 1'b1;
            width <= x_pad0 + row_elems + x_pad1;
            height <= y_pad0 + rows + y_pad1;
            y_lo <= y_pad0; y_hi <= y_pad0 + rows;
            x_lo <= x_pad0; x_hi <= x_pad0 + row_elems;
            r <= 0; c <= 0;
            sw_addr <= sram_base;
            idx <= 0; full <= 1'b0; element <= 0;
            head <= 0; tail <= 0; held <= 0;
        end else if (active) begin
            if (ar_valid && ar_ready) begin
                req_left <= req_left - 1'b1;
                ar_addr <= ar_addr + step;
            end
            if (to_skid) begin
                skid[(SKID > 1 ? tail : 0)*8 +: 8] <= r_data;
                tail <= tail + 1'b1;
            end
            if (from_skid) head <= head + 1'b1;
            held <= held + to_skid - from_skid;
            if (fill) begin
                for (b = 0; b < MAXE; b = b + 1)
                    if (idx == b) element[b*8 +: 8] <= next_byte;
                full <= idx == e_last;
                idx <= (idx == e_last) ? {EB{1'b0}} : idx + 1'b1;
            end else if (pop)
                full <= 1'b0;
            if (height == 0 || width == 0) begin
                active <= 1'b0;
                done <= 1'b1;
            end else if (take) begin
                sw_addr <= sw_addr + 1'b1;
                if (c == width - 1) begin
                    c <= 0;
                    r <= r + 1'b1;
                    if (r == height - 1) begin
                        active <= 1'b0;
                        done <= 1'b1;
                    end
                end else
                    c <= c + 1'b1;
            end
        end
    end
endmodule

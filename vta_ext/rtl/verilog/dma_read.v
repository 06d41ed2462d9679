// dma_read -- the 2-D DMA of a LOAD (vta_ext/isa.py MemInsn): DRAM rows -> SRAM entries with zero padding.
//
// DRAM side: ROWS rows of ROW_ELEMS elements of ELEM_BYTES bytes, row r at byte BASE + r*STRIDE.
// One read request per row on an AXI4-like read port (ar: address + length in bytes, accepted
// when ar_ready; r: beats of up to BPC bytes, r_bytes valid, lowest address in the lowest byte,
// in request order, back-pressured by r_ready). Requests are issued back to back, so DRAM
// latency is paid once per instruction, not per row.
// SRAM side: the padded block (Y_PAD0 + ROWS + Y_PAD1) x (X_PAD0 + ROW_ELEMS + X_PAD1) in
// row-major order from SRAM_BASE, one entry per clock: a pad position writes zeros, a data
// position the next ELEM_BYTES bytes of the stream (raw, lowest byte at bit 0). sw_en is
// combinational; the entry is taken on a clock with sw_en && sw_ready.
// Timing: start is a one-clock pulse; done pulses one clock after the last entry is taken.
// Wide elements (MAXB > MAXE): an element wider than MAXE bytes, which must be a whole number of
// beats and never padded (qnn_core's parameter rows, padded in DRAM: HwConfig.prm_row_beats), is
// assembled in a register of MAXB bytes, each beat written at its beat offset (a clock enable per
// beat, no shifter), and written out whole after its last beat; a beat of the next element may
// arrive in that clock. sw_data past an element's elem_bytes is zero up to MAXE bytes and
// undefined above (the wide register's bytes); the caller reads an element's own bytes only.
module dma_read #(
    parameter MAXE = 64,   // widest element in bytes assembled from beats through the shifter
    parameter BPC = 8,     // bytes per beat (dma_bytes_per_cycle)
    parameter MAXB = MAXE  // widest element in bytes: wider than MAXE is assembled beat by beat (see above)
) (
    input  wire                clk,
    input  wire                start,
    input  wire [31:0]         base,
    input  wire [31:0]         stride,      // bytes between rows
    input  wire [31:0]         rows,
    input  wire [31:0]         row_elems,
    input  wire [15:0]         elem_bytes,
    input  wire [3:0]          y_pad0, y_pad1, x_pad0, x_pad1,
    input  wire [23:0]         sram_base,
    output reg                 done,
    output wire                busy,
    // read port
    output wire                ar_valid,
    output reg  [31:0]         ar_addr,
    output wire [31:0]         ar_len,
    input  wire                ar_ready,
    input  wire                r_valid,
    input  wire [BPC*8-1:0]    r_data,
    input  wire [15:0]         r_bytes,
    output wire                r_ready,
    // SRAM write
    output wire                sw_en,
    output reg  [23:0]         sw_addr,
    output reg  [MAXB*8-1:0]   sw_data,
    input  wire                sw_ready
);
    localparam CAP = MAXE + BPC;  // reassembly buffer bytes
    localparam BEATS = MAXB > MAXE;  // 0: no wide elements (their logic folds away)
    localparam RB = BEATS ? MAXB : 1;  // bytes of the wide-element register
    localparam LOG_BPC = $clog2(BPC);

    reg        active = 1'b0;
    reg [31:0] req_left, width, height, r, c;
    reg [15:0] e_bytes;
    reg [31:0] step;  // the row stride, latched: the caller's inputs are only valid with start
    reg [31:0] n_elems, y_lo, y_hi, x_lo, x_hi;
    reg [CAP*8-1:0] buffer;
    reg [15:0] count = 0;  // valid bytes in buffer
    reg [RB*8-1:0] row;    // the wide element being assembled
    reg [15:0] beat = 0;   // its beats received
    reg row_full = 1'b0;   // all of them
    initial done = 1'b0;
    wire wide = BEATS && e_bytes > MAXE;

    assign busy = active;
    assign ar_valid = active && req_left != 0;
    assign ar_len = n_elems * e_bytes;
    assign r_ready = active && (wide ? !row_full || sw_ready : count + BPC <= CAP);

    wire is_data = r >= y_lo && r < y_hi && c >= x_lo && c < x_hi;
    wire have = wide ? row_full : count >= e_bytes;
    assign sw_en = active && height != 0 && width != 0 && (!is_data || have);
    wire take = sw_en && sw_ready;
    wire pop = take && is_data && !wide;

    integer b;
    always @* begin
        sw_data = 0;
        if (BEATS) sw_data[RB*8-1:0] = row;
        for (b = 0; b < MAXE; b = b + 1)
            if (!wide) sw_data[b*8 +: 8] = (is_data && b < e_bytes) ? buffer[b*8 +: 8] : 8'd0;
    end

    // buffer update: drop the popped element, append the accepted beat after what remains
    wire accept = r_valid && r_ready;
    wire [15:0] remain = count - (pop ? e_bytes : 16'd0);
    // the buffer is zero above its count bytes (r_ready keeps count + BPC <= CAP), so appending
    // the beat is an OR of its r_bytes bytes shifted by remain bytes (one barrel shifter)
    reg [BPC*8-1:0] beat_data;
    always @*
        for (b = 0; b < BPC; b = b + 1)
            beat_data[b*8 +: 8] = (b < r_bytes) ? r_data[b*8 +: 8] : 8'd0;
    wire [CAP*8-1:0] kept = pop ? (buffer >> (e_bytes * 8)) : buffer;
    wire [CAP*8-1:0] appended = {{(CAP - BPC)*8{1'b0}}, beat_data} << (remain * 8);
    wire [CAP*8-1:0] next_buffer = (accept && !wide) ? (kept | appended) : kept;
    wire row_beat = accept && wide;
    wire last_beat = ((beat + 1'b1) << LOG_BPC) == e_bytes;

    always @(posedge clk) begin
        done <= 1'b0;
        if (start) begin
            active <= 1'b1;
            req_left <= (row_elems == 0) ? 32'd0 : rows;
            ar_addr <= base;
            n_elems <= row_elems;
            e_bytes <= elem_bytes;
            step <= stride;
            width <= x_pad0 + row_elems + x_pad1;
            height <= y_pad0 + rows + y_pad1;
            y_lo <= y_pad0; y_hi <= y_pad0 + rows;
            x_lo <= x_pad0; x_hi <= x_pad0 + row_elems;
            r <= 0; c <= 0;
            sw_addr <= sram_base;
            count <= 0;
            buffer <= 0;
            beat <= 0;
            row_full <= 1'b0;
        end else if (active) begin
            if (ar_valid && ar_ready) begin
                req_left <= req_left - 1'b1;
                ar_addr <= ar_addr + step;
            end
            buffer <= next_buffer;
            count <= remain + ((accept && !wide) ? r_bytes : 16'd0);
            if (row_beat) beat <= last_beat ? 16'd0 : beat + 1'b1;
            if (row_beat && last_beat) row_full <= 1'b1;
            else if (take) row_full <= 1'b0;
            for (b = 0; b < RB / BPC; b = b + 1)
                if (BEATS && row_beat && beat == b) row[b*BPC*8 +: BPC*8] <= r_data;
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

// qnn_core -- the whole accelerator core: instruction fetch and dispatch, the load / compute /
// store modules with their instruction queues and dependency tokens, the DMA engines and the
// compute datapath (qnn_compute: buffers, micro-op sequencer, GEMM, LUT apply, ALU).
//
// Instructions are the 192-bit words of vta_ext/isa.py (field offsets from isa_fields.vh). Fetch
// reads INSN_COUNT words from byte address INSN_BASE and dispatches them as VTA does: LOAD of
// INP/WGT -> load queue; LOAD of UOP/ACC/PRM, GEMM, ALU, FINISH -> compute queue; STORE -> store
// queue. A module starts the instruction at the head of its queue when every token it pops is
// there (pop_prev / pop_next), and pushes its tokens (push_prev / push_next) when it finishes.
// Token FIFOs are counters: load->compute, compute->load, compute->store, store->compute.
//
// Memory: every module has its own AXI4-like port to DRAM (as VTA has one AXI master per
// module): fetch, load and compute read ports (f_*, l_*, c_*), the store write port (s_*); see
// dma_read / dma_write for the handshakes. DRAM layouts are vta_ext/layout.py's: an INP/WGT
// element packs its codes as bit planes (plane p of lane k at bit p*lanes + k); ACC/UOP/PRM
// elements are raw little-endian words; STORE packs codes the same way or writes raw int32.
//
// Ports: clk; start (one-clock pulse) with insn_base / insn_count; done (level, after FINISH
// has run and every module is idle); the memory ports.
`include "isa_fields.vh"
module qnn_core #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 16,
    parameter BLOCK_OUT = 16,
    parameter A_BITS = 8,
    parameter W_BITS = 8,
    parameter LUT_MODE = 2,
    parameter LUT_ENTRIES = 256,
    parameter INP_DEPTH = 256,
    parameter WGT_DEPTH = 256,
    parameter ACC_DEPTH = 256,
    parameter UOP_DEPTH = 256,
    parameter PRM_DEPTH = 16,
    parameter BPC = 8,
    parameter QDEPTH = 64,
    parameter MAXE = 256,
    parameter WR_W = 4096,
    parameter ALU_LANES = BATCH * BLOCK_OUT,
    parameter SOFT_MUL = 0,  // ALU multipliers from adders (parts without DSP blocks)
    parameter MUL_CLOCKS = 1,  // clocks per ALU multiply (qnn_compute; HwConfig.alu_mul_cycles)
    parameter GEMM_LANES = BLOCK_OUT,  // GEMM output columns per clock (qnn_compute; HwConfig.gemm_out_lanes)
    // 1: parameter rows are padded to whole beats in DRAM and the compute DMA assembles them beat by
    // beat at beat offsets, without a shifter (HwConfig.prm_row_beats; BPC > 1)
    parameter PRM_BEATS = 0
) (
    input  wire              clk,
    input  wire              start,
    input  wire [31:0]       insn_base,
    input  wire [31:0]       insn_count,
    output wire              done,
    output wire              f_ar_valid, output wire [31:0] f_ar_addr, output wire [31:0] f_ar_len,
    input  wire              f_ar_ready, input  wire f_r_valid, input wire [BPC*8-1:0] f_r_data,
    input  wire [15:0]       f_r_bytes,  output wire f_r_ready,
    output wire              l_ar_valid, output wire [31:0] l_ar_addr, output wire [31:0] l_ar_len,
    input  wire              l_ar_ready, input  wire l_r_valid, input wire [BPC*8-1:0] l_r_data,
    input  wire [15:0]       l_r_bytes,  output wire l_r_ready,
    output wire              c_ar_valid, output wire [31:0] c_ar_addr, output wire [31:0] c_ar_len,
    input  wire              c_ar_ready, input  wire c_r_valid, input wire [BPC*8-1:0] c_r_data,
    input  wire [15:0]       c_r_bytes,  output wire c_r_ready,
    output wire              s_aw_valid, output wire [31:0] s_aw_addr, output wire [31:0] s_aw_len,
    input  wire              s_aw_ready, output wire s_w_valid, output wire [BPC*8-1:0] s_w_data,
    output wire [15:0]       s_w_bytes,  input  wire s_w_ready, input wire s_b_valid
);
    localparam IB = `INSN_BITS;
    localparam LI = BATCH * BLOCK_IN, LW = BLOCK_OUT * BLOCK_IN, LO = BATCH * BLOCK_OUT;
    localparam PRM_BYTES = BLOCK_OUT * (LUT_ENTRIES + 9);
    // a parameter row in DRAM: PRM_BYTES, or whole beats with PRM_BEATS (HwConfig.prm_row_bytes)
    localparam PRM_ROW = PRM_BEATS ? (PRM_BYTES + BPC - 1) / BPC * BPC : PRM_BYTES;
    localparam OPC_LOAD = 0, OPC_STORE = 1, OPC_GEMM = 2, OPC_ALU = 3, OPC_FINISH = 4;
    localparam SC_UOP = 0, SC_WGT = 1, SC_INP = 2, SC_ACC = 3, SC_PRM = 4;
    localparam POP_PREV = 3, POP_NEXT = 4, PUSH_PREV = 5, PUSH_NEXT = 6;
    // each DMA engine is as wide as its own widest element: fetch an instruction, load an INP or
    // WGT element at the core's widest bits, compute an ACC, UOP or PRM element, store a raw ACC
    // vector (codes are narrower)
    localparam FETCH_E = IB / 8;
    localparam INP_E = (LI * A_BITS + 7) / 8, WGT_E = (LW * W_BITS + 7) / 8;
    localparam LOAD_E = INP_E > WGT_E ? INP_E : WGT_E;
    localparam COMP_E = LO * 4 > PRM_BYTES ? (LO * 4 > 8 ? LO * 4 : 8) : (PRM_BYTES > 8 ? PRM_BYTES : 8);
    localparam STORE_E = LO * 4;
    // a port of one byte per beat assembles elements byte by byte (dma_byte_read / dma_byte_write)
    localparam BYTE_DMA = BPC == 1;
    // one GEMM column and one ALU lane on a one-byte port: qnn_compute's lane-serial datapath, whose
    // accumulators are loaded byte by byte as well (HwConfig.lane_serial)
    localparam LANE_SERIAL = BYTE_DMA && BATCH == 1 && GEMM_LANES == 1 && ALU_LANES == 1 && BLOCK_OUT > 1;
    // the one-byte compute engine keeps UOP (and ACC, unless lane-serial) elements whole and writes
    // a PRM row into the parameter buffer byte by byte as it arrives (a second register of the row's
    // width was ~290 logic cells of flip-flops that pack with no LUT on the iCE40 cores)
    localparam COMP_KEEP = (LO * 4 > 8 && !LANE_SERIAL) ? LO * 4 : 8;
    // PRM_BEATS: the wider-beat compute engine assembles a PRM row beat by beat at beat offsets
    // (dma_read's wide elements), with the shifter as wide as a UOP or ACC element only

    // ------------------------------------------------------------------ fetch + dispatch
    wire [FETCH_E*8-1:0] f_word;
    wire f_en, f_done, f_busy;
    wire [IB-1:0] fetched = f_word[IB-1:0];
    wire [2:0] f_opc = fetched[2:0];
    wire [2:0] f_scope = fetched[`MEM_SCOPE_LO +: 3];
    wire to_load = f_opc == OPC_LOAD && (f_scope == SC_INP || f_scope == SC_WGT);
    wire to_store = f_opc == OPC_STORE;
    wire to_compute = !to_load && !to_store;
    wire lq_full, cq_full, sq_full, lq_empty, cq_empty, sq_empty;
    wire f_ready = to_load ? !lq_full : to_store ? !sq_full : !cq_full;
    generate
        if (BYTE_DMA) begin : fetch_bytes
            // two-byte skid buffers on the fetch and load engines (the eight-byte default was ~230
            // logic cells of registers and read selects on the smallest iCE40 core, for no cycles on
            // the co-simulated layers, padded ones included)
            wire [23:0] unused_addr;
            dma_byte_read #(.MAXE(FETCH_E), .CW(32), .RW(1), .PADS(0), .SKID(2)) fetch (
                .clk(clk), .start(start), .base(insn_base), .stride(32'd0), .rows(1'b1), .row_elems(insn_count),
                .row_bytes(insn_count * (IB / 8)), .elem_bytes(IB / 8), .y_pad0(4'd0), .y_pad1(4'd0), .x_pad0(4'd0),
                .x_pad1(4'd0), .sram_base(24'd0), .done(f_done), .busy(f_busy), .ar_valid(f_ar_valid),
                .ar_addr(f_ar_addr), .ar_len(f_ar_len), .ar_ready(f_ar_ready), .r_valid(f_r_valid),
                .r_data(f_r_data), .r_bytes(f_r_bytes), .r_ready(f_r_ready), .sw_en(f_en), .sw_addr(unused_addr),
                .sw_data(f_word), .sw_ready(f_ready));
        end else begin : fetch_beats
            wire [23:0] unused_addr;
            dma_read #(.MAXE(FETCH_E), .BPC(BPC)) fetch (
                .clk(clk), .start(start), .base(insn_base), .stride(32'd0), .rows(32'd1), .row_elems(insn_count),
                .elem_bytes(IB / 8), .y_pad0(4'd0), .y_pad1(4'd0), .x_pad0(4'd0), .x_pad1(4'd0), .sram_base(24'd0),
                .done(f_done), .busy(f_busy), .ar_valid(f_ar_valid), .ar_addr(f_ar_addr), .ar_len(f_ar_len),
                .ar_ready(f_ar_ready), .r_valid(f_r_valid), .r_data(f_r_data), .r_bytes(f_r_bytes), .r_ready(f_r_ready),
                .sw_en(f_en), .sw_addr(unused_addr), .sw_data(f_word), .sw_ready(f_ready));
        end
    endgenerate
    wire f_take = f_en && f_ready;

    wire [IB-1:0] lh, ch, sh;
    wire l_start, c_start, s_start;
    insn_queue #(.WIDTH(IB), .DEPTH(QDEPTH)) load_q (.clk(clk), .push(f_take && to_load), .push_data(fetched),
        .pop(l_start), .head(lh), .empty(lq_empty), .full(lq_full));
    insn_queue #(.WIDTH(IB), .DEPTH(QDEPTH)) compute_q (.clk(clk), .push(f_take && to_compute),
        .push_data(fetched), .pop(c_start), .head(ch), .empty(cq_empty), .full(cq_full));
    insn_queue #(.WIDTH(IB), .DEPTH(QDEPTH)) store_q (.clk(clk), .push(f_take && to_store), .push_data(fetched),
        .pop(s_start), .head(sh), .empty(sq_empty), .full(sq_full));

    // ------------------------------------------------------------------ dependency tokens
    reg [15:0] l2c = 0, c2l = 0, c2s = 0, s2c = 0;
    reg l_busy = 0, c_busy = 0, s_busy = 0, finished = 0, c_fin_pending = 0, fetch_over = 0;
    reg l_push_next, c_push_prev, c_push_next, s_push_prev;
    reg [1:0] c_kind;  // 0 DMA, 1 GEMM/ALU, 2 FINISH
    wire l_dma_done, c_dma_done, s_dma_done, qc_done;
    wire l_fin = l_busy && l_dma_done;
    wire c_fin = c_busy && (c_kind == 0 ? c_dma_done : c_kind == 1 ? qc_done : c_fin_pending);
    wire s_fin = s_busy && s_dma_done;
    assign l_start = !lq_empty && (!l_busy || l_fin) && (!lh[POP_NEXT] || c2l != 0);
    assign c_start = !cq_empty && !finished && (!c_busy || c_fin) && (!ch[POP_PREV] || l2c != 0)
                     && (!ch[POP_NEXT] || s2c != 0);
    assign s_start = !sq_empty && (!s_busy || s_fin) && (!sh[POP_PREV] || c2s != 0);
    wire l2c_push = l_fin && l_push_next, c2l_push = c_fin && c_push_prev;
    wire c2s_push = c_fin && c_push_next, s2c_push = s_fin && s_push_prev;
    always @(posedge clk) begin
        l2c <= l2c + l2c_push - (c_start && ch[POP_PREV]);
        s2c <= s2c + s2c_push - (c_start && ch[POP_NEXT]);
        c2l <= c2l + c2l_push - (l_start && lh[POP_NEXT]);
        c2s <= c2s + c2s_push - (s_start && sh[POP_PREV]);
        if (f_done) fetch_over <= 1'b1;
        if (start) fetch_over <= 1'b0;
    end
    assign done = finished && fetch_over && !l_busy && !c_busy && !s_busy && lq_empty && sq_empty;

    // ------------------------------------------------------------------ element sizes
    // DRAM byte offsets are element indices times element bytes. An element's bytes are a constant
    // per scope, or lanes * bits / 8 with lanes a power of two and bits one of the few widths the
    // core holds: a sum of shifted indices picked by bits, and shifts, instead of a 32 x 16-bit
    // multiplier per address (six of them: base and stride of three DMAs). Each DMA only sees
    // its own scopes (the load module INP/WGT, the compute module UOP/ACC/PRM), so each offset
    // covers those alone.
    localparam LOG_LI = $clog2(LI), LOG_LW = $clog2(LW), LOG_LO = $clog2(LO);
    localparam MAXB = A_BITS > W_BITS ? A_BITS : W_BITS;
    function [47:0] planes_of(input [31:0] index, input [5:0] bits, input integer widest);
        integer b;
        begin
            planes_of = 0;
            for (b = 1; b <= widest; b = b + 1)
                if (bits == b) planes_of = index * b;
        end
    endfunction
    function [31:0] load_offset(input [31:0] index, input [2:0] scope, input [5:0] bits);
        reg [47:0] planes;
        begin
            planes = planes_of(index, bits, MAXB);
            load_offset = (scope == SC_WGT) ? (planes << LOG_LW) >> 3 : (planes << LOG_LI) >> 3;
        end
    endfunction
    function [31:0] compute_offset(input [31:0] index, input [2:0] scope);
        case (scope)
            SC_ACC: compute_offset = index * (LO * 4);
            SC_UOP: compute_offset = index * 8;
            default: compute_offset = index * PRM_ROW;
        endcase
    endfunction
    function [31:0] store_offset(input [31:0] index, input [5:0] bits);
        reg [47:0] planes;
        begin
            // stored codes are at most A_BITS wide (HwConfig.check_layer_bits: out_bits <= max_a_bits)
            planes = planes_of(index, bits, A_BITS);
            store_offset = (bits == 32) ? index * (LO * 4) : (planes << LOG_LO) >> 3;
        end
    endfunction
    function [15:0] load_bytes(input [2:0] scope, input [5:0] bits);
        load_bytes = (scope == SC_WGT) ? (LW * bits) / 8 : (LI * bits) / 8;
    endfunction
    function [15:0] compute_bytes(input [2:0] scope);
        case (scope)
            SC_ACC: compute_bytes = LO * 4;
            SC_UOP: compute_bytes = 8;
            default: compute_bytes = PRM_ROW;
        endcase
    endfunction
    function [15:0] store_bytes(input [5:0] bits);
        store_bytes = (bits == 32) ? LO * 4 : (LO * bits) / 8;
    endfunction

    // ------------------------------------------------------------------ load module (INP, WGT)
    reg [2:0] l_scope; reg [5:0] l_bits;
    wire [2:0] lh_scope = lh[`MEM_SCOPE_LO +: 3];
    wire [5:0] lh_bits = lh[`MEM_ELEM_BITS_LO +: 6];
    wire [15:0] l_e = load_bytes(lh_scope, lh_bits);
    wire [31:0] l_base = load_offset(lh[`MEM_DRAM_BASE_LO +: 32], lh_scope, lh_bits);
    wire [31:0] l_stride = load_offset({16'd0, lh[`MEM_X_STRIDE_LO +: 16]}, lh_scope, lh_bits);
    wire l_en; wire [23:0] l_addr; wire [LOAD_E*8-1:0] l_raw;
    generate
        if (BYTE_DMA) begin : load_bytes_dma
            dma_byte_read #(.MAXE(LOAD_E), .SKID(2)) load_dma (
                .clk(clk), .start(l_start), .base(l_base), .stride(l_stride), .rows(lh[`MEM_Y_SIZE_LO +: 16]),
                .row_elems(lh[`MEM_X_SIZE_LO +: 16]),
                .row_bytes(load_offset({16'd0, lh[`MEM_X_SIZE_LO +: 16]}, lh_scope, lh_bits)), .elem_bytes(l_e),
                .y_pad0(lh[`MEM_Y_PAD0_LO +: 4]), .y_pad1(lh[`MEM_Y_PAD1_LO +: 4]), .x_pad0(lh[`MEM_X_PAD0_LO +: 4]),
                .x_pad1(lh[`MEM_X_PAD1_LO +: 4]), .sram_base({2'd0, lh[`MEM_SRAM_BASE_LO +: 22]}),
                .done(l_dma_done), .busy(), .ar_valid(l_ar_valid), .ar_addr(l_ar_addr), .ar_len(l_ar_len),
                .ar_ready(l_ar_ready), .r_valid(l_r_valid), .r_data(l_r_data), .r_bytes(l_r_bytes),
                .r_ready(l_r_ready), .sw_en(l_en), .sw_addr(l_addr), .sw_data(l_raw), .sw_ready(1'b1));
        end else begin : load_beats_dma
            dma_read #(.MAXE(LOAD_E), .BPC(BPC)) load_dma (
                .clk(clk), .start(l_start), .base(l_base), .stride(l_stride),
                .rows({16'd0, lh[`MEM_Y_SIZE_LO +: 16]}), .row_elems({16'd0, lh[`MEM_X_SIZE_LO +: 16]}),
                .elem_bytes(l_e),
                .y_pad0(lh[`MEM_Y_PAD0_LO +: 4]), .y_pad1(lh[`MEM_Y_PAD1_LO +: 4]), .x_pad0(lh[`MEM_X_PAD0_LO +: 4]),
                .x_pad1(lh[`MEM_X_PAD1_LO +: 4]), .sram_base({2'd0, lh[`MEM_SRAM_BASE_LO +: 22]}),
                .done(l_dma_done), .busy(), .ar_valid(l_ar_valid), .ar_addr(l_ar_addr), .ar_len(l_ar_len),
                .ar_ready(l_ar_ready), .r_valid(l_r_valid), .r_data(l_r_data), .r_bytes(l_r_bytes),
                .r_ready(l_r_ready), .sw_en(l_en), .sw_addr(l_addr), .sw_data(l_raw), .sw_ready(1'b1));
        end
    endgenerate
    // bit planes -> codes: plane p of lane k is raw bit p*lanes + k; planes past the element's bits
    // read as 0. Continuous assignments rather than a loop of conditional bit writes in a process:
    // on a 512-lane, 8-bit weight block that process had 4,353 switch rules, and yosys' PROC_PRUNE
    // was still in it after nine minutes
    wire [LI*A_BITS-1:0] l_inp_codes;
    wire [LW*W_BITS-1:0] l_wgt_codes;
    genvar gk, gp;
    generate
        for (gk = 0; gk < LI; gk = gk + 1) begin : inp_lane
            for (gp = 0; gp < A_BITS; gp = gp + 1) begin : plane
                assign l_inp_codes[gk*A_BITS + gp] = gp < l_bits && l_raw[gp*LI + gk];
            end
        end
        for (gk = 0; gk < LW; gk = gk + 1) begin : wgt_lane
            for (gp = 0; gp < W_BITS; gp = gp + 1) begin : plane
                assign l_wgt_codes[gk*W_BITS + gp] = gp < l_bits && l_raw[gp*LW + gk];
            end
        end
    endgenerate
    wire [WR_W-1:0] l_entry = (l_scope == SC_INP) ? l_inp_codes : l_wgt_codes;  // zero-extended
    integer k, p;
    always @(posedge clk) begin
        if (l_fin && !l_start) l_busy <= 1'b0;
        if (l_start) begin
            l_busy <= 1'b1;
            l_push_next <= lh[PUSH_NEXT];
            l_scope <= lh[`MEM_SCOPE_LO +: 3];
            l_bits <= lh[`MEM_ELEM_BITS_LO +: 6];
        end
    end

    // ------------------------------------------------------------------ compute module
    wire [2:0] ch_opc = ch[2:0];
    wire [2:0] ch_scope = ch[`MEM_SCOPE_LO +: 3];
    localparam COMP_W = BYTE_DMA ? COMP_KEEP : PRM_BEATS ? PRM_ROW : COMP_E;
    wire c_en; wire [23:0] c_addr; wire [COMP_W*8-1:0] c_raw;
    wire [WR_W-1:0] c_entry = c_raw;  // zero-extended to the write port
    wire c_byte_en; wire [23:0] c_byte_addr; wire [$clog2(COMP_E + 1)-1:0] c_byte_idx; wire [7:0] c_byte_data;
    wire [15:0] c_e = compute_bytes(ch_scope);
    wire [31:0] c_base = compute_offset(ch[`MEM_DRAM_BASE_LO +: 32], ch_scope);
    wire [31:0] c_stride = compute_offset({16'd0, ch[`MEM_X_STRIDE_LO +: 16]}, ch_scope);
    reg [2:0] c_scope;
    generate
        if (BYTE_DMA) begin : compute_bytes_dma
            // the compute module's loads (UOP, ACC, PRM) are never padded (vta_ext/isa.py refuses it): no pad
            // compares and no zeroing of its 52-byte parameter rows on the one-byte-beat (iCE40) engine, and
            // since its SRAM port is always ready an assembled element never waits: a one-byte skid buffer
            dma_byte_read #(.MAXE(COMP_KEEP), .MAXB(COMP_E), .PADS(0), .SKID(1)) compute_dma (
                .clk(clk), .start(c_start && ch_opc == OPC_LOAD), .base(c_base), .stride(c_stride),
                .rows(ch[`MEM_Y_SIZE_LO +: 16]), .row_elems(ch[`MEM_X_SIZE_LO +: 16]),
                .row_bytes(compute_offset({16'd0, ch[`MEM_X_SIZE_LO +: 16]}, ch_scope)), .elem_bytes(c_e),
                .y_pad0(ch[`MEM_Y_PAD0_LO +: 4]), .y_pad1(ch[`MEM_Y_PAD1_LO +: 4]), .x_pad0(ch[`MEM_X_PAD0_LO +: 4]),
                .x_pad1(ch[`MEM_X_PAD1_LO +: 4]), .sram_base({2'd0, ch[`MEM_SRAM_BASE_LO +: 22]}),
                .done(c_dma_done), .busy(), .ar_valid(c_ar_valid), .ar_addr(c_ar_addr), .ar_len(c_ar_len),
                .ar_ready(c_ar_ready), .r_valid(c_r_valid), .r_data(c_r_data), .r_bytes(c_r_bytes),
                .r_ready(c_r_ready), .sw_en(c_en), .sw_addr(c_addr), .sw_data(c_raw), .sw_ready(1'b1),
                .byte_en(c_byte_en), .byte_addr(c_byte_addr), .byte_idx(c_byte_idx), .byte_data(c_byte_data));
        end else begin : compute_beats_dma
            // with PRM_BEATS the shifter assembles UOP and ACC elements and a PRM row is a wide element
            assign c_byte_en = 1'b0; assign c_byte_addr = 0; assign c_byte_idx = 0; assign c_byte_data = 0;
            dma_read #(.MAXE(PRM_BEATS ? COMP_KEEP : COMP_E), .BPC(BPC), .MAXB(COMP_W)) compute_dma (
                .clk(clk), .start(c_start && ch_opc == OPC_LOAD), .base(c_base), .stride(c_stride),
                .rows({16'd0, ch[`MEM_Y_SIZE_LO +: 16]}), .row_elems({16'd0, ch[`MEM_X_SIZE_LO +: 16]}),
                .elem_bytes(c_e),
                .y_pad0(ch[`MEM_Y_PAD0_LO +: 4]), .y_pad1(ch[`MEM_Y_PAD1_LO +: 4]), .x_pad0(ch[`MEM_X_PAD0_LO +: 4]),
                .x_pad1(ch[`MEM_X_PAD1_LO +: 4]), .sram_base({2'd0, ch[`MEM_SRAM_BASE_LO +: 22]}),
                .done(c_dma_done), .busy(), .ar_valid(c_ar_valid), .ar_addr(c_ar_addr), .ar_len(c_ar_len),
                .ar_ready(c_ar_ready), .r_valid(c_r_valid), .r_data(c_r_data), .r_bytes(c_r_bytes),
                .r_ready(c_r_ready), .sw_en(c_en), .sw_addr(c_addr), .sw_data(c_raw), .sw_ready(1'b1));
        end
    endgenerate
    always @(posedge clk) begin
        c_fin_pending <= 1'b0;
        if (c_fin && !c_start) c_busy <= 1'b0;
        if (start) finished <= 1'b0;
        if (c_start) begin
            c_busy <= 1'b1;
            c_push_prev <= ch[PUSH_PREV];
            c_push_next <= ch[PUSH_NEXT];
            c_scope <= ch_scope;
            c_kind <= ch_opc == OPC_LOAD ? 2'd0 : ch_opc == OPC_FINISH ? 2'd2 : 2'd1;
            c_fin_pending <= ch_opc == OPC_FINISH;
            if (ch_opc == OPC_FINISH) finished <= 1'b1;
        end
    end

    // ------------------------------------------------------------------ store module
    reg [5:0] s_bits;
    wire [15:0] s_e = store_bytes(sh[`MEM_ELEM_BITS_LO +: 6]);
    wire [23:0] s_addr;
    wire [LO*32-1:0] acc_entry;
    reg [STORE_E*8-1:0] s_raw;  // codes -> bit planes, or the raw int32 entry
    always @* begin
        s_raw = 0;
        if (s_bits == 32)
            s_raw[LO*32-1:0] = acc_entry;
        else
            for (k = 0; k < LO; k = k + 1)
                for (p = 0; p < A_BITS; p = p + 1)
                    if (p < s_bits) s_raw[p*LO + k] = acc_entry[k*32 + p];
    end
    wire [5:0] sh_bits = sh[`MEM_ELEM_BITS_LO +: 6];
    wire [31:0] s_base = store_offset(sh[`MEM_DRAM_BASE_LO +: 32], sh_bits);
    wire [31:0] s_stride = store_offset({16'd0, sh[`MEM_X_STRIDE_LO +: 16]}, sh_bits);
    generate
        if (BYTE_DMA) begin : store_bytes_dma
            dma_byte_write #(.MAXE(STORE_E)) store_dma (
                .clk(clk), .start(s_start), .base(s_base), .stride(s_stride), .rows(sh[`MEM_Y_SIZE_LO +: 16]),
                .row_elems(sh[`MEM_X_SIZE_LO +: 16]),
                .row_bytes(store_offset({16'd0, sh[`MEM_X_SIZE_LO +: 16]}, sh_bits)), .elem_bytes(s_e),
                .sram_base({2'd0, sh[`MEM_SRAM_BASE_LO +: 22]}), .done(s_dma_done), .busy(), .sr_addr(s_addr),
                .sr_data(s_raw), .aw_valid(s_aw_valid), .aw_addr(s_aw_addr), .aw_len(s_aw_len),
                .aw_ready(s_aw_ready), .w_valid(s_w_valid), .w_data(s_w_data), .w_bytes(s_w_bytes),
                .w_ready(s_w_ready), .b_valid(s_b_valid));
        end else begin : store_beats_dma
            dma_write #(.MAXE(STORE_E), .BPC(BPC)) store_dma (
                .clk(clk), .start(s_start), .base(s_base), .stride(s_stride),
                .rows({16'd0, sh[`MEM_Y_SIZE_LO +: 16]}), .row_elems({16'd0, sh[`MEM_X_SIZE_LO +: 16]}),
                .elem_bytes(s_e), .sram_base({2'd0, sh[`MEM_SRAM_BASE_LO +: 22]}), .done(s_dma_done), .busy(),
                .sr_addr(s_addr), .sr_data(s_raw), .aw_valid(s_aw_valid), .aw_addr(s_aw_addr), .aw_len(s_aw_len),
                .aw_ready(s_aw_ready), .w_valid(s_w_valid), .w_data(s_w_data), .w_bytes(s_w_bytes),
                .w_ready(s_w_ready), .b_valid(s_b_valid));
        end
    endgenerate
    always @(posedge clk) begin
        if (s_fin && !s_start) s_busy <= 1'b0;
        if (s_start) begin
            s_busy <= 1'b1;
            s_push_prev <= sh[PUSH_PREV];
            s_bits <= sh[`MEM_ELEM_BITS_LO +: 6];
        end
    end

    // ------------------------------------------------------------------ datapath
    qnn_compute #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT), .A_BITS(A_BITS), .W_BITS(W_BITS),
                  .LUT_MODE(LUT_MODE), .LUT_ENTRIES(LUT_ENTRIES), .INP_DEPTH(INP_DEPTH), .WGT_DEPTH(WGT_DEPTH),
                  .ACC_DEPTH(ACC_DEPTH), .UOP_DEPTH(UOP_DEPTH), .PRM_DEPTH(PRM_DEPTH), .ALU_LANES(ALU_LANES),
                  .WR_W(WR_W), .SOFT_MUL(SOFT_MUL), .MUL_CLOCKS(MUL_CLOCKS), .PRM_BYTE_PORT(BYTE_DMA),
                  .GEMM_LANES(GEMM_LANES), .LANE_SERIAL(LANE_SERIAL))
        datapath (.clk(clk), .insn_valid(c_start && (ch_opc == OPC_GEMM || ch_opc == OPC_ALU)), .insn(ch),
                  .insn_ready(), .done(qc_done),
                  .wr_en(c_en), .wr_scope(c_scope), .wr_addr(c_addr), .wr_data(c_entry),
                  .ld_en(l_en), .ld_scope(l_scope), .ld_addr(l_addr), .ld_data(l_entry),
                  .rd_addr(s_addr), .rd_data(acc_entry),
                  .prm_byte_en(c_byte_en && c_scope == SC_PRM), .acc_byte_en(c_byte_en && c_scope == SC_ACC),
                  .byte_addr(c_byte_addr), .byte_idx({{(16 - $clog2(COMP_E + 1)){1'b0}}, c_byte_idx}),
                  .byte_data(c_byte_data));
endmodule

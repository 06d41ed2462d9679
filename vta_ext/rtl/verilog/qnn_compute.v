// qnn_compute -- the compute module of the core: SRAM buffers, the micro-op sequencer and the
// GEMM / LUT-apply / ALU datapaths. It executes GEMM and ALU instructions in the 192-bit encoding
// of vta_ext/isa.py (field offsets come from the generated header isa_fields.vh).
//
// Parameters: array BATCH x BLOCK_IN x BLOCK_OUT, A_BITS/W_BITS the widest codes, LUT_MODE
// (1 onehot: GEMM accumulates 2^w_bits level sums per output into consecutive accumulator entries
// dst*L + q and ALU LUT_APPLY applies the LUT; 2 decode: per-lane LUT decode in the GEMM),
// LUT_ENTRIES per parameter row, buffer depths in entries.
//
// Ports:
//   clk
//   insn_valid, insn [INSN_BITS]  a GEMM or ALU instruction; accepted when insn_ready
//   insn_ready                    the sequencer is idle
//   done                          one-clock pulse when the accepted instruction has finished
//   wr_en, wr_scope [3], wr_addr [24], wr_data [WR_W]
//                                 host/DMA write of one whole buffer entry (scope = isa.MemScope);
//                                 PRM data = {shift[BLOCK_OUT*8], mult[BLOCK_OUT*32],
//                                 bias[BLOCK_OUT*32], lut[BLOCK_OUT*LUT_ENTRIES*8]} (lut at bit 0)
//   ld_en, ld_scope [3], ld_addr [24], ld_data [WR_W]
//                                 a second write port for INP/WGT entries (the load module's DMA,
//                                 which runs while the compute module loads UOP/ACC/PRM on wr_*)
//   rd_addr [24], rd_data [BATCH*BLOCK_OUT*32]   accumulator read port (the store path)
//   prm_byte_en, acc_byte_en, byte_addr [24], byte_idx [16], byte_data [8]
//                                 with PRM_BYTE_PORT = 1: byte byte_idx of parameter entry byte_addr
//                                 (PRM writes on wr_* are then ignored); with LANE_SERIAL = 1 also
//                                 of accumulator entry byte_addr (ACC writes on wr_* are ignored)
// Timing: the accepting clock, one clock to issue the first micro-op step (read its micro-op,
// form its buffer addresses), then per step: GEMM a_bits * BLOCK_OUT/GEMM_LANES clocks (one
// activation bit plane per clock, most significant first, per pass over the outputs), GEMM reset
// 1 (BLOCK_OUT on the lane-serial datapath: one lane per clock), ALU BATCH*BLOCK_OUT/ALU_LANES (one pass of the ALU lanes per clock), LUT_APPLY 2^w_bits (one level per clock; in decode mode with fewer ALU lanes
// than outputs 2^w_bits * BATCH*BLOCK_OUT/ALU_LANES, one pass of the ALU lanes per clock: the
// timing model charges 2^w_bits, and decode-mode programs never issue LUT_APPLY);
// the next step is issued during the current one's last clock, so steps follow each other with
// no bubbles. An instruction with no steps takes the accepting clock only; otherwise cycles =
// 2 + steps * per_step (RTL_PIPELINE_CYCLES = 2 in vta_ext/rtl/cosim.py).
// Buffers are block-RAM shaped: every read is synchronous, a block-RAM read port. INP, WGT and
// micro-op entries are read at the clock their address is formed (no write meets those reads:
// the tokens keep them apart); the accumulator's GEMM/ALU reads are of registered addresses
// (memory_dff folds the register in; a read sees the write of the clock before, which yosys keeps
// with bypass logic, as consecutive steps on one destination need), and the store reads its own
// copy of the accumulators without bypass; each buffer has one write port (the
// DMA's and the write-back's writes never share a clock: the compute module runs one instruction
// at a time). One-hot mode's GEMM reads and writes the 2^w_bits level entries of a destination
// in one clock: its accumulator stays a register file. The lane-serial datapath (LANE_SERIAL)
// reads and writes one 32-bit lane per pass instead, with no bypass (see its block below).
`include "isa_fields.vh"
module qnn_compute #(
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
    // ALU lanes: an ALU micro-op passes over the BATCH*BLOCK_OUT elements in BATCH*BLOCK_OUT/ALU_LANES
    // clocks (a power of two dividing BLOCK_OUT; HwConfig.alu_lanes)
    parameter ALU_LANES = BATCH * BLOCK_OUT,
    parameter SOFT_MUL = 0,  // ALU multipliers from adders (parts without DSP blocks; alu_lanes)
    // clocks per ALU multiply: 1 a combinational multiplier, 2..32 serial_mul32 (HwConfig.alu_mul_cycles):
    // MUL and REQUANT steps (and a serial LUT_APPLY's levels) take MUL_CLOCKS clocks per ALU pass
    parameter MUL_CLOCKS = 1,
    // output columns the GEMM array computes per clock (HwConfig.gemm_out_lanes; decode mode, BATCH 1):
    // with fewer than BLOCK_OUT a GEMM step passes over the outputs, a_bits clocks per pass
    parameter GEMM_LANES = BLOCK_OUT,
    // 1: PRM rows arrive byte by byte on the byte port (the one-byte DMA engine), not whole on wr_*
    parameter PRM_BYTE_PORT = 0,
    // 1: the lane-serial datapath (one GEMM column and one ALU lane, BATCH 1, BLOCK_OUT >= 2, byte
    // port): accumulators and parameter rows are block RAMs of one output lane per word, see below
    parameter LANE_SERIAL = 0,
    // width of the host write port: the widest buffer entry (derived; do not override)
    parameter WR_W = BLOCK_OUT * (LUT_ENTRIES * 8 + 72) > BLOCK_OUT * BLOCK_IN * W_BITS
                     ? BLOCK_OUT * (LUT_ENTRIES * 8 + 72) : BLOCK_OUT * BLOCK_IN * W_BITS
) (
    input  wire                          clk,
    input  wire                          insn_valid,
    input  wire [`INSN_BITS-1:0]          insn,
    output wire                          insn_ready,
    output reg                           done,
    input  wire                          wr_en,
    input  wire [2:0]                    wr_scope,
    input  wire [23:0]                   wr_addr,
    input  wire [WR_W-1:0]               wr_data,
    input  wire                          ld_en,
    input  wire [2:0]                    ld_scope,
    input  wire [23:0]                   ld_addr,
    input  wire [WR_W-1:0]               ld_data,
    input  wire [23:0]                   rd_addr,
    output wire [BATCH*BLOCK_OUT*32-1:0] rd_data,
    input  wire                          prm_byte_en,
    input  wire                          acc_byte_en,
    input  wire [23:0]                   byte_addr,
    input  wire [15:0]                   byte_idx,
    input  wire [7:0]                    byte_data
);
    localparam LEVELS = 1 << W_BITS;
    localparam INP_W = BATCH * BLOCK_IN * A_BITS;
    localparam WGT_W = BLOCK_OUT * BLOCK_IN * W_BITS;
    localparam ACC_W = BATCH * BLOCK_OUT * 32;
    localparam LUT_W = BLOCK_OUT * LUT_ENTRIES * 8;
    localparam PRM_W = LUT_W + BLOCK_OUT * (32 + 32 + 8);
    localparam GROUP = (LUT_MODE == 1) ? LEVELS : 1;  // accumulator entries per GEMM destination
    localparam SCOPE_UOP = 0, SCOPE_WGT = 1, SCOPE_INP = 2, SCOPE_ACC = 3, SCOPE_PRM = 4;
    localparam OPC_GEMM = 2, OPC_ALU = 3, ALU_MUL = 3, ALU_LUT_APPLY = 5, ALU_REQUANT = 7;
    localparam ALU_PASSES = BATCH * BLOCK_OUT / ALU_LANES, ALU_PART_W = ALU_LANES * 32;
    localparam GEMM_PASSES = BLOCK_OUT / GEMM_LANES;
    // decode mode with fewer ALU lanes than outputs: LUT_APPLY (which decode-mode programs do not
    // use: the GEMM applies the LUT) runs on the ALU lanes, one pass per level, with ALU_LANES
    // int8 x int32 multipliers instead of BATCH*BLOCK_OUT of them
    localparam SERIAL_LUT = LUT_MODE == 2 && ALU_PASSES > 1;
    localparam MB = MUL_CLOCKS > 1 ? $clog2(MUL_CLOCKS) : 0;  // bits of the serial multiply's clock
    localparam KW = (SERIAL_LUT ? 9 + $clog2(ALU_PASSES) : 9) + MB;  // bits of the clock-in-step counter
    // buffer address bits. A micro-op's dst / src / wgt plus the loop offsets is an address in a
    // buffer (dst: ACC; src: INP or ACC; wgt: WGT or PRM), so its bits above the deepest of those
    // buffers never change an address in range: the micro-op buffer keeps only the bits below
    // (22 of 64 on the smallest iCE40 core, two 4 Kb block RAMs of four) and the address
    // arithmetic is as narrow
    localparam INP_AW = INP_DEPTH > 1 ? $clog2(INP_DEPTH) : 1, WGT_AW = WGT_DEPTH > 1 ? $clog2(WGT_DEPTH) : 1;
    localparam ACC_AW = ACC_DEPTH > 1 ? $clog2(ACC_DEPTH) : 1, PRM_AW = PRM_DEPTH > 1 ? $clog2(PRM_DEPTH) : 1;
    localparam DST_AW = ACC_AW < `UOP_DST_W ? ACC_AW : `UOP_DST_W;
    localparam SRC_AW0 = INP_AW > ACC_AW ? INP_AW : ACC_AW, WGT_AW0 = WGT_AW > PRM_AW ? WGT_AW : PRM_AW;
    localparam SRC_AW = SRC_AW0 < `UOP_SRC_W ? SRC_AW0 : `UOP_SRC_W;
    localparam WGT_AWU = WGT_AW0 < `UOP_WGT_W ? WGT_AW0 : `UOP_WGT_W;
    localparam UOP_W = DST_AW + SRC_AW + WGT_AWU;  // {wgt, src, dst} as kept in the micro-op buffer

    // ------------------------------------------------------------------ buffers
    // no_rw_check: reads of these buffers never meet a write of the same entry in the same clock, so
    // yosys need not resolve such collisions: the load module writes INP/WGT entries the dependency
    // tokens keep the compute module off, and micro-ops are written only while no instruction
    // executes. The accumulator's GEMM/ALU reads do meet its writes (consecutive steps on one
    // destination) and keep yosys' write-to-read bypass
    (* no_rw_check *) reg [INP_W-1:0] inp_mem [0:INP_DEPTH-1];
    (* no_rw_check *) reg [WGT_W-1:0] wgt_mem [0:WGT_DEPTH-1];
    reg [ACC_W-1:0] acc_mem [0:ACC_DEPTH-1];
    (* no_rw_check *) reg [UOP_W-1:0] uop_mem [0:UOP_DEPTH-1];
    reg [PRM_W-1:0] prm_mem [0:PRM_DEPTH-1];
    // the store module's copy of the accumulators (block RAMs have one read port each, so this read is
    // a copy either way): the tokens keep the store off entries being written, so it needs no bypass
    (* no_rw_check *) reg [ACC_W-1:0] acc_store_mem [0:ACC_DEPTH-1];
    assign rd_data = GROUP == 1 ? acc_store_mem[rd_addr] : acc_mem[rd_addr];
`ifndef SYNTHESIS
    // buffers power up cleared, like the simulator's CoreState. Block RAMs power up cleared on
    // both families anyway, and yosys (which defines SYNTHESIS) would unroll these loops into one
    // write per entry: minutes of elaboration for a preset's 10k entries
    integer init;
    initial begin
        for (init = 0; init < INP_DEPTH; init = init + 1) inp_mem[init] = 0;
        for (init = 0; init < WGT_DEPTH; init = init + 1) wgt_mem[init] = 0;
        for (init = 0; init < ACC_DEPTH; init = init + 1) begin acc_mem[init] = 0; acc_store_mem[init] = 0; end
        for (init = 0; init < UOP_DEPTH; init = init + 1) uop_mem[init] = 0;
        for (init = 0; init < PRM_DEPTH; init = init + 1) prm_mem[init] = 0;
    end
`endif

    // ------------------------------------------------------------------ decoded instruction
    reg        running = 1'b0;
    reg [2:0]  opcode;
    reg        reset_dst, use_imm;
    reg [3:0]  a_bits, w_bits, alu_op;
    reg [15:0] lut_row, uop_bgn;
    reg [16:0] uop_end;
    reg [13:0] iter_out, iter_in;
    reg [15:0] dst_f_out, dst_f_in, src_f_out, src_f_in, wgt_f_out, wgt_f_in;
    reg signed [31:0] imm;
    assign insn_ready = !running;
    initial done = 1'b0;

    // address generation: the next step to issue is micro-op u of iteration (i0, i1)
    reg [13:0] i0, i1;
    reg [16:0] u;
    reg        agen_more = 1'b0;  // steps left to issue
    reg [DST_AW-1:0] dst_off_out, dst_off_in;
    reg [SRC_AW-1:0] src_off_out, src_off_in;
    reg [WGT_AWU-1:0] wgt_off_out, wgt_off_in;
    reg [UOP_W-1:0] uop;  // uop_mem[u]: read at the clock u takes its value (u_next, below)
    wire [DST_AW-1:0] dst = uop[0 +: DST_AW] + dst_off_out + dst_off_in;
    wire [SRC_AW-1:0] src = uop[DST_AW +: SRC_AW] + src_off_out + src_off_in;
    wire [WGT_AWU-1:0] wgt = uop[DST_AW + SRC_AW +: WGT_AWU] + wgt_off_out + wgt_off_in;
    wire [8:0]  levels_insn = 9'd1 << w_bits;
    wire is_gemm = opcode == OPC_GEMM;
    wire is_lut_apply = opcode == OPC_ALU && alu_op == ALU_LUT_APPLY;
    wire last_u = u == uop_end - 1'b1;
    wire last_i1 = i1 == iter_in - 1'b1;
    wire last_i0 = i0 == iter_out - 1'b1;

    // the executing step: its buffer addresses (registers: the block-RAM read addresses) and clock k
    reg        ex_valid = 1'b0;
    reg [DST_AW-1:0] dst_q;
    reg [SRC_AW-1:0] accb_q;  // acc[src] (ALU) or acc[src*L + k] (LUT_APPLY)
    reg [PRM_AW-1:0] prm_q;
    reg [KW-1:0] k;
    // a multiplying ALU step with a serial multiplier: each ALU pass holds its operands for MUL_CLOCKS
    // clocks (mul_step counts them) and its result is valid in the last (mul_last)
    wire mul_op = MUL_CLOCKS > 1 && opcode == OPC_ALU
                  && (alu_op == ALU_MUL || alu_op == ALU_REQUANT || (SERIAL_LUT && alu_op == ALU_LUT_APPLY));
    wire [KW-1:0] mul_clocks = mul_op ? MUL_CLOCKS : 1;
    wire [KW-1:0] kk = mul_op ? (k >> MB) : k;  // the clock-in-step counter in whole ALU passes
    wire [(MB > 0 ? MB : 1)-1:0] mul_step = (MB > 0 && mul_op) ? k : 0;
    wire mul_last = !mul_op || mul_step == MUL_CLOCKS - 1;
    wire [KW-1:0] per_step = is_gemm ? (reset_dst ? (LANE_SERIAL ? GEMM_PASSES : 1) : a_bits * GEMM_PASSES)
                             : is_lut_apply ? levels_insn * (SERIAL_LUT ? ALU_PASSES * mul_clocks : 1)
                             : ALU_PASSES * mul_clocks;
    wire last_k = k == per_step - 1'b1;
    wire write_back = running && ex_valid && last_k;
    wire issue = running && agen_more && (!ex_valid || last_k);
    // buffers the tokens keep reads and writes of one entry apart are read synchronously, at the
    // clock their address register is loaded: a plain block-RAM read port. An RTL read of the
    // registered address would make yosys emulate write-to-read bypassing with a register and a
    // select per bit (~140 logic cells on the smallest iCE40 core) for collisions that cannot happen
    wire accept = !running && insn_valid;
    wire [16:0] u_next = accept ? (insn[2:0] == OPC_GEMM ? insn[`GEMM_UOP_BGN_LO +: 16] : insn[`ALU_UOP_BGN_LO +: 16])
                       : issue ? (last_u ? uop_bgn : u + 1'b1) : u;
    reg [INP_W-1:0] inp_entry;
    reg [WGT_W-1:0] wgt_entry;
    always @(posedge clk) begin
        uop <= uop_mem[u_next];
        if (issue) begin
            inp_entry <= inp_mem[src];
            wgt_entry <= wgt_mem[wgt];
        end
    end

    // ------------------------------------------------------------------ operands and writes
    reg [WGT_W-1:0] weight_idx;  // weight indices masked to w_bits
    integer c;
    always @*
        for (c = 0; c < BLOCK_OUT*BLOCK_IN; c = c + 1)
            weight_idx[c*W_BITS +: W_BITS] = wgt_entry[c*W_BITS +: W_BITS] & (levels_insn - 1'b1);
    wire ld_wgt = ld_en && ld_scope == SCOPE_WGT, ld_inp = ld_en && ld_scope != SCOPE_WGT;
    wire wr_acc = wr_en && wr_scope == SCOPE_ACC;
    always @(posedge clk) begin
        if (ld_inp || (wr_en && wr_scope == SCOPE_INP))
            inp_mem[ld_inp ? ld_addr : wr_addr] <= ld_inp ? ld_data[INP_W-1:0] : wr_data[INP_W-1:0];
        if (ld_wgt || (wr_en && wr_scope == SCOPE_WGT))
            wgt_mem[ld_wgt ? ld_addr : wr_addr] <= ld_wgt ? ld_data[WGT_W-1:0] : wr_data[WGT_W-1:0];
        if (wr_en && wr_scope == SCOPE_UOP)
            uop_mem[wr_addr] <= {wr_data[`UOP_WGT_LO +: WGT_AWU], wr_data[`UOP_SRC_LO +: SRC_AW],
                                 wr_data[`UOP_DST_LO +: DST_AW]};
    end
    generate
        if (!LANE_SERIAL) begin : vector
            // whole accumulator entries and parameter rows: GEMM, LUT apply and ALU over the output vector
            wire [PRM_W-1:0] prm = prm_mem[prm_q];  // GEMM: the LUT row; ALU: the micro-op's parameter row
            wire [ACC_W-1:0] acc_dst = acc_mem[dst_q];
            wire [ACC_W-1:0] acc_src = acc_mem[accb_q];
            reg [BLOCK_OUT*LEVELS*8-1:0] gemm_lut;   // the first LEVELS entries of each LUT row
            // lut[o, k] for LUT_APPLY (k is a level: < 2^w_bits <= LUT_ENTRIES), selected within row o's
            // LUT entries: as prm[(o*LUT_ENTRIES + k)*8 +: 8], yosys builds a shifter over the whole
            // parameter row per output, whose techmap had not ended after 17 minutes at 4,240-byte rows
            wire [BLOCK_OUT*8-1:0] lut_column;
            genvar col_o;
            for (col_o = 0; col_o < BLOCK_OUT; col_o = col_o + 1) begin : lut_col
                wire [LUT_ENTRIES*8-1:0] entries = prm[col_o*LUT_ENTRIES*8 +: LUT_ENTRIES*8];
                assign lut_column[col_o*8 +: 8] = entries[k[$clog2(LUT_ENTRIES)-1:0]*8 +: 8];
            end
            reg [GROUP*ACC_W-1:0] acc_group;         // acc[dst*GROUP + q] in gemm_unit's element order
            integer o, q, n;
            always @* begin
                for (o = 0; o < BLOCK_OUT; o = o + 1)
                    for (q = 0; q < LEVELS; q = q + 1)
                        gemm_lut[(o*LEVELS + q)*8 +: 8] = prm[(o*LUT_ENTRIES + q)*8 +: 8];
                for (q = 0; q < GROUP; q = q + 1)
                    for (n = 0; n < BATCH*BLOCK_OUT; n = n + 1)
                        acc_group[(n*GROUP + q)*32 +: 32] = (GROUP == 1) ? acc_dst[n*32 +: 32]
                            : (q < levels_insn) ? acc_mem[dst_q*levels_insn + q][n*32 +: 32] : 32'd0;
            end

            wire [GROUP*ACC_W-1:0] gemm_entries;  // the step's result: one accumulator entry per level
            if (GEMM_PASSES == 1) begin : gemm_whole
                wire [GROUP*ACC_W-1:0] gemm_next;
                reg [GROUP*ACC_W-1:0] regrouped;  // gemm_next level-major
                always @*
                    for (q = 0; q < GROUP; q = q + 1)
                        for (n = 0; n < BATCH*BLOCK_OUT; n = n + 1)
                            regrouped[(q*BATCH*BLOCK_OUT + n)*32 +: 32] = gemm_next[(n*GROUP + q)*32 +: 32];
                assign gemm_entries = regrouped;
                gemm_unit #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT), .A_BITS(A_BITS),
                            .W_BITS(W_BITS), .WEIGHT_MODE(LUT_MODE))
                    gemm (.clk(clk), .enable(ex_valid && is_gemm), .first(k == 0), .bit_index(a_bits - 1'b1 - k[3:0]),
                          .act_tile(inp_entry), .weight_idx(weight_idx), .lut(gemm_lut),
                          .acc_init(acc_group), .acc_next(gemm_next));
            end else begin : gemm_folded
                // GEMM_LANES output columns per clock: pass p computes outputs p*GEMM_LANES .. in a_bits
                // clocks (most significant bit first) and shifts them into held from the top, so after
                // the last pass held and that pass's sums are the whole entry in element order (decode
                // mode, BATCH 1: HwConfig refuses folding otherwise)
                localparam PB = $clog2(GEMM_PASSES), PART = GEMM_LANES * 32;
                reg [3:0] bit_q;
                reg [PB-1:0] pass_q;
                wire [3:0] bit_now = (k == 0) ? a_bits - 1'b1 : bit_q;
                wire [PB-1:0] pass_now = (k == 0) ? {PB{1'b0}} : pass_q;
                always @(posedge clk)
                    if (ex_valid && is_gemm) begin
                        bit_q <= (bit_now == 0) ? a_bits - 1'b1 : bit_now - 1'b1;
                        pass_q <= (bit_now == 0) ? pass_now + 1'b1 : pass_now;
                    end
                wire [PART-1:0] part_next;
                reg [ACC_W-1:0] held;
                always @(posedge clk)
                    if (ex_valid && is_gemm && bit_now == 0) held <= {part_next, held[ACC_W-1:PART]};
                assign gemm_entries = {part_next, held[ACC_W-1:PART]};
                gemm_unit #(.BATCH(1), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(GEMM_LANES), .A_BITS(A_BITS),
                            .W_BITS(W_BITS), .WEIGHT_MODE(LUT_MODE))
                    gemm (.clk(clk), .enable(ex_valid && is_gemm), .first(bit_now == a_bits - 1'b1), .bit_index(bit_now),
                          .act_tile(inp_entry),
                          .weight_idx(weight_idx[pass_now*GEMM_LANES*BLOCK_IN*W_BITS +: GEMM_LANES*BLOCK_IN*W_BITS]),
                          .lut(gemm_lut[pass_now*GEMM_LANES*LEVELS*8 +: GEMM_LANES*LEVELS*8]),
                          .acc_init(acc_dst[pass_now*PART +: PART]), .acc_next(part_next));
            end

            wire [ACC_W-1:0] lut_next, lut_acc;
            lut_apply #(.BATCH(BATCH), .BLOCK_OUT(BLOCK_OUT))
                apply (.clk(clk), .enable(ex_valid && is_lut_apply), .first(k == 0),
                       .level_sum(acc_src), .lut_column(lut_column), .acc_next(lut_next), .acc(lut_acc));

            // ALU: pass k covers elements k*ALU_LANES .. (k+1)*ALU_LANES-1, whose outputs o are consecutive
            // (ALU_LANES divides BLOCK_OUT) from (k*ALU_LANES) % BLOCK_OUT; the passes before the last are held
            wire [ACC_W-1:0] alu_result;
            if (ALU_PASSES == 1) begin : alu_whole_vector
                reg [ACC_W-1:0] rhs;
                always @*
                    for (n = 0; n < BATCH*BLOCK_OUT; n = n + 1)
                        rhs[n*32 +: 32] = use_imm ? imm : acc_src[n*32 +: 32];
                alu_lanes #(.BATCH(BATCH), .BLOCK_OUT(BLOCK_OUT), .SOFT_MUL(SOFT_MUL), .MUL_CLOCKS(MUL_CLOCKS))
                    alu (.clk(clk), .mul_step(mul_step), .alu_op(alu_op), .lhs(acc_dst), .rhs(rhs),
                         .bias(prm[LUT_W +: BLOCK_OUT*32]), .multiplier(prm[LUT_W + BLOCK_OUT*32 +: BLOCK_OUT*32]),
                         .shift(prm[LUT_W + BLOCK_OUT*64 +: BLOCK_OUT*8]), .result(alu_result), .product_lo());
            end else begin : alu_passes
                // the pass of this clock; a serial LUT_APPLY makes ALU_PASSES passes per level
                wire [KW-1:0] pass = kk % ALU_PASSES, level = kk / ALU_PASSES;
                wire [8:0] o0 = (pass * ALU_LANES) % BLOCK_OUT;
                // serial LUT_APPLY multiplies with the ALU lanes' multipliers: lhs = the level's sums,
                // rhs = the sign-extended LUT entries; the lane sums run in held, from zero at level 0
                wire serial_lut = SERIAL_LUT && is_lut_apply;
                reg [ALU_PART_W-1:0] lhs, rhs;
                reg signed [7:0] lut_weight;
                always @*
                    for (n = 0; n < ALU_LANES; n = n + 1) begin
                        lut_weight = prm[((o0 + n)*LUT_ENTRIES + level)*8 +: 8];
                        lhs[n*32 +: 32] = serial_lut ? acc_src[(pass*ALU_LANES + n)*32 +: 32]
                                                     : acc_dst[(pass*ALU_LANES + n)*32 +: 32];
                        rhs[n*32 +: 32] = serial_lut ? {{24{lut_weight[7]}}, lut_weight}
                                        : use_imm ? imm : acc_src[(pass*ALU_LANES + n)*32 +: 32];
                    end
                wire [ALU_PART_W-1:0] part, part_product;
                alu_lanes #(.BATCH(1), .BLOCK_OUT(ALU_LANES), .SOFT_MUL(SOFT_MUL), .MUL_CLOCKS(MUL_CLOCKS))
                    alu (.clk(clk), .mul_step(mul_step), .alu_op(alu_op), .lhs(lhs), .rhs(rhs),
                         .bias(prm[LUT_W + o0*32 +: ALU_PART_W]),
                         .multiplier(prm[LUT_W + BLOCK_OUT*32 + o0*32 +: ALU_PART_W]),
                         .shift(prm[LUT_W + BLOCK_OUT*64 + o0*8 +: ALU_LANES*8]), .result(part),
                         .product_lo(part_product));
                // held shifts each pass's lanes in from the top: after the last pass of a step it holds
                // passes 0 .. ALU_PASSES-1 in element order, so the step's result is wiring rather than a
                // per-pass select of every element. A serial LUT_APPLY's running sums of this pass (from
                // the level before) are held's lowest lanes: ALU_PASSES shifts per level bring them round
                reg [ALU_PART_W-1:0] lut_part;
                reg [ACC_W-1:0] held;
                always @*
                    for (n = 0; n < ALU_LANES; n = n + 1)
                        lut_part[n*32 +: 32] = ((level == 0) ? 32'd0 : held[n*32 +: 32]) + part_product[n*32 +: 32];
                wire [ACC_W-1:0] shifted_in = {(SERIAL_LUT && is_lut_apply) ? lut_part : part, held[ACC_W-1:ALU_PART_W]};
                always @(posedge clk)
                    if (ex_valid && mul_last) held <= shifted_in;
                assign alu_result = shifted_in;
            end

            // PRM and accumulator writes (one port each)
            integer pb;
            always @(posedge clk) begin
                if (PRM_BYTE_PORT) begin
                    // one enable per byte lane, the byte itself as every lane's data (no shifter)
                    for (pb = 0; pb < PRM_W / 8; pb = pb + 1)
                        if (prm_byte_en && byte_idx == pb) prm_mem[byte_addr][pb*8 +: 8] <= byte_data;
                end else if (wr_en && wr_scope == SCOPE_PRM)
                    prm_mem[wr_addr] <= wr_data[PRM_W-1:0];
            end
                if (GROUP == 1) begin : acc_one_port
                    wire [ACC_W-1:0] result = is_gemm ? (reset_dst ? {ACC_W{1'b0}} : gemm_entries)
                                             : (is_lut_apply && !SERIAL_LUT) ? lut_next : alu_result;
                    always @(posedge clk)
                        if (write_back || wr_acc) begin
                            acc_mem[write_back ? dst_q : wr_addr] <= write_back ? result : wr_data[ACC_W-1:0];
                            acc_store_mem[write_back ? dst_q : wr_addr] <= write_back ? result : wr_data[ACC_W-1:0];
                        end
                end else begin : acc_level_group
                    // onehot: level q of destination dst is entry dst*L + q, L = 2^w_bits of the instruction
                    integer g;
                    always @(posedge clk) begin
                        if (wr_acc) acc_mem[wr_addr] <= wr_data[ACC_W-1:0];
                        if (write_back) begin
                            if (is_gemm) begin
                                for (g = 0; g < GROUP; g = g + 1)
                                    if (g < levels_insn)
                                        acc_mem[dst_q*levels_insn + g] <= reset_dst ? {ACC_W{1'b0}} : gemm_entries[g*ACC_W +: ACC_W];
                            end else
                                acc_mem[dst_q] <= is_lut_apply ? lut_next : alu_result;
                        end
                    end
                end
        end else begin : lane_serial
            // One output lane per clock group: the GEMM computes one column (a_bits clocks a pass) and
            // the ALU has one lane, so the accumulators are a block RAM of one 32-bit lane per word
            // (entry e, lane o at word e*BLOCK_OUT + o) and the parameter rows are four block RAMs of
            // one lane's LUT, bias, multiplier and shift per word. A pass reads its lane's words and
            // writes its result lane at its last clock; a GEMM reset writes one lane per clock
            // (HwConfig.gemm_reset_cycles). The vector datapath's held entries, accumulator bypass,
            // lane selects and 52-byte parameter register are gone: the smallest iCE40 core went from
            // 8,159 to 6,256 packed logic cells, and from 31 to 30 EBR (the two operand copies of the
            // accumulators take 8 instead of 16, the parameter memories 7).
            // Reads are synchronous at the clock before their pass, and no read meets a write of
            // its word: a pass writes its own lane as the next pass (another lane: BLOCK_OUT >= 2)
            // or step (lane 0, after lane BLOCK_OUT-1) reads; a word is written before any later
            // pass reads it. ACC loads arrive byte by byte on the byte port.
            localparam LB = $clog2(BLOCK_OUT), LEB = LUT_ENTRIES * 8;
            localparam LUT_BYTES = BLOCK_OUT * LUT_ENTRIES, BIAS0 = LUT_BYTES, MULT0 = BIAS0 + 4 * BLOCK_OUT;
            localparam SHIFT0 = MULT0 + 4 * BLOCK_OUT, LEVEL_W = W_BITS > 0 ? W_BITS : 1;
            (* no_rw_check *) reg [31:0] acc_lane [0:ACC_DEPTH*BLOCK_OUT-1];
            (* ram_block, no_rw_check *) reg [LEB-1:0] lut_lane [0:PRM_DEPTH*BLOCK_OUT-1];
            (* ram_block, no_rw_check *) reg [31:0] bias_lane [0:PRM_DEPTH*BLOCK_OUT-1];
            (* ram_block, no_rw_check *) reg [31:0] mult_lane [0:PRM_DEPTH*BLOCK_OUT-1];
            (* ram_block, no_rw_check *) reg [7:0] shift_lane [0:PRM_DEPTH*BLOCK_OUT-1];
`ifndef SYNTHESIS
            integer init_l;
            initial begin
                for (init_l = 0; init_l < ACC_DEPTH*BLOCK_OUT; init_l = init_l + 1) acc_lane[init_l] = 0;
                for (init_l = 0; init_l < PRM_DEPTH*BLOCK_OUT; init_l = init_l + 1) begin
                    lut_lane[init_l] = 0; bias_lane[init_l] = 0; mult_lane[init_l] = 0; shift_lane[init_l] = 0;
                end
            end
`endif
            // the pass (output lane), activation bit (GEMM) and level (LUT_APPLY) of this clock
            reg [LB-1:0] lane;
            reg [3:0] bit_q;
            reg [LEVEL_W-1:0] level;
            reg [ACC_AW-1:0] dst_row, src_row;  // src_row: src, or src*L for LUT_APPLY (level 0)
            reg [PRM_AW-1:0] prm_row;
            wire last_level = level == levels_insn - 1'b1;
            wire pass_end = is_gemm ? (reset_dst || bit_q == 0) : is_lut_apply ? (mul_last && last_level) : mul_last;
            wire lane_write = running && ex_valid && pass_end;
            wire [LB-1:0] lane_next = issue ? {LB{1'b0}} : lane_write ? lane + 1'b1 : lane;
            wire [LEVEL_W-1:0] level_next = issue ? {LEVEL_W{1'b0}}
                                          : (ex_valid && is_lut_apply && mul_last) ? (last_level ? {LEVEL_W{1'b0}} : level + 1'b1)
                                          : level;
            wire [ACC_AW-1:0] dst_row_next = issue ? dst : dst_row;
            wire [ACC_AW-1:0] src_base = issue ? (is_lut_apply ? src * levels_insn : src) : src_row;
            wire [ACC_AW-1:0] src_row_next = src_base + (is_lut_apply ? level_next : 1'b0);
            wire [PRM_AW-1:0] prm_row_next = issue ? (is_gemm ? lut_row : wgt) : prm_row;
            always @(posedge clk) begin
                lane <= lane_next;
                level <= level_next;
                if (issue) begin
                    dst_row <= dst;
                    src_row <= is_lut_apply ? src * levels_insn : src;
                    prm_row <= is_gemm ? lut_row : wgt;
                    bit_q <= a_bits - 1'b1;
                end else if (ex_valid && is_gemm && !reset_dst)
                    bit_q <= (bit_q == 0) ? a_bits - 1'b1 : bit_q - 1'b1;
            end
            reg [31:0] acc_d, acc_s, bias_w, mult_w;
            reg [LEB-1:0] lut_w;
            reg [7:0] shift_w;
            always @(posedge clk) begin
                acc_d <= acc_lane[{dst_row_next, lane_next}];
                acc_s <= acc_lane[{src_row_next, lane_next}];
                lut_w <= lut_lane[{prm_row_next, lane_next}];
                bias_w <= bias_lane[{prm_row_next, lane_next}];
                mult_w <= mult_lane[{prm_row_next, lane_next}];
                shift_w <= shift_lane[{prm_row_next, lane_next}];
            end

            wire [31:0] part_next;
            gemm_unit #(.BATCH(1), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(1), .A_BITS(A_BITS), .W_BITS(W_BITS),
                        .WEIGHT_MODE(LUT_MODE))
                gemm (.clk(clk), .enable(ex_valid && is_gemm), .first(bit_q == a_bits - 1'b1), .bit_index(bit_q),
                      .act_tile(inp_entry), .weight_idx(weight_idx[lane*BLOCK_IN*W_BITS +: BLOCK_IN*W_BITS]),
                      .lut(lut_w[0 +: LEVELS*8]), .acc_init(acc_d), .acc_next(part_next));

            // the ALU lane; LUT_APPLY multiplies level sums by the sign-extended LUT entry of its level
            // and runs the lane's sum in lut_sum, from zero at level 0
            wire [7:0] lut_weight = lut_w[level*8 +: 8];
            wire [31:0] lhs = is_lut_apply ? acc_s : acc_d;
            wire [31:0] rhs = is_lut_apply ? {{24{lut_weight[7]}}, lut_weight} : use_imm ? imm : acc_s;
            wire [31:0] alu_part, product;
            alu_lanes #(.BATCH(1), .BLOCK_OUT(1), .SOFT_MUL(SOFT_MUL), .MUL_CLOCKS(MUL_CLOCKS))
                alu (.clk(clk), .mul_step(mul_step), .alu_op(alu_op), .lhs(lhs), .rhs(rhs), .bias(bias_w),
                     .multiplier(mult_w), .shift(shift_w), .result(alu_part), .product_lo(product));
            reg [31:0] lut_sum;
            wire [31:0] lut_total = (level == 0 ? 32'd0 : lut_sum) + product;
            always @(posedge clk)
                if (ex_valid && is_lut_apply && mul_last) lut_sum <= lut_total;
            wire [31:0] lane_result = is_gemm ? (reset_dst ? 32'd0 : part_next) : is_lut_apply ? lut_total : alu_part;

            // writes: a pass's lane, or a byte of a DMA load (never in one clock: the compute module runs
            // one instruction at a time)
            wire [ACC_AW+LB-1:0] acc_wa = lane_write ? {dst_row, lane} : {byte_addr[ACC_AW-1:0], byte_idx[LB+1:2]};
            wire [ACC_AW-1:0] store_wa = lane_write ? dst_row : byte_addr[ACC_AW-1:0];
            // a parameter row's bytes: LUT rows, then biases, multipliers and shifts, BLOCK_OUT each
            wire [15:0] bias_j = byte_idx - BIAS0, mult_j = byte_idx - MULT0, shift_j = byte_idx - SHIFT0;
            localparam LEL = $clog2(LUT_ENTRIES);
            integer b;
            always @(posedge clk) begin
                for (b = 0; b < 4; b = b + 1)
                    if (lane_write || (acc_byte_en && byte_idx[1:0] == b))
                        acc_lane[acc_wa][b*8 +: 8] <= lane_write ? lane_result[b*8 +: 8] : byte_data;
                for (b = 0; b < ACC_W / 8; b = b + 1)
                    if (lane_write ? (b / 4 == lane) : (acc_byte_en && byte_idx == b))
                        acc_store_mem[store_wa][b*8 +: 8] <= lane_write ? lane_result[(b % 4)*8 +: 8] : byte_data;
                if (prm_byte_en) begin
                    for (b = 0; b < LUT_ENTRIES; b = b + 1)
                        if (byte_idx < LUT_BYTES && byte_idx % LUT_ENTRIES == b)
                            lut_lane[{byte_addr[PRM_AW-1:0], byte_idx[LEL +: LB]}][b*8 +: 8] <= byte_data;
                    for (b = 0; b < 4; b = b + 1) begin
                        if (byte_idx >= BIAS0 && byte_idx < MULT0 && byte_idx[1:0] == b)
                            bias_lane[{byte_addr[PRM_AW-1:0], bias_j[2 +: LB]}][b*8 +: 8] <= byte_data;
                        if (byte_idx >= MULT0 && byte_idx < SHIFT0 && byte_idx[1:0] == b)
                            mult_lane[{byte_addr[PRM_AW-1:0], mult_j[2 +: LB]}][b*8 +: 8] <= byte_data;
                    end
                    if (byte_idx >= SHIFT0 && byte_idx < SHIFT0 + BLOCK_OUT)
                        shift_lane[{byte_addr[PRM_AW-1:0], shift_j[0 +: LB]}] <= byte_data;
                end
            end
        end
    endgenerate

    // ------------------------------------------------------------------ sequencer
    wire [`INSN_BITS-1:0] w = insn;
    wire gemm_has_steps = w[`GEMM_ITER_OUT_LO +: 14] != 0 && w[`GEMM_ITER_IN_LO +: 14] != 0
                          && w[`GEMM_UOP_END_LO +: 17] > w[`GEMM_UOP_BGN_LO +: 16];
    wire alu_has_steps = w[`ALU_ITER_OUT_LO +: 14] != 0 && w[`ALU_ITER_IN_LO +: 14] != 0
                         && w[`ALU_UOP_END_LO +: 17] > w[`ALU_UOP_BGN_LO +: 16];
    always @(posedge clk) begin
        done <= 1'b0;
        u <= u_next;
        if (!running && insn_valid) begin
            opcode <= w[2:0];
            if (w[2:0] == OPC_GEMM) begin
                reset_dst <= w[`GEMM_RESET_LO]; a_bits <= w[`GEMM_A_BITS_LO +: 4]; w_bits <= w[`GEMM_W_BITS_LO +: 4];
                lut_row <= w[`GEMM_LUT_ROW_LO +: 16]; alu_op <= 4'd0; use_imm <= 1'b0; imm <= 0;
                uop_bgn <= w[`GEMM_UOP_BGN_LO +: 16]; uop_end <= w[`GEMM_UOP_END_LO +: 17];
                iter_out <= w[`GEMM_ITER_OUT_LO +: 14]; iter_in <= w[`GEMM_ITER_IN_LO +: 14];
                dst_f_out <= w[`GEMM_DST_FACTOR_OUT_LO +: 16]; dst_f_in <= w[`GEMM_DST_FACTOR_IN_LO +: 16];
                src_f_out <= w[`GEMM_SRC_FACTOR_OUT_LO +: 16]; src_f_in <= w[`GEMM_SRC_FACTOR_IN_LO +: 16];
                wgt_f_out <= w[`GEMM_WGT_FACTOR_OUT_LO +: 16]; wgt_f_in <= w[`GEMM_WGT_FACTOR_IN_LO +: 16];
                running <= gemm_has_steps;
                agen_more <= gemm_has_steps;
                done <= !gemm_has_steps;
            end else begin
                reset_dst <= 1'b0; a_bits <= 4'd1; w_bits <= w[`ALU_W_BITS_LO +: 4]; lut_row <= 0;
                alu_op <= w[`ALU_ALU_OP_LO +: 4]; use_imm <= w[`ALU_USE_IMM_LO]; imm <= w[`ALU_IMM_LO +: 32];
                uop_bgn <= w[`ALU_UOP_BGN_LO +: 16]; uop_end <= w[`ALU_UOP_END_LO +: 17];
                iter_out <= w[`ALU_ITER_OUT_LO +: 14]; iter_in <= w[`ALU_ITER_IN_LO +: 14];
                dst_f_out <= w[`ALU_DST_FACTOR_OUT_LO +: 16]; dst_f_in <= w[`ALU_DST_FACTOR_IN_LO +: 16];
                src_f_out <= w[`ALU_SRC_FACTOR_OUT_LO +: 16]; src_f_in <= w[`ALU_SRC_FACTOR_IN_LO +: 16];
                wgt_f_out <= 16'd0; wgt_f_in <= 16'd0;
                running <= alu_has_steps;
                agen_more <= alu_has_steps;
                done <= !alu_has_steps;
            end
            i0 <= 0; i1 <= 0; k <= 0; ex_valid <= 1'b0;
            dst_off_out <= 0; dst_off_in <= 0; src_off_out <= 0; src_off_in <= 0; wgt_off_out <= 0; wgt_off_in <= 0;
        end else if (running) begin
            // execute: the step's clock k; after its last clock the next issued step (or the end)
            if (ex_valid && !last_k) begin
                k <= k + 1'b1;
                if (is_lut_apply && (!SERIAL_LUT || (kk % ALU_PASSES == ALU_PASSES - 1 && mul_last)))
                    accb_q <= accb_q + 1'b1;
            end
            if (write_back && !agen_more) begin
                running <= 1'b0;
                ex_valid <= 1'b0;
                done <= 1'b1;
            end
            // issue: latch the step's addresses, then advance u, then i1, then i0
            if (issue) begin
                ex_valid <= 1'b1;
                k <= 0;
                dst_q <= dst;
                prm_q <= is_gemm ? lut_row : wgt;
                accb_q <= is_lut_apply ? src * levels_insn : src;
                if (last_u) begin
                    if (!last_i1) begin
                        i1 <= i1 + 1'b1;
                        dst_off_in <= dst_off_in + dst_f_in;
                        src_off_in <= src_off_in + src_f_in;
                        wgt_off_in <= wgt_off_in + wgt_f_in;
                    end else begin
                        i1 <= 0; dst_off_in <= 0; src_off_in <= 0; wgt_off_in <= 0;
                        if (!last_i0) begin
                            i0 <= i0 + 1'b1;
                            dst_off_out <= dst_off_out + dst_f_out;
                            src_off_out <= src_off_out + src_f_out;
                            wgt_off_out <= wgt_off_out + wgt_f_out;
                        end else
                            agen_more <= 1'b0;
                    end
                end
            end
        end
    end
endmodule

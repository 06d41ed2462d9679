// qnn_board -- qnn_core with its DRAM ports on a handful of pins: the top of the iCE40 bitstream.
//
// The core's four DRAM ports (fetch, load, compute, store) are hundreds of bits wide, more than a
// breakout board has pins, and the board has no DRAM. The board top therefore drives every core
// input (start, insn_base/insn_count and the DRAM side of each port) from registers filled through
// a one-bit shift chain and folds every core output into one registered pin, so place and route
// keeps, places and times the whole core (buffers, queues, DMA, GEMM, ALU) as it would be built
// behind a DRAM bridge; the bridge itself (UART/SPI to the host's DRAM image) is not part of it.
//
// Ports:
//   clk                     the board clock (the preset's clock_mhz is what nextpnr meets)
//   load, shift_in          load shifts shift_in into the input chain (one bit per clock)
//   done                    the core's done
//   observe                 XOR of every registered core output
`include "isa_fields.vh"
module qnn_board #(
    parameter BATCH = 1,
    parameter BLOCK_IN = 8,
    parameter BLOCK_OUT = 4,
    parameter A_BITS = 2,
    parameter W_BITS = 2,
    parameter LUT_MODE = 2,
    parameter LUT_ENTRIES = 4,
    parameter INP_DEPTH = 256,
    parameter WGT_DEPTH = 256,
    parameter ACC_DEPTH = 256,
    parameter UOP_DEPTH = 256,
    parameter PRM_DEPTH = 2,
    parameter BPC = 1,
    parameter QDEPTH = 4,
    parameter MAXE = 64,
    parameter WR_W = 512,
    parameter ALU_LANES = BATCH * BLOCK_OUT,
    parameter SOFT_MUL = 0,   // qnn_core's ALU multiplier from adders (parts without DSP blocks)
    parameter MUL_CLOCKS = 1,  // clocks per ALU multiply (serial_mul32 above 1)
    parameter GEMM_LANES = BLOCK_OUT,  // GEMM output columns per clock
    parameter PRM_BEATS = 0  // qnn_core's parameter rows written beat by beat (0 on a one-byte port)
) (
    input  wire clk,
    input  wire load,
    input  wire shift_in,
    output reg  done,
    output reg  observe
);
    localparam DW = BPC * 8;
    // per read port: ar_ready, r_valid, r_data, r_bytes; the write port: aw_ready, w_ready, b_valid
    localparam RD_IN = 2 + DW + 16;
    localparam CHAIN_W = 1 + 64 + 3 * RD_IN + 3;
    localparam RD_OUT = 1 + 32 + 32 + 1;  // ar_valid, ar_addr, ar_len, r_ready
    localparam OUT_W = 3 * RD_OUT + 1 + 32 + 32 + 1 + DW + 16;

    reg [CHAIN_W-1:0] chain = 0;
    always @(posedge clk)
        if (load) chain <= {chain[CHAIN_W-2:0], shift_in};
    wire [RD_IN-1:0] f_in = chain[65 +: RD_IN], l_in = chain[65 + RD_IN +: RD_IN], c_in = chain[65 + 2*RD_IN +: RD_IN];
    wire [2:0] s_in = chain[65 + 3*RD_IN +: 3];

    wire core_done;
    wire [RD_OUT-1:0] f_out, l_out, c_out;
    wire s_aw_valid, s_w_valid;
    wire [31:0] s_aw_addr, s_aw_len;
    wire [DW-1:0] s_w_data;
    wire [15:0] s_w_bytes;
    qnn_core #(.BATCH(BATCH), .BLOCK_IN(BLOCK_IN), .BLOCK_OUT(BLOCK_OUT), .A_BITS(A_BITS), .W_BITS(W_BITS),
               .LUT_MODE(LUT_MODE), .LUT_ENTRIES(LUT_ENTRIES), .INP_DEPTH(INP_DEPTH), .WGT_DEPTH(WGT_DEPTH),
               .ACC_DEPTH(ACC_DEPTH), .UOP_DEPTH(UOP_DEPTH), .PRM_DEPTH(PRM_DEPTH), .BPC(BPC), .QDEPTH(QDEPTH),
               .MAXE(MAXE), .WR_W(WR_W), .ALU_LANES(ALU_LANES), .SOFT_MUL(SOFT_MUL), .MUL_CLOCKS(MUL_CLOCKS),
               .GEMM_LANES(GEMM_LANES), .PRM_BEATS(PRM_BEATS))
        core (.clk(clk), .start(chain[0] && !load), .insn_base(chain[1 +: 32]), .insn_count(chain[33 +: 32]),
              .done(core_done),
              .f_ar_valid(f_out[0]), .f_ar_addr(f_out[1 +: 32]), .f_ar_len(f_out[33 +: 32]), .f_ar_ready(f_in[0]),
              .f_r_valid(f_in[1]), .f_r_data(f_in[2 +: DW]), .f_r_bytes(f_in[2 + DW +: 16]), .f_r_ready(f_out[65]),
              .l_ar_valid(l_out[0]), .l_ar_addr(l_out[1 +: 32]), .l_ar_len(l_out[33 +: 32]), .l_ar_ready(l_in[0]),
              .l_r_valid(l_in[1]), .l_r_data(l_in[2 +: DW]), .l_r_bytes(l_in[2 + DW +: 16]), .l_r_ready(l_out[65]),
              .c_ar_valid(c_out[0]), .c_ar_addr(c_out[1 +: 32]), .c_ar_len(c_out[33 +: 32]), .c_ar_ready(c_in[0]),
              .c_r_valid(c_in[1]), .c_r_data(c_in[2 +: DW]), .c_r_bytes(c_in[2 + DW +: 16]), .c_r_ready(c_out[65]),
              .s_aw_valid(s_aw_valid), .s_aw_addr(s_aw_addr), .s_aw_len(s_aw_len), .s_aw_ready(s_in[0]),
              .s_w_valid(s_w_valid), .s_w_data(s_w_data), .s_w_bytes(s_w_bytes), .s_w_ready(s_in[1]),
              .s_b_valid(s_in[2]));

    reg [OUT_W-1:0] outputs;
    always @(posedge clk) begin
        outputs <= {f_out, l_out, c_out, s_aw_valid, s_aw_addr, s_aw_len, s_w_valid, s_w_data, s_w_bytes};
        observe <= ^outputs;
        done <= core_done;
    end
endmodule

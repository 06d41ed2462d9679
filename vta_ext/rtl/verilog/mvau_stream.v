// mvau_stream -- streaming matrix-vector-activation unit (FINN's MVAU) of one dedicated layer block
// of the multi-FPGA streaming planner (vta_ext/streaming): PE output rows x SIMD input lanes,
// bit-serial over the activation bits (one bit plane per clock, most significant first), weights
// in on-chip memory, a threshold stage that turns each accumulator into an O_BITS-bit code, and
// valid/ready streams in and out.
//
// One input vector (MW activation codes, unsigned A_BITS) arrives as SF = MW / SIMD beats of SIMD
// codes; the unit computes MH = NF * PE outputs, PE at a time:
//   acc[o]  = sum_c W[o, c] * a[c]                 (W signed W_BITS-bit two's complement)
//   code[o] = #{t : acc[o] >= thr[o, t]}           (T = 2^O_BITS - 1 ascending thresholds)
// A fold (nf, sf) takes A_BITS clocks: per clock each PE adds the SIMD weights whose activation bit
// is set (per weight bit plane a popcount of (activation bit AND weight bit) over the SIMD lanes,
// shifted and summed, the sign plane subtracted: no multiplier), the running sum doubles per bit,
// and the chunk
// sum is added to the accumulator on the last (least significant) bit. A vector takes
// NF * SF * A_BITS clocks; the input buffer has two banks, so the next vector streams in while
// this one is computed and the unit's initiation interval is exactly NF * SF * A_BITS clocks
// (the planner's II of a folded layer, vta_ext.streaming.sim.block_cycles).
//
// Ports:
//   wgt_we, wgt_addr, wgt_data  weight memory write (configuration): word nf*SF + sf holds the
//                               PE x SIMD weights of that fold, lane (p, s) at (p*SIMD + s)*W_BITS
//   thr_we, thr_addr, thr_data  threshold memory write: word nf holds threshold t of PE p at
//                               (p*T + t)*ACC_W (signed)
//   in_valid, in_ready, in_data [SIMD*A_BITS]   code s of the beat at s*A_BITS
//   out_valid, out_ready, out_data [PE*O_BITS]  code of output nf*PE + p at p*O_BITS
// Timing: an output beat leaves one clock after its fold's last bit; a full output register with
// out_ready low stalls the compute on the fold's last bit.
module mvau_stream #(
    parameter PE = 2,
    parameter SIMD = 4,
    parameter MW = 8,          // fan-in (a multiple of SIMD)
    parameter MH = 4,          // outputs (a multiple of PE)
    parameter W_BITS = 2,
    parameter A_BITS = 2,
    parameter O_BITS = 2,
    parameter ACC_W = W_BITS + A_BITS + $clog2(MW) + 1,
    parameter SF = MW / SIMD,
    parameter NF = MH / PE,
    parameter T = (1 << O_BITS) - 1,
    parameter WA_W = (NF * SF > 1) ? $clog2(NF * SF) : 1,
    parameter TA_W = (NF > 1) ? $clog2(NF) : 1
) (
    input  wire                    clk,
    input  wire                    rst,
    input  wire                    wgt_we,
    input  wire [WA_W-1:0]         wgt_addr,
    input  wire [PE*SIMD*W_BITS-1:0] wgt_data,
    input  wire                    thr_we,
    input  wire [TA_W-1:0]         thr_addr,
    input  wire [PE*T*ACC_W-1:0]   thr_data,
    input  wire                    in_valid,
    output wire                    in_ready,
    input  wire [SIMD*A_BITS-1:0]  in_data,
    output reg                     out_valid,
    input  wire                    out_ready,
    output reg  [PE*O_BITS-1:0]    out_data
);
    localparam SF_W = (SF > 1) ? $clog2(SF) : 1;
    localparam NF_W = (NF > 1) ? $clog2(NF) : 1;
    localparam BIT_W = (A_BITS > 1) ? $clog2(A_BITS) : 1;

    // on-chip memories: weights (NF*SF words), thresholds (NF words), two input banks (2*SF words)
    reg [PE*SIMD*W_BITS-1:0] wmem [0:NF*SF-1];
    reg [PE*T*ACC_W-1:0]     tmem [0:NF-1];
    reg [SIMD*A_BITS-1:0]    ibuf [0:2*SF-1];
    always @(posedge clk) begin
        if (wgt_we) wmem[wgt_addr] <= wgt_data;
        if (thr_we) tmem[thr_addr] <= thr_data;
    end

    // ---------------------------------------------------------------- input side (ping-pong)
    reg [1:0] full;
    reg ld_bank, cp_bank;
    reg [SF_W-1:0] ld_cnt;
    assign in_ready = !full[ld_bank];
    wire load = in_valid && in_ready;
    wire last_ld = (ld_cnt == SF - 1);
    always @(posedge clk)
        if (load) ibuf[ld_bank * SF + ld_cnt] <= in_data;

    // ---------------------------------------------------------------- compute side
    reg [NF_W-1:0] nf;
    reg [SF_W-1:0] sf;
    reg [BIT_W-1:0] bit_i;                      // activation bit of this clock (A_BITS-1 .. 0)
    wire last_bit = (bit_i == 0);
    wire last_sf = (sf == SF - 1);
    wire last_nf = (nf == NF - 1);
    wire fold_end = last_bit && last_sf;
    wire stall = fold_end && out_valid && !out_ready;
    wire go = full[cp_bank] && !stall;

    wire [SIMD*A_BITS-1:0] a_word = ibuf[cp_bank * SF + sf];
    wire [PE*SIMD*W_BITS-1:0] w_word = wmem[nf * SF + sf];
    wire [PE*T*ACC_W-1:0] t_word = tmem[nf];

    reg [PE*ACC_W-1:0] run, acc;                // per PE: running chunk sum, accumulator
    reg [PE*ACC_W-1:0] acc_new;                 // the accumulator after this clock (combinational)
    reg [PE*ACC_W-1:0] run_new;
    reg [PE*O_BITS-1:0] codes;
    localparam PW = W_BITS + $clog2(SIMD + 1) + 1;  // |sum of SIMD weights| <= SIMD * 2^(W_BITS-1)
    localparam CW = $clog2(SIMD + 1);
    reg [SIMD-1:0] plane;
    reg [CW-1:0] cnt;
    reg signed [PW-1:0] partial;
    reg signed [ACC_W-1:0] r, a, thr;
    reg [O_BITS-1:0] count;
    integer p, s, t, j;
    always @* begin
        for (s = 0; s < SIMD; s = s + 1)
            plane[s] = a_word[s*A_BITS + bit_i];
        for (p = 0; p < PE; p = p + 1) begin
            // two's complement weights as bit planes: sum_s a_s w_s = sum_j 2^j popcount(a & w_j),
            // the sign plane (j = W_BITS-1) counted negative; no multiplier, no per-lane adder
            partial = 0;
            for (j = 0; j < W_BITS; j = j + 1) begin
                cnt = 0;
                for (s = 0; s < SIMD; s = s + 1)
                    cnt = cnt + (plane[s] & w_word[(p*SIMD + s)*W_BITS + j]);
                if (j == W_BITS - 1) partial = partial - ({{(PW-CW){1'b0}}, cnt} << j);
                else partial = partial + ({{(PW-CW){1'b0}}, cnt} << j);
            end
            r = {{(ACC_W-PW){partial[PW-1]}}, partial};
            if (bit_i != A_BITS - 1) r = ($signed(run[p*ACC_W +: ACC_W]) <<< 1) + r;
            run_new[p*ACC_W +: ACC_W] = r;
            a = (sf == 0) ? r : $signed(acc[p*ACC_W +: ACC_W]) + r;
            acc_new[p*ACC_W +: ACC_W] = a;
            count = 0;
            for (t = 0; t < T; t = t + 1) begin
                thr = t_word[(p*T + t)*ACC_W +: ACC_W];
                count = count + (a >= thr);
            end
            codes[p*O_BITS +: O_BITS] = count;
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            full <= 2'b00; ld_bank <= 0; cp_bank <= 0; ld_cnt <= 0;
            nf <= 0; sf <= 0; bit_i <= A_BITS - 1; out_valid <= 0;
        end else begin
            if (load) begin
                ld_cnt <= last_ld ? 0 : ld_cnt + 1;
                if (last_ld) begin
                    full[ld_bank] <= 1'b1;
                    ld_bank <= !ld_bank;
                end
            end
            if (out_valid && out_ready) out_valid <= 0;
            if (go) begin
                run <= run_new;
                if (last_bit) acc <= acc_new;
                if (fold_end) begin
                    out_valid <= 1;
                    out_data <= codes;
                end
                if (!last_bit) bit_i <= bit_i - 1;
                else begin
                    bit_i <= A_BITS - 1;
                    if (!last_sf) sf <= sf + 1;
                    else begin
                        sf <= 0;
                        if (!last_nf) nf <= nf + 1;
                        else begin
                            nf <= 0;
                            full[cp_bank] <= 1'b0;
                            cp_bank <= !cp_bank;
                        end
                    end
                end
            end
        end
    end
endmodule

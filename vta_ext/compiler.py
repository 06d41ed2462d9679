"""Compile one quantized layer (``tvm_qnn.layer.QnnLayer``) to a program for the core.

A program is the instruction stream, the DRAM image (packed weights, parameter rows,
micro-ops; input and output regions) and the integer parameters of DESIGN's integer-only mode:

* ``lut_int, bias_int, s_w`` from ``reference.integer_requant_params``;
* an input zero point ``z`` (``layer.a_zero_point``): the core multiplies the unsigned codes as
  before and ``sum lut_int (q - z) = sum lut_int q - z sum lut_int`` goes into the bias it adds,
  ``bias_acc[o] = bias_int[o] - z sum_{c,kh,kw} lut_int[o, idx]`` (the parameter rows hold
  ``bias_acc``; the ALU, the simulator and the RTL are unchanged). A padded position must hold
  code ``z`` (``x_hat = 0``) where the core's LOAD pads with 0, so a layer with ``z != 0`` and
  padding gets its input padded with code ``z`` on the host (``LayerProgram.host_padding``; the
  core runs it unpadded);
* when the layer feeds another accelerator layer directly (``out_act=(b_next, c_next[, z_next])``)
  the core requantizes to the next layer's codes (ALU ``REQUANT``, ``ADD z_next`` when the next
  zero point is not 0, then clamp to ``[lo, hi]`` codes, ``lo``/``hi`` moved by a ReLU/ReLU6/clip
  epilogue), so activations stay codes between layers;
  otherwise it stores the raw int32 accumulator and the host computes
  ``y = acc * s_a * s_w[o]`` and the epilogue (``LayerProgram.dequantize``).

Steps: geometry -> tiling (``tiling.choose_tiling``) -> DRAM layout (``layout``) -> stream.
The stream follows VTA's double-buffered pattern: the load module fills input/weight halves,
compute waits on ``load->compute`` tokens and frees halves with ``compute->load`` tokens, the
store module drains accumulator halves (``compute->store`` / ``store->compute``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tvm_qnn import reference
from tvm_qnn.errors import QuantizationError, UnsupportedOpError

from . import layout
from .isa import AluInsn, AluOp, FinishInsn, GemmInsn, MemInsn, MemScope, Opcode, Uop, encode_uops
from .tiling import ConvGeometry, Tiling, choose_tiling

RAW_ACC_BITS = 32


@dataclass
class LayerProgram:
    """Everything the simulator (or a board) needs to run one layer."""

    name: str
    config: object  # HwConfig
    geometry: ConvGeometry
    tiling: Tiling
    insns: list
    dram: np.ndarray  # uint8 image with weights, params and micro-ops filled in
    regions: dict  # name -> (byte_offset, n_bytes, elem_bytes)
    kind: str  # "conv2d" | "dense"
    params: dict = field(default_factory=dict)  # integer-only parameters (numpy arrays)
    host_padding: tuple = (0, 0, 0, 0)  # (t, l, b, r) padded with code ``pad_code`` by load_input
    pad_code: int = 0

    @property
    def out_bits(self):
        return self.geometry.out_bits

    @property
    def outputs_codes(self):
        return self.geometry.out_bits != RAW_ACC_BITS

    @property
    def input_shape(self):
        """The layer's input (before any host padding): NCHW or (N, C)."""
        g = self.geometry
        t, l, b, r = self.host_padding
        return (g.n, g.c, g.h - t - b, g.w - l - r) if self.kind == "conv2d" else (g.n, g.c)

    @property
    def output_shape(self):
        g = self.geometry
        return (g.n, g.o, g.ho, g.wo) if self.kind == "conv2d" else (g.n, g.o)

    def dram_bytes(self):
        """Bytes of DRAM the program touches (its image size)."""
        return int(self.dram.size)

    def load_input(self, act_codes):
        """A fresh DRAM image with ``act_codes`` (NCHW or (N, C) uint8) in the input region."""
        codes = np.asarray(act_codes)
        if tuple(codes.shape) != self.input_shape:
            from tvm_qnn.errors import ShapeError
            raise ShapeError(f"layer {self.name!r}: input codes have shape {codes.shape}; expected {self.input_shape}")
        if int(codes.max(initial=0)) >= 1 << self.geometry.a_bits:
            raise QuantizationError(f"layer {self.name!r}: input code {int(codes.max())} does not fit "
                                    f"a_bits={self.geometry.a_bits}")
        cfg, g = self.config, self.geometry
        t, l, b, r = self.host_padding
        if any(self.host_padding):  # the padding holds code z (x_hat = 0); the core pads with 0
            codes = np.pad(codes, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=self.pad_code)
        packed = layout.pack_activations(codes.reshape(g.n, g.c, g.h, g.w), cfg.batch, cfg.block_in, g.a_bits)
        dram = self.dram.copy()
        offset, n_bytes, _ = self.regions["inp"]
        dram[offset : offset + n_bytes] = packed
        return dram

    def read_output(self, dram):
        """Codes (uint8) or raw accumulators (int32) from the output region, in NCHW / (N, O)."""
        cfg, g = self.config, self.geometry
        offset, n_bytes, _ = self.regions["out"]
        out = layout.unpack_outputs(dram[offset : offset + n_bytes], (g.n, g.o, g.ho, g.wo), cfg.batch,
                                    cfg.block_out, g.out_bits)
        return out.reshape(self.output_shape)

    def dequantize(self, acc):
        """Float output of a raw-accumulator program: ``acc * s_a * s_w[o]`` then the epilogue clip."""
        p = self.params
        shape = (1, -1) + (1,) * (np.ndim(acc) - 2)
        y = np.asarray(acc, dtype=np.float64) * (float(p["s_a"]) * p["s_w"]).reshape(shape)
        if p.get("out_min") is not None or p.get("out_max") is not None:
            y = np.clip(y, p.get("out_min"), p.get("out_max"))
        return y.astype(np.float32)


def host_padding(layer):
    """Padding the host applies (with code ``z``) instead of the core: a conv with a zero point."""
    if layer.kind == "conv2d" and layer.a_zero_point and any(layer.padding):
        return tuple(layer.padding)
    return (0, 0, 0, 0)


def layer_geometry(layer, out_bits):
    """:class:`ConvGeometry` of a QnnLayer (dense layers become 1x1 convs on a 1x1 image); a conv
    whose padding the host applies (:func:`host_padding`) runs unpadded on the padded input."""
    if layer.groups != 1:
        raise UnsupportedOpError(f"layer {layer.name!r}: grouped conv (groups={layer.groups}) is not supported "
                                 f"by the accelerator; it runs on the CPU")
    if layer.kind == "dense":
        n, c = layer.input_shape
        return ConvGeometry(layer.name, n, c, 1, 1, layer.out_channels, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0),
                            layer.a_bits, layer.w_bits, out_bits)
    n, c, h, w = layer.input_shape
    kh, kw = layer.kernel
    t, l, b, r = host_padding(layer)
    padding = (0, 0, 0, 0) if t or l or b or r else layer.padding
    return ConvGeometry(layer.name, n, c, h + t + b, w + l + r, layer.out_channels, kh, kw, layer.stride,
                        layer.dilation, padding, layer.a_bits, layer.w_bits, out_bits)


def integer_params(layer, out_act=None):
    """Integer-only parameters of a layer (and the next layer's codes if ``out_act = (bits, clamp[, z])``).

    Besides the reference's ``lut_int, s_w, bias_int`` (and ``multiplier, shift``): ``bias_acc``,
    the bias the core adds to its sums over the unsigned codes (module doc), ``zero_point`` (the
    input's) and, with ``out_act``, ``out_zero_point`` and the code bounds ``lo``/``hi``.
    """
    s_next = None if out_act is None else reference.act_scale(out_act[1], out_act[0])
    try:
        params = reference.integer_requant_params(layer.lut, layer.s_a, layer.bias, s_next, layer.out_channels)
    except QuantizationError as err:  # the reference's only refusal: bias_int beyond int32
        raise QuantizationError(f"layer {layer.name!r}: field 'bias': {err}") from None
    z = int(layer.a_zero_point)
    bias_acc = params["bias_int"].astype(np.int64)
    if z:
        bias_acc = bias_acc - z * reference.zero_point_weight_sums(layer.weight_idx, params["lut_int"].astype(np.int64))
        if np.any(np.abs(bias_acc) >= 2**31):
            raise QuantizationError(f"layer {layer.name!r}: field 'a_zero_point': bias_int - z * sum(lut_int) "
                                    f"(z={z}) does not fit int32")
    params = dict(params, s_a=float(layer.s_a), out_min=layer.out_min, out_max=layer.out_max,
                  bias_acc=bias_acc.astype(np.int32), zero_point=z)
    if out_act is not None:
        bits, clamp = out_act[0], out_act[1]
        z_next = int(out_act[2]) if len(out_act) > 2 else 0
        hi = (1 << bits) - 1
        if layer.out_max is not None:
            hi = min(hi, int(reference.act_codes(np.float32(layer.out_max), clamp, bits, z_next)))
        lo = 0 if layer.out_min is None else int(reference.act_codes(np.float32(layer.out_min), clamp, bits, z_next))
        params.update(lo=lo, hi=hi, out_bits=bits, out_zero_point=z_next)
    else:
        params.update(multiplier=np.zeros(layer.out_channels, np.int32), shift=np.zeros(layer.out_channels, np.int32))
    return params


class _Dram:
    """Lays out regions in one image, each aligned to its element size."""

    def __init__(self):
        self.chunks, self.regions, self.size = [], {}, 0

    def add(self, name, data_or_size, elem_bytes):
        offset = layout.ceil_div(self.size, elem_bytes) * elem_bytes
        data = np.zeros(data_or_size, np.uint8) if np.isscalar(data_or_size) else np.asarray(data_or_size, np.uint8)
        self.chunks.append((offset, data))
        self.regions[name] = (offset, int(data.size), elem_bytes)
        self.size = offset + int(data.size)
        return offset // elem_bytes  # element index for dram_base

    def image(self):
        out = np.zeros(self.size, np.uint8)
        for offset, data in self.chunks:
            out[offset : offset + data.size] = data
        return out


def compile_layer(layer, config, out_act=None) -> LayerProgram:
    """Compile ``layer`` for ``config``; ``out_act=(b_next, c_next[, z_next])`` makes it emit the next layer's codes."""
    out_bits = RAW_ACC_BITS if out_act is None else int(out_act[0])
    geom = layer_geometry(layer, out_bits)
    tiling = choose_tiling(geom, config)
    params = integer_params(layer, out_act)
    cfg = config
    idx = layer.weight_idx if layer.kind == "conv2d" else layer.weight_idx.reshape(layer.out_channels, -1, 1, 1)
    ob, cb, nb = tiling.ob, tiling.cb, tiling.nb
    dram = _Dram()
    base = {
        "inp": dram.add("inp", nb * cb * geom.h * geom.w * cfg.inp_vector_bytes(geom.a_bits),
                        cfg.inp_vector_bytes(geom.a_bits)),
        "wgt": dram.add("wgt", layout.pack_weights(idx, cfg.block_out, cfg.block_in, geom.w_bits),
                        cfg.wgt_block_bytes(geom.w_bits)),
        "prm": dram.add("prm", layout.pack_params(params["lut_int"], params["bias_acc"], params["multiplier"],
                                                  params["shift"], cfg.block_out, cfg.lut_entries,
                                                  cfg.prm_row_bytes),
                        cfg.prm_row_bytes),
    }
    emitter = _StreamEmitter(geom, tiling, cfg, params, base)
    insns, uop_words = emitter.emit()
    uop_base = dram.add("uop", uop_words.view(np.uint8), 8)
    insns = [_rebase_uop_load(i, uop_base) for i in insns]
    dram.add("out", nb * ob * geom.ho * geom.wo * cfg.out_vector_bytes(out_bits), cfg.out_vector_bytes(out_bits))
    out_base = dram.regions["out"][0] // cfg.out_vector_bytes(out_bits)
    insns = [_rebase_store(i, out_base) for i in insns]
    return LayerProgram(layer.name, cfg, geom, tiling, insns, dram.image(), dram.regions, layer.kind, params,
                        host_padding(layer), int(layer.a_zero_point))


def _rebase_uop_load(insn, uop_base):
    if isinstance(insn, MemInsn) and insn.opcode == Opcode.LOAD and insn.scope == MemScope.UOP:
        return _replace(insn, dram_base=insn.dram_base + uop_base)
    return insn


def _rebase_store(insn, out_base):
    if isinstance(insn, MemInsn) and insn.opcode == Opcode.STORE:
        return _replace(insn, dram_base=insn.dram_base + out_base)
    return insn


def _replace(insn, **changes):
    import dataclasses
    return dataclasses.replace(insn, **changes)


class _StreamEmitter:
    """Walks the tiles of one layer and emits the double-buffered instruction stream."""

    def __init__(self, geom, tiling, cfg, params, base):
        self.g, self.t, self.cfg, self.params, self.base = geom, tiling, cfg, params, base
        self.onehot = cfg.lut_mode == "onehot"
        self.levels = geom.levels if self.onehot else 1
        self.insns, self.uop_sets, self.uop_words = [], {}, []

    def _uop_set(self, key, uops):
        if key not in self.uop_sets:
            offset = sum(len(w) for w in self.uop_words)
            self.uop_words.append(encode_uops(uops))
            self.uop_sets[key] = (offset, len(uops))
        return self.uop_sets[key]

    def emit(self):
        g, t = self.g, self.t
        ic_tiles = layout.ceil_div(t.cb, t.ci)
        tile, acc_tile, oc_tile_count = 0, 0, 0
        for nbi in range(t.nb):
            for oc0 in range(0, t.ob, t.to):
                to_eff = min(t.to, t.ob - oc0)
                wslot_oc = oc_tile_count % 2
                oc_tile_count += 1
                self.insns.append(MemInsn(opcode=Opcode.LOAD, scope=MemScope.PRM, elem_bits=8, sram_base=0,
                                          dram_base=self.base["prm"] + oc0, y_size=1, x_size=to_eff,
                                          x_stride=to_eff))
                for y0 in range(0, g.ho, t.th):
                    th_eff = min(t.th, g.ho - y0)
                    acc_base = (acc_tile % 2) * t.acc_slot
                    for ci0 in range(0, t.cb, t.ci):
                        ci_eff = min(t.ci, t.cb - ci0)
                        slot = tile % 2
                        wslot = wslot_oc if ic_tiles == 1 else slot
                        load_w = ic_tiles > 1 or y0 == 0
                        self._emit_loads(tile, nbi, oc0, to_eff, y0, th_eff, ci0, ci_eff, slot, wslot, load_w)
                        first_ic, last_ic = ci0 == 0, ci0 + t.ci >= t.cb
                        self._emit_compute(acc_tile, to_eff, th_eff, ci_eff, slot, wslot, acc_base, first_ic, last_ic)
                        tile += 1
                    self._emit_stores(nbi, oc0, to_eff, y0, th_eff, acc_base)
                    acc_tile += 1
        # FINISH after the last store: the last two acc tiles' store tokens are still queued
        for _ in range(min(acc_tile, 2) - 1):
            self.insns.append(GemmInsn(uop_bgn=0, uop_end=0, iter_out=0, iter_in=0, pop_next=True))
        self.insns.append(FinishInsn(pop_next=acc_tile > 0))
        words = np.concatenate(self.uop_words) if self.uop_words else np.zeros(0, np.uint64)
        return self.insns, words

    def _emit_loads(self, tile, nbi, oc0, to_eff, y0, th_eff, ci0, ci_eff, slot, wslot, load_w):
        g, t, cfg = self.g, self.t, self.cfg
        top, left, _, right = g.padding
        r0 = y0 * g.stride[0] - top
        r_end = r0 + g.rows_in(th_eff)
        ya, yb = max(r0, 0), min(r_end, g.h)
        rows = max(yb - ya, 0)
        loads = []
        for c in range(ci_eff):
            loads.append(MemInsn(opcode=Opcode.LOAD, scope=MemScope.INP, elem_bits=g.a_bits,
                                 sram_base=slot * t.inp_slot + c * g.rows_in(t.th) * g.w_pad,
                                 dram_base=self.base["inp"] + ((nbi * t.cb + ci0 + c) * g.h + min(ya, g.h)) * g.w,
                                 y_size=rows, x_size=g.w, x_stride=g.w, y_pad0=min(ya - r0, r_end - r0),
                                 y_pad1=r_end - r0 - rows - min(ya - r0, r_end - r0), x_pad0=left, x_pad1=right))
        if load_w:
            k2 = g.kh * g.kw
            loads.append(MemInsn(opcode=Opcode.LOAD, scope=MemScope.WGT, elem_bits=g.w_bits,
                                 sram_base=wslot * t.wgt_slot, dram_base=self.base["wgt"] + (oc0 * t.cb + ci0) * k2,
                                 y_size=to_eff, x_size=ci_eff * k2, x_stride=t.cb * k2))
        loads[0] = _replace(loads[0], pop_next=tile >= 2)
        loads[-1] = _replace(loads[-1], push_next=True)
        self.insns.extend(loads)

    def _emit_compute(self, acc_tile, to_eff, th_eff, ci_eff, slot, wslot, acc_base, first_ic, last_ic):
        g, t = self.g, self.t
        k2 = g.kh * g.kw
        dst0 = acc_base // self.levels  # GEMM destinations count level groups in onehot mode
        uops = []
        for o in range(to_eff):
            for c in range(ci_eff):
                for ky in range(g.kh):
                    for kx in range(g.kw):
                        uops.append(Uop(dst=dst0 + o * t.th * g.wo,
                                        src=slot * t.inp_slot + c * g.rows_in(t.th) * g.w_pad
                                        + ky * g.dilation[0] * g.w_pad + kx * g.dilation[1],
                                        wgt=wslot * t.wgt_slot + ((o * ci_eff + c) * g.kh + ky) * g.kw + kx))
        alu0 = len(uops)
        uops += [Uop(dst=acc_base + o * t.th * g.wo, src=dst0 + o * t.th * g.wo, wgt=o) for o in range(to_eff)]
        uop_offset, n_uops = self._uop_set((slot, wslot, acc_base, to_eff, ci_eff), uops)
        self.insns.append(MemInsn(opcode=Opcode.LOAD, scope=MemScope.UOP, elem_bits=0, sram_base=0,
                                  dram_base=uop_offset, y_size=1, x_size=n_uops, x_stride=n_uops))
        loop = dict(iter_out=th_eff, iter_in=g.wo, dst_factor_out=g.wo, dst_factor_in=1)
        gemms = []
        for o in range(to_eff):
            if first_ic:
                gemms.append(GemmInsn(reset=True, a_bits=g.a_bits, w_bits=g.w_bits, lut_row=o,
                                      uop_bgn=o * ci_eff * k2, uop_end=o * ci_eff * k2 + 1, **loop))
            gemms.append(GemmInsn(a_bits=g.a_bits, w_bits=g.w_bits, lut_row=o, uop_bgn=o * ci_eff * k2,
                                  uop_end=(o + 1) * ci_eff * k2, src_factor_out=g.stride[0] * g.w_pad,
                                  src_factor_in=g.stride[1], **loop))
        gemms[0] = _replace(gemms[0], pop_prev=True, pop_next=first_ic and acc_tile >= 2)
        gemms[-1] = _replace(gemms[-1], push_prev=True)
        self.insns.extend(gemms)
        if not last_ic:
            return
        ops = ([(AluOp.LUT_APPLY, 0)] if self.onehot else []) + [(AluOp.BIAS, 0)]
        if self.g.out_bits != 32:
            ops += [(AluOp.REQUANT, 0)]
            if self.params.get("out_zero_point"):  # the next layer's codes + z_next
                ops += [(AluOp.ADD, int(self.params["out_zero_point"]))]
            ops += [(AluOp.MAX, self.params["lo"]), (AluOp.MIN, self.params["hi"])]
        alus = [AluInsn(alu_op=op, use_imm=op in (AluOp.MAX, AluOp.MIN, AluOp.ADD), imm=imm, w_bits=g.w_bits,
                        uop_bgn=alu0 + o, uop_end=alu0 + o + 1, src_factor_out=g.wo, src_factor_in=1, **loop)
                for o in range(to_eff) for op, imm in ops]
        alus[-1] = _replace(alus[-1], push_next=True)
        self.insns.extend(alus)

    def _emit_stores(self, nbi, oc0, to_eff, y0, th_eff, acc_base):
        g, t = self.g, self.t
        stores = [MemInsn(opcode=Opcode.STORE, scope=MemScope.ACC, elem_bits=g.out_bits,
                          sram_base=acc_base + o * t.th * g.wo,
                          dram_base=((nbi * t.ob + oc0 + o) * g.ho + y0) * g.wo,
                          y_size=1, x_size=th_eff * g.wo, x_stride=th_eff * g.wo) for o in range(to_eff)]
        stores[0] = _replace(stores[0], pop_prev=True)
        stores[-1] = _replace(stores[-1], push_prev=True)
        self.insns.extend(stores)

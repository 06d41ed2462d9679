"""Tiling of one layer onto the core's buffers (with double buffering).

A layer (dense = 1x1 conv on a 1x1 image) is cut into tiles of ``TO`` output-channel blocks x
``TH`` output rows (full width) x ``CI_t`` input-channel blocks. Input, weight and accumulator
buffers each hold two tiles (one being filled while the other is used), so a tile fits when

* input  ``2 * CI_t * TH_in * W_pad``          vectors <= ``inp_depth(a_bits)``
* weight ``2 * TO * CI_t * kh * kw``           blocks  <= ``wgt_depth(w_bits)``
* acc    ``2 * TO * TH * W_out * (2^w_bits if onehot else 1)`` <= ``acc_depth``
* micro-ops ``TO * (CI_t * kh * kw + 1)`` <= ``uop_depth``; parameter rows ``TO <= prm_depth``.

Among the fitting tilings the one with the least estimated DMA time (bytes / bandwidth plus
per-transfer latency) wins; ties prefer fewer tiles. No fitting tiling -> ``HwConfigError``
naming the layer and the buffer that is too small.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm_qnn.errors import HwConfigError

from .layout import ceil_div

MAX_PAD = 15  # LOAD's 4-bit pad fields
MAX_ITER = (1 << 14) - 1
MAX_FACTOR = (1 << 16) - 1


@dataclass(frozen=True)
class ConvGeometry:
    """Shape of one accelerator layer, conv-ified (dense: H = W = kh = kw = 1)."""

    name: str
    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    stride: tuple
    dilation: tuple
    padding: tuple  # (top, left, bottom, right)
    a_bits: int
    w_bits: int
    out_bits: int  # codes of the next layer, or 32 for raw accumulators

    @property
    def ho(self):
        top, _, bottom, _ = self.padding
        return (self.h + top + bottom - self.dilation[0] * (self.kh - 1) - 1) // self.stride[0] + 1

    @property
    def wo(self):
        _, left, _, right = self.padding
        return (self.w + left + right - self.dilation[1] * (self.kw - 1) - 1) // self.stride[1] + 1

    @property
    def w_pad(self):
        return self.w + self.padding[1] + self.padding[3]

    def rows_in(self, out_rows):
        return (out_rows - 1) * self.stride[0] + (self.kh - 1) * self.dilation[0] + 1

    @property
    def levels(self):
        return 1 << self.w_bits


@dataclass(frozen=True)
class Tiling:
    """The chosen tile sizes and the buffer slots (one half of each double buffer) they use."""

    to: int  # output-channel blocks per tile
    ci: int  # input-channel blocks per tile
    th: int  # output rows per tile
    nb: int  # batch groups
    ob: int  # output-channel blocks of the layer
    cb: int  # input-channel blocks of the layer
    inp_slot: int  # input vectors per buffer half
    wgt_slot: int  # weight blocks per buffer half
    acc_slot: int  # accumulator vectors per half (level groups expanded in onehot mode)
    uops: int
    est_dma_cycles: float


def _candidates(extent):
    """Distinct tile sizes ceil(extent / k): every tile count is reachable, ~2 sqrt(extent) values."""
    return sorted({ceil_div(extent, k) for k in range(1, extent + 1)}, reverse=True)


def _check_geometry(geom, cfg):
    if max(geom.padding) > MAX_PAD:
        raise HwConfigError(f"layer {geom.name!r}: padding {geom.padding} exceeds the LOAD pad fields (max {MAX_PAD})")
    if geom.ho <= 0 or geom.wo <= 0:
        raise HwConfigError(f"layer {geom.name!r}: empty output {geom.ho}x{geom.wo}")
    limits = (("output width", geom.wo, MAX_ITER), ("input row pitch x stride", geom.w_pad * geom.stride[0], MAX_FACTOR),
              ("input width", geom.w, MAX_FACTOR))
    for what, value, limit in limits:
        if value > limit:
            raise HwConfigError(f"layer {geom.name!r}: {what} {value} exceeds the ISA field limit {limit}")
    cfg.check_layer_bits(geom.name, geom.a_bits, geom.w_bits, None if geom.out_bits == 32 else geom.out_bits)
    if geom.levels > cfg.lut_entries:
        raise HwConfigError(f"layer {geom.name!r}: w_bits={geom.w_bits} needs {geom.levels} LUT entries; "
                            f"the core has lut_entries={cfg.lut_entries}")


def choose_tiling(geom: ConvGeometry, cfg) -> dict:
    """The cheapest fitting :class:`Tiling` of ``geom`` on ``cfg``."""
    _check_geometry(geom, cfg)
    nb, ob, cb = ceil_div(geom.n, cfg.batch), ceil_div(geom.o, cfg.block_out), ceil_div(geom.c, cfg.block_in)
    k2 = geom.kh * geom.kw
    level_factor = geom.levels if cfg.lut_mode == "onehot" else 1
    inp_depth, wgt_depth = cfg.inp_depth(geom.a_bits), cfg.wgt_depth(geom.w_bits)
    vb_in, wb = cfg.inp_vector_bytes(geom.a_bits), cfg.wgt_block_bytes(geom.w_bits)
    best, why_not = None, None
    for to in _candidates(ob):
        if to > cfg.prm_depth:
            why_not = ("prm_buff_bytes", (to, cfg.prm_depth))
            continue
        for ci in _candidates(cb):
            wgt_slot = to * ci * k2
            uops = to * (ci * k2 + 1)
            if 2 * wgt_slot > wgt_depth:
                why_not = ("wgt_buff_bytes", (2 * wgt_slot, wgt_depth))
                continue
            if uops > cfg.uop_depth:
                why_not = ("uop_buff_bytes", (uops, cfg.uop_depth))
                continue
            for th in _candidates(geom.ho):
                inp_slot = ci * geom.rows_in(th) * geom.w_pad
                acc_slot = to * th * geom.wo * level_factor
                if 2 * inp_slot > inp_depth:
                    why_not = ("inp_buff_bytes", (2 * inp_slot, inp_depth))
                    continue
                if 2 * acc_slot > cfg.acc_depth or to * th * geom.wo > MAX_FACTOR:
                    why_not = ("acc_buff_bytes", (2 * acc_slot, cfg.acc_depth))
                    continue
                row_tiles, oc_tiles, ic_tiles = ceil_div(geom.ho, th), ceil_div(ob, to), ceil_div(cb, ci)
                rows_loaded = row_tiles * geom.rows_in(th)
                inp_bytes = nb * oc_tiles * rows_loaded * cb * geom.w * vb_in
                wgt_loads = nb * oc_tiles * (1 if ic_tiles == 1 else row_tiles)
                wgt_bytes = wgt_loads * ob / oc_tiles * cb * k2 * wb
                transfers = nb * oc_tiles * row_tiles * ic_tiles * (ci + 1)
                cost = (inp_bytes + wgt_bytes) / cfg.dma_bytes_per_cycle + transfers * cfg.dma_latency_cycles
                key = (cost, row_tiles * oc_tiles * ic_tiles)
                if best is None or key < best[0]:
                    best = (key, Tiling(to=to, ci=ci, th=th, nb=nb, ob=ob, cb=cb, inp_slot=inp_slot, wgt_slot=wgt_slot,
                                      acc_slot=acc_slot, uops=uops, est_dma_cycles=cost))
    if best is None:
        buffer, (need, have) = why_not  # the failure of the smallest candidate tile
        raise HwConfigError(
            f"layer {geom.name!r}: no tile fits the core {cfg.name!r}: the smallest tile needs {need} entries of "
            f"{buffer} (double-buffered) but it holds {have}; enlarge {buffer} or reduce the layer's width/bits"
        )
    return best[1]

"""Per-layer block specs of a streaming pipeline: rows, sliding windows, work and foldings.

A ``BlockSpec`` is everything the planner (``streaming``) and the discrete-event simulation
(``streaming.sim``) need to know about one dedicated layer block, independent of the folding:

* ``rows_in`` / ``rows_out``: stream elements (feature-map rows) read / written per image;
* the vertical sliding window ``window_rows``, ``stride_rows``, ``pad_top``: output row ``r``
  needs input rows up to ``need(r) = min(rows_in - 1, r*stride - pad_top + window - 1)`` and
  keeps rows from ``first_needed(r) = max(0, r*stride - pad_top)`` on (a dense layer's window is
  its whole input; an elementwise add's window is one row);
* ``linebuf_rows``: input rows the block can hold (the window plus the next ``stride`` rows, so
  it can receive while it computes; dense layers double-buffer their whole input vector and a
  global average pool, which accumulates as rows arrive, streams the same way);
* ``work``: lane-cycles per image; a folding ``(pe, simd, mmv)`` has ``lanes = pe*simd*mmv``
  and ``II = work / lanes``: ``pe`` output channels, ``simd`` fan-in elements and ``mmv``
  output pixels of one row in parallel (FINN's PE/SIMD/MMV), each divides its extent exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm_qnn.errors import QuantizationError

from vta_ext.streaming.cost import block_resources, divisors

OUTPUT_BITS = 32  # the last layer emits logits as 32-bit words


@dataclass(frozen=True)
class BlockSpec:
    name: str
    op: str
    inputs: tuple
    rows_in: int
    rows_out: int
    window_rows: int
    stride_rows: int
    pad_top: int
    linebuf_rows: int
    work: int
    in_bits: int
    out_bits: int
    w_bits: int
    row_bits_out: int
    fan_in: int
    weight_count: int
    in_row_bits: int
    lane_limits: tuple  # (max pe, max simd, max mmv): the foldings are their divisors

    def need(self, row):
        return min(self.rows_in - 1, row * self.stride_rows - self.pad_top + self.window_rows - 1)

    def first_needed(self, row):
        if row >= self.rows_out:
            return self.rows_in  # image done: every remaining row may be dropped
        return max(0, row * self.stride_rows - self.pad_top)

    @property
    def is_mac(self):
        return self.op in ("conv2d", "dense")

    def foldings(self):
        """(pe, simd, mmv) triples sorted by lanes; at equal lanes fewer pixels first (pixel
        parallelism replicates the accumulators and the line-buffer ports)."""
        pe_max, simd_max, mmv_max = self.lane_limits
        folds = [(pe, simd, mmv) for pe in divisors(pe_max) for simd in divisors(simd_max) for mmv in divisors(mmv_max)]
        return sorted(folds, key=lambda f: (f[0] * f[1] * f[2], f[2], -f[0]))

    def ii(self, pe, simd, mmv=1):
        return self.work / (pe * simd * mmv)

    def resources(self, pe, simd, mmv=1):
        linebuf_bits = 0 if (self.op == "add" or (self.op == "avgpool" and self.rows_out == 1)) else \
            self.linebuf_rows * self.in_row_bits
        return block_resources(kind=self.op, pe=pe, simd=simd, mmv=mmv, in_bits=self.in_bits, w_bits=self.w_bits,
                               out_bits=self.out_bits, fan_in=self.fan_in, weight_count=self.weight_count,
                               linebuf_bits=linebuf_bits)


def _check_bits(value, field):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
        raise QuantizationError(f"streaming plan: {field}={value!r} is out of range; expected an integer in 1..8")
    return value


def block_specs(graph, a_bits, w_bits):
    """``{name: BlockSpec}`` of every layer (the input source included) at the given bits.

    ``a_bits``: bits of every activation stream between layers unless a layer sets ``bits``;
    ``w_bits``: weight bits unless a layer sets ``w_bits``. The last layer emits 32-bit values.
    """
    _check_bits(a_bits, "a_bits")
    _check_bits(w_bits, "w_bits")
    specs = {}
    out_bits = {}
    for layer in graph.layers:
        is_last = not graph.consumers[layer.name]
        bits = layer.bits if layer.bits is not None else (OUTPUT_BITS if is_last else a_bits)
        if layer.op in ("maxpool", "avgpool") and layer.bits is None and not is_last:
            bits = out_bits[layer.inputs[0]]  # pooling keeps the codes it reads
        out_bits[layer.name] = bits
        c_out, h_out, w_out = graph.shapes[layer.name]
        row_bits_out = w_out * c_out * bits
        if layer.op == "input":
            specs[layer.name] = BlockSpec(layer.name, "input", (), h_out, h_out, 1, 1, 0, 1, 0, bits, bits, 0,
                                          row_bits_out, 1, 0, row_bits_out, (1, 1, 1))
            continue
        c_in, h_in, w_in = graph.in_shape(layer)
        in_bits = out_bits[layer.inputs[0]]
        if layer.op == "add":
            if out_bits[layer.inputs[1]] != in_bits:
                in_bits = max(in_bits, out_bits[layer.inputs[1]])
        in_row_bits = w_in * c_in * in_bits
        weight_bits = layer.w_bits if layer.w_bits is not None else w_bits
        positions = h_out * w_out
        if layer.op == "conv2d":
            kh, kw = layer.kernel
            fan_in = c_in // layer.groups * kh * kw
            window, stride, pad = kh, layer.stride[0], layer.padding[0]
            work = positions * c_out * fan_in * in_bits
            weights = c_out * fan_in
            limits = (c_out, fan_in, w_out)
        elif layer.op == "dense":
            fan_in = c_in * h_in * w_in
            window, stride, pad = h_in, 1, 0
            work = c_out * fan_in * in_bits
            weights = c_out * fan_in
            limits = (c_out, fan_in, 1)
        elif layer.op == "add":
            fan_in, window, stride, pad = 2, 1, 1, 0
            work, weights, limits = positions * c_out, 0, (c_out, 1, w_out)
        elif layer.kernel is None:  # global average pool
            fan_in, window, stride, pad = h_in * w_in, h_in, 1, 0
            work, weights, limits = h_in * w_in * c_in, 0, (c_in, 1, 1)
        else:
            kh, kw = layer.kernel
            fan_in, window, stride, pad = kh * kw, kh, layer.stride[0], layer.padding[0]
            work, weights, limits = positions * c_out * kh * kw, 0, (c_out, 1, w_out)
        # dense layers double-buffer their input vector; a global average pool accumulates as
        # rows arrive, which streams like a double buffer (and needs no row storage)
        reduces = layer.op == "dense" or (layer.op == "avgpool" and layer.kernel is None)
        linebuf = 2 * h_in if reduces else min(h_in + 1, window + stride)
        if layer.op == "add":
            linebuf = 1  # an adder reads row r of both inputs together and stores nothing
        weight_bits_used = 0 if weights == 0 else weight_bits
        if weights:
            _check_bits(weight_bits, f"w_bits of layer {layer.name!r}")
        specs[layer.name] = BlockSpec(
            layer.name, layer.op, tuple(layer.inputs), h_in, h_out, window, stride, pad, linebuf, work,
            in_bits, bits, weight_bits_used, row_bits_out, fan_in, weights, in_row_bits, limits)
    return specs


def source_row_cycles(spec, device):
    """Cycles to stream one input row in from the host over the device link."""
    return max(1, math.ceil(spec.row_bits_out / device.link_bits_per_cycle))

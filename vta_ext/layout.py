"""DRAM layouts of the core: blocked tensors packed at their bit width.

* activations: ``(N/batch, C/block_in, H, W, batch, block_in)`` vectors, each packed as
  ``bits`` planes of ``batch*block_in`` bits (plane 0 = LSB first; bits LSB-first in bytes),
  the layout a bit-serial array reads one plane per cycle from. Fewer bits, fewer bytes.
* weights: ``(O/block_out, C/block_in, kh, kw, block_out, block_in)`` index blocks, packed the
  same way at ``w_bits``.
* outputs: ``(N/batch, O/block_out, Ho, Wo, batch, block_out)`` vectors of codes at
  ``out_bits`` or raw little-endian int32 (``out_bits = 32``).
* parameter rows, one per output block: LUT ``int8[block_out, lut_entries]``, bias
  ``int32[block_out]``, multiplier ``int32[block_out]``, shift ``int8[block_out]``; with
  ``HwConfig.prm_row_beats`` each row is followed by zeros up to whole DMA beats
  (``HwConfig.prm_row_bytes``).

Channel and batch dimensions are zero-padded to whole blocks (zero codes add nothing).
"""

from __future__ import annotations

import numpy as np


def ceil_div(a, b):
    return -(-a // b)


def pack_vectors(values, bits):
    """``(n, lanes)`` unsigned codes -> ``(n, lanes*bits/8)`` uint8, plane-major, LSB first."""
    values = np.asarray(values)
    if bits == 32:
        return np.ascontiguousarray(values.astype("<i4")).view(np.uint8).reshape(values.shape[0], -1)
    planes = (values[:, None, :].astype(np.uint8) >> np.arange(bits, dtype=np.uint8)[None, :, None]) & 1
    return np.packbits(planes.reshape(values.shape[0], -1), axis=1, bitorder="little")


def unpack_vectors(data, bits, lanes):
    """Inverse of :func:`pack_vectors`: ``(n, bytes)`` uint8 -> ``(n, lanes)`` int64."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    if bits == 32:
        return data.view("<i4").reshape(data.shape[0], lanes).astype(np.int64)
    flat = np.unpackbits(data, axis=1, bitorder="little")[:, : bits * lanes].reshape(-1, bits, lanes)
    return (flat.astype(np.int64) << np.arange(bits, dtype=np.int64)[None, :, None]).sum(axis=1)


def block_activations(codes, batch, block):
    """NCHW codes -> ``(N/b, C/blk, H, W, b, blk)`` zero-padded."""
    n, c, h, w = codes.shape
    nb, cb = ceil_div(n, batch), ceil_div(c, block)
    padded = np.zeros((nb * batch, cb * block, h, w), dtype=codes.dtype)
    padded[:n, :c] = codes
    return padded.reshape(nb, batch, cb, block, h, w).transpose(0, 2, 4, 5, 1, 3)


def unblock_activations(blocked, n, c):
    nb, cb, h, w, batch, block = blocked.shape
    return blocked.transpose(0, 4, 1, 5, 2, 3).reshape(nb * batch, cb * block, h, w)[:n, :c]


def block_weights(idx, block_out, block_in):
    """OIHW indices -> ``(O/bo, C/bi, kh, kw, bo, bi)`` zero-padded."""
    o, c, kh, kw = idx.shape
    ob, cb = ceil_div(o, block_out), ceil_div(c, block_in)
    padded = np.zeros((ob * block_out, cb * block_in, kh, kw), dtype=idx.dtype)
    padded[:o, :c] = idx
    return padded.reshape(ob, block_out, cb, block_in, kh, kw).transpose(0, 2, 4, 5, 1, 3)


def pack_activations(codes, batch, block_in, bits):
    """NCHW uint8 codes -> DRAM bytes (flat uint8)."""
    blocked = block_activations(np.asarray(codes), batch, block_in)
    return pack_vectors(blocked.reshape(-1, batch * block_in), bits).reshape(-1)


def unpack_outputs(data, shape, batch, block_out, bits):
    """DRAM bytes of an output region -> NCHW (codes uint8 or int32 accumulators)."""
    n, o, h, w = shape
    nb, ob = ceil_div(n, batch), ceil_div(o, block_out)
    vec_bytes = batch * block_out * bits // 8
    values = unpack_vectors(np.asarray(data).reshape(-1, vec_bytes), bits, batch * block_out)
    out = unblock_activations(values.reshape(nb, ob, h, w, batch, block_out), n, o)
    return out.astype(np.int32 if bits == 32 else np.uint8)


def pack_weights(idx, block_out, block_in, bits):
    blocked = block_weights(np.asarray(idx), block_out, block_in)
    return pack_vectors(blocked.reshape(-1, block_out * block_in), bits).reshape(-1)


def pack_params(lut_int, bias_int, multiplier, shift, block_out, lut_entries, row_bytes=None):
    """Per-output-block parameter rows (see the module docstring) as flat uint8; ``row_bytes`` (at least a
    row's bytes) pads each row with zeros to that many bytes (``HwConfig.prm_row_bytes``)."""
    o, levels = lut_int.shape
    ob = ceil_div(o, block_out)
    lut = np.zeros((ob * block_out, lut_entries), dtype=np.int8)
    lut[:o, :levels] = lut_int
    def padded(values, dtype):
        out = np.zeros(ob * block_out, dtype=dtype)
        out[:o] = values
        return out.reshape(ob, block_out)
    rows = [lut.reshape(ob, -1).view(np.uint8),
            padded(bias_int, "<i4").view(np.uint8),
            padded(multiplier, "<i4").view(np.uint8),
            padded(shift, np.int8).view(np.uint8)]
    entry = sum(r.shape[1] for r in rows)
    if row_bytes is not None and row_bytes > entry:
        rows.append(np.zeros((ob, row_bytes - entry), np.uint8))
    return np.concatenate(rows, axis=1).reshape(-1)


def unpack_params(rows, block_out, lut_entries):
    """``(n, row_bytes)`` uint8 -> (lut int64 (n, bo, E), bias, multiplier, shift int64 (n, bo)); bytes past
    a row's entry (beat padding) are ignored."""
    rows = np.ascontiguousarray(np.asarray(rows, dtype=np.uint8)[:, : block_out * (lut_entries + 9)])
    n = rows.shape[0]
    split = np.cumsum([block_out * lut_entries, 4 * block_out, 4 * block_out])
    lut, bias, mult, shift = np.split(rows, split, axis=1)
    return (lut.view(np.int8).reshape(n, block_out, lut_entries).astype(np.int64),
            np.ascontiguousarray(bias).view("<i4").astype(np.int64),
            np.ascontiguousarray(mult).view("<i4").astype(np.int64),
            shift.view(np.int8).astype(np.int64))

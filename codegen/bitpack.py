"""Bit packing of activation codes (TE) and of weight indices (numpy, once at compile time).

Layout (identical to ``tvm_qnn.reference.pack_bits`` along the channel axis): LSB-first bit
planes, plane ``p`` holds bit ``p`` of every code; channel ``c`` of a group sits in word
``c // W`` at bit ``c % W`` (W = 64 for uint64); channels are zero-padded to a whole word.
Activations are packed per pixel as ``(N, Hp, Wp, G, bits, words)``: for ``groups=1`` this is
``pack_bits(nhwc_codes, bits, axis=3)`` with a unit group axis; the spatial padding of
the convolution is applied while packing (words of code 0 add nothing to a popcount; with an
activation zero point ``z`` the border holds code ``z``, i.e. ``x_hat = 0``, and the kernel
subtracts ``z`` per window position from its sums), so the conv loop needs no bounds checks.

Weights are packed once on the host (:func:`pack_weight_planes`) as ``(kh, kw, planes, words,
O)``: output channels innermost, so one vector register holds the same word of 8 output
channels and the activation word is broadcast (no horizontal reduction in the inner loop).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from tvm_qnn import reference
from tvm_qnn.errors import ShapeError

from .workload import WORD_BITS


# codes of at most this many bits are counted against thresholds (2^b - 1 compares per input) instead of
# divided (one vdivps, ~3.5 cycles per 8 lanes on Zen 3, was 6 % of a 64-channel 56x56 w2a2 int8 kernel)
THRESHOLD_MAX_BITS = 3


def counts_codes(bits):
    """True when codes of ``bits`` are counted against thresholds (:func:`act_code_thresholds`), not divided."""
    return bits <= THRESHOLD_MAX_BITS


def _float_order(values):
    """float32 -> int64 keys in the order of the floats (-0 just below +0); inverse: :func:`_from_order`."""
    bits = np.asarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits)


def _from_order(keys):
    keys = np.asarray(keys, dtype=np.int64)
    bits = np.where(keys < 0, (-(keys + 1)) | -0x80000000, keys)
    return bits.astype(np.int32).view(np.float32)


def act_code_thresholds(s_a, bits, zero_point=0):
    """float32 ``T`` of shape ``(2^b - 1,)``: for every float32 ``x``, the number of ``k`` with ``x >= T[k]``
    equals the code ``clip(floor(x / s_a + 0.5) + z, 0, 2^b - 1)`` of ``reference.act_codes`` (NaN meets
    no threshold: code 0, as there). The code is a non-decreasing step function of ``x`` (a correctly
    rounded float32 division by ``s_a > 0`` and the float32 add are monotone), so ``T[k - 1]`` is the
    least float32 whose code reaches ``k``, found by bisection over the ordered float32 values and
    computed with the reference's own float32 arithmetic. None when ``s_a`` is not a positive finite
    float32 (then the kernel divides)."""
    s = np.float32(s_a)
    if not (np.isfinite(s) and s > 0):
        return None
    top = (1 << bits) - 1
    levels = np.arange(1, top + 1)

    def code(x):
        with np.errstate(all="ignore"):
            q = np.floor(x / s + np.float32(0.5)) + np.float32(zero_point)
        return np.clip(np.nan_to_num(q, nan=0.0), 0, top)

    low = np.full(top, _float_order(np.float32(-np.inf)))  # code(-inf) = 0 < k
    high = np.full(top, _float_order(np.float32(np.inf)))  # code(+inf) = top >= k
    while np.any(high - low > 1):
        middle = (low + high) // 2
        reached = code(_from_order(middle)) >= levels
        high, low = np.where(reached, middle, high), np.where(reached, low, middle)
    return _from_order(high)


def act_input_placeholder(bits, counted):
    """The float input's quantizer argument of a kernel: ``act_thresholds`` (2^b - 1,) float32 when its
    ``bits``-bit codes are ``counted`` (:func:`act_code_thresholds`), else ``act_scale`` (1,) float32."""
    if counted:
        return te.placeholder(((1 << bits) - 1,), "float32", name="act_thresholds")
    return te.placeholder((1,), "float32", name="act_scale")


def act_codes_compute(x_at, shape, act_scale, bits, name="act_codes", zero_point=0, counted=False):
    """uint8 codes ``clip(floor(x / s_a + 0.5) + z, 0, 2^b - 1)`` in float32, as the reference does.

    ``x_at(n, h, w, c)`` reads the float input (any layout); ``act_scale`` is a (1,) float32
    tensor; ``zero_point`` a compile-time integer. NaN inputs give code 0 like ``reference.act_codes``.
    ``counted``: ``act_scale`` is instead the ``(2^b - 1,)`` float32 tensor of :func:`act_code_thresholds`
    (:func:`act_input_placeholder`), and the code is the count of thresholds ``x`` reaches (no division).
    """
    if counted:
        def count(n, h, w, c):
            x = x_at(n, h, w, c)
            reached = [tirx.Select(x >= act_scale[k], tirx.const(1, "int32"), tirx.const(0, "int32"))
                       for k in range((1 << bits) - 1)]
            return sum(reached[1:], reached[0]).astype("uint8")

        return te.compute(shape, count, name=name)
    top = float((1 << bits) - 1)

    def code(n, h, w, c):
        value = tirx.floor(x_at(n, h, w, c) / act_scale[0] + tirx.const(0.5, "float32"))
        if zero_point:
            value = value + tirx.const(float(zero_point), "float32")
        # max(value, 0) lowers to select(value > 0, value, 0): NaN compares false and gives 0,
        # like reference.act_codes, without an isnan call (which would stop vectorization)
        clipped = tirx.min(tirx.max(value, tirx.const(0.0, "float32")), tirx.const(top, "float32"))
        return clipped.astype("uint8")

    return te.compute(shape, code, name=name)


def pad_word(code, p, k, channels, word="uint64"):
    """The packed word of plane ``p``, word ``k`` of a padded position holding ``code`` on every
    one of a group's ``channels`` (bits past the last channel stay 0). ``p``/``k`` may be TIR
    expressions; ``code`` is a compile-time integer (the zero point)."""
    width = WORD_BITS[word]
    if not code:
        return tirx.const(0, word)
    words = -(-channels // width)
    tail = channels - (words - 1) * width
    full = tirx.const((1 << width) - 1, word)
    last = tirx.const((1 << tail) - 1, word) if tail < width else full
    mask = tirx.Select(k == words - 1, last, full) if words > 1 else last
    bit = (tirx.const(int(code), word) >> p.astype(word)) & tirx.const(1, word)
    return mask * bit


def pack_compute(codes, bits, groups, padding, word="uint64", name="pack", codes_shape=None, pad_code=0):
    """Pack NHWC uint8 ``codes`` into ``(N, H+t+b, W+l+r, G, bits, words)`` words of ``word``.

    The spatial border holds code ``pad_code`` (the zero point: ``x_hat = 0``) on every real
    channel (:func:`pad_word`).

    ``codes`` is an NHWC tensor, or a function ``codes(n, h, w, c)`` with ``codes_shape`` (N, H, W, C)
    (so that codes stored in another layout can be packed without a copy).

    Three stages, all with image columns innermost (contiguous in NCHW, so they vectorize without
    bounds checks): ``name + "_bytes"`` packs 8 channels into one byte, stored
    ``(N, H, G, words, bits, bytes_per_word, W)`` (byte ``j`` of word ``k`` holds bit ``p`` of
    channels ``g*Cg + k*W + 8j + i`` at bit ``i``, zero past the group's channels); ``name``
    joins the bytes into words ``(N, H, G, words, bits, W)``; ``name + "_pad"`` adds the zero
    border and moves words innermost. Building bytes first keeps the per-code work on narrow
    lanes (a whole row of float codes and uint8 bits per vector) instead of one uint64 lane per
    code; the byte-to-word step costs 1/8 of a code.
    """
    if word not in WORD_BITS:
        raise ShapeError(f"word={word!r}; expected one of {sorted(WORD_BITS)}")
    width = WORD_BITS[word]
    n, h, w, c = (int(d) for d in (codes_shape if codes_shape is not None else codes.shape))
    codes_at = codes  # a te.Tensor is callable too: codes(n, h, w, c)
    top, left, bottom, right = reference.padding4(padding)
    cg = c // groups
    words = -(-cg // width)
    byte_count = width // 8
    bit = te.reduce_axis((0, 8), name="bit")

    def packed_byte(b, y, g, k, p, j, x):
        ch = k * width + j * 8 + bit
        code = codes_at(b, y, x, g * cg + tirx.min(ch, cg - 1))
        value = ((code >> p.astype("uint8")) & tirx.const(1, "uint8")) << bit.astype("uint8")
        if cg % width:
            value = tirx.Select(ch < cg, value, tirx.const(0, "uint8"))
        return te.sum(value, axis=bit)

    packed_bytes = te.compute((n, h, groups, words, bits, byte_count, w), packed_byte, name=name + "_bytes")

    def packed_word(b, y, g, k, p, x):  # little-endian: byte j holds bits 8j .. 8j+7 of the word
        out = packed_bytes[b, y, g, k, p, 0, x].astype(word)
        for j in range(1, byte_count):
            out = out | (packed_bytes[b, y, g, k, p, j, x].astype(word) << tirx.const(8 * j, word))
        return out

    interior = te.compute((n, h, groups, words, bits, w), packed_word, name=name)

    def bordered(b, y, x, g, p, k):  # (N, Hp, Wp, G, bits, words): words innermost for the conv
        inside = tirx.all(y >= top, y < top + h, x >= left, x < left + w)
        value = interior[b, tirx.min(tirx.max(y - top, 0), h - 1), g, k, p, tirx.min(tirx.max(x - left, 0), w - 1)]
        return tirx.Select(inside, value, pad_word(pad_code, p, k, cg, word))

    shape = (n, h + top + bottom, w + left + right, groups, bits, words)
    return te.compute(shape, bordered, name=name + "_pad")


def pack_weight_planes(weight_idx, scheme, w_bits, groups=1, word="uint64"):
    """Weight planes ``(kh, kw, planes, words, O)`` of ``word`` from OIHW uint8 indices.

    ``scheme="bitplane"``: plane ``j`` is bit ``j`` of the index (``w_bits`` planes);
    ``scheme="onehot"``: plane ``q`` is ``[idx == q]`` for ``q < 2^w_bits - 1``.
    Each output channel's planes cover its own group's channels (``C/groups`` of them).
    """
    idx = np.asarray(weight_idx, dtype=np.uint8)
    if idx.ndim == 2:
        idx = idx[:, :, None, None]
    if scheme == "bitplane":
        planes = [((idx >> j) & 1).astype(np.uint8) for j in range(w_bits)]
    elif scheme == "onehot":
        planes = [(idx == q).astype(np.uint8) for q in range((1 << w_bits) - 1)]
    else:
        raise ShapeError(f"scheme={scheme!r}; expected 'bitplane' or 'onehot'")
    stacked = np.stack(planes, axis=1)  # (O, P, Cg, kh, kw)
    packed = reference.pack_bits(stacked, 1, axis=2, word=word)[:, :, 0]  # (O, P, words, kh, kw)
    return np.ascontiguousarray(np.transpose(packed, (3, 4, 1, 2, 0)))


def pack_act_numpy(act_codes_nchw, bits, groups=1, padding=0, word="uint64", pad_code=0):
    """Numpy version of the activation packing (tests and benchmarks): ``(N, Hp, Wp, G, bits, words)``."""
    codes = np.asarray(act_codes_nchw)
    n, c, h, w = codes.shape
    top, left, bottom, right = reference.padding4(padding)
    padded = np.pad(codes, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_code)
    nhwgc = np.transpose(padded, (0, 2, 3, 1)).reshape(n, h + top + bottom, w + left + right, groups, c // groups)
    return reference.pack_bits(nhwgc, bits, axis=4, word=word)

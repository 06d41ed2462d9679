"""Plain-numpy oracle of the quantization contract (../DESIGN.md, "The quantization contract").

Every backend (TVM graph, bit-serial CPU kernels, the accelerator simulator, the RTL) is tested
against these functions. They are written for clarity, not speed, and import only numpy and
scipy (never TVM or torch).

Conventions
-----------
* Activations are NCHW, conv weights OIHW (or (O, C/groups, kh, kw) for grouped conv), dense
  weights (out, in): torch's layouts.
* ``act_codes``: uint8 codes ``0 .. 2^b_a - 1`` of an activation with a per-tensor zero point
  ``z`` (``0 <= z <= 2^b_a - 1``): ``q = clip(floor(x / s_a + 0.5) + z, 0, 2^b_a - 1)`` stands for
  ``x_hat = s_a * (q - z)``. ``z = 0`` is the unsigned code of a clamped non-negative input (after
  a ReLU); ``z = 2^(b_a - 1)`` symmetric signed; any other ``z`` asymmetric (ONNX QDQ's uint8).
  ``s_a = a_clamp / (2^b_a - 1)``: ``a_clamp`` is the width of the representable range
  ``[-z s_a, (2^b_a - 1 - z) s_a]``.
* Every sum runs over ``q - z`` (the value the code stands for, in units of ``s_a``); a padded
  input position holds ``x_hat = 0``, i.e. code ``z`` (it adds nothing). Kernels that keep
  unsigned code planes use ``sum w (q - z) = sum w q - z sum w`` with the padding filled with
  code ``z`` (or an equivalent border correction).
* ``idx``: uint8 weight indices ``0 .. 2^b_w - 1``, same shape as the weight.
* ``lut``: float32 levels, shape ``(O, 2^b_w)`` (per output channel) or ``(1, 2^b_w)`` (one row
  broadcast to every output channel).
* ``thresholds``: float64 bin edges, shape ``(rows, 2^b_w - 1)``, increasing;
  ``idx = #{t : t <= w}`` (``searchsorted(..., side="right")``). For k-quantile weights the
  edges are ``mu + sigma * Phi^-1(q / 2^b_w)``, which is the same as DESIGN's
  ``idx = min(floor(2^b_w * Phi((w - mu) / sigma)), 2^b_w - 1)`` because Phi is monotone.
* Integer sums are int64; float outputs are float64.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from .errors import QuantizationError, ShapeError

WORD_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64}
NICE_CLIP_SIGMAS = 3.45  # NICE's weight clip |mu + sign(mu) * 3.45 sigma|
# NICE's clip is tuned for the 2-4-bit grids it trains; from 5 bits on the default uniform clip is
# the row's max |w| (the int8 convention of TFLite / onnxruntime): the grid is fine enough that
# clipping a pretrained row's outlier weights costs more than the finer step gains.
NICE_CLIP_MAX_BITS = 4


# --------------------------------------------------------------------------- validation
def check_bits(bits, field="bits", layer=None):
    """Raise QuantizationError unless ``bits`` is an int in 1..8."""
    where = f"layer {layer!r}: " if layer else ""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 8:
        raise QuantizationError(f"{where}{field}={bits!r} is out of range; expected an integer in 1..8")
    return int(bits)


def check_clamp(clamp, field="a_clamp", layer=None):
    where = f"layer {layer!r}: " if layer else ""
    try:
        value = float(clamp)
    except (TypeError, ValueError):
        raise QuantizationError(f"{where}{field}={clamp!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise QuantizationError(f"{where}{field}={clamp!r} must be a finite number > 0")
    return value


def check_zero_point(zero_point, bits, field="a_zero_point", layer=None):
    """Raise QuantizationError unless ``zero_point`` is an integer in ``0 .. 2^bits - 1``."""
    where = f"layer {layer!r}: " if layer else ""
    if isinstance(zero_point, bool) or not isinstance(zero_point, (int, np.integer)):
        raise QuantizationError(f"{where}{field}={zero_point!r} is not an integer; expected an integer in "
                                f"0..{(1 << int(bits)) - 1}")
    if not 0 <= int(zero_point) <= (1 << int(bits)) - 1:
        raise QuantizationError(f"{where}{field}={int(zero_point)} is out of range; a_bits={int(bits)} needs an "
                                f"integer in 0..{(1 << int(bits)) - 1}")
    return int(zero_point)


def check_finite(array, field="weight", layer=None):
    array = np.asarray(array)
    if not np.all(np.isfinite(array)):
        where = f"layer {layer!r}: " if layer else ""
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise QuantizationError(f"{where}{field} has {bad} NaN/inf value(s); expected finite numbers")
    return array


# --------------------------------------------------------------------------- activations
def act_scale(clamp, bits):
    """``s_a = c_a / (2^b_a - 1)`` as float32 (the dtype every backend uses)."""
    return np.float32(check_clamp(clamp)) / np.float32((1 << check_bits(bits, "a_bits")) - 1)


def act_codes(x, clamp, bits, zero_point=0):
    """Activation codes ``q_a = clip(floor(x / s_a + 0.5) + z, 0, 2^b - 1)`` as uint8.

    Computed in float32 (``x / s_a`` is a float32 division, ``+ z`` exact on the integer-valued
    floor) so that backends working in float32 reproduce the codes exactly. With ``z = 0``
    negative inputs give code 0 (the clamp includes the ReLU); NaN gives code 0. Signed inputs:
    ``clamp`` is the range width ``c_hi - c_lo`` and ``z`` the zero point (:func:`signed_act_params`).
    """
    s_a = act_scale(clamp, bits)
    z = check_zero_point(zero_point, bits)
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        q = np.floor(x / s_a + np.float32(0.5)) + np.float32(z)
    q = np.nan_to_num(q, nan=0.0)
    return np.clip(q, 0, (1 << bits) - 1).astype(np.uint8)


def dequant_act(codes, clamp, bits, zero_point=0):
    """Float32 value of activation codes: ``(codes - z) * s_a``."""
    z = check_zero_point(zero_point, bits)
    return (np.asarray(codes, dtype=np.float32) - np.float32(z)) * act_scale(clamp, bits)


def signed_act_params(lower, upper, bits):
    """``(width, z)`` of a signed input clamped to ``[lower, upper]`` (``lower < 0 < upper``).

    ``width = float32(upper) - float32(lower)`` (so ``s_a = width / (2^b - 1)``, :func:`act_scale`)
    and ``z = clip(round(-lower / s_a), 0, 2^b - 1)``: code ``z`` is exactly 0.0, the range is
    ``s_a * ([0, 2^b - 1] - z)``. Pass both to :func:`act_codes` / :func:`dequant_act`.
    """
    bits = check_bits(bits, "a_bits")
    lower, upper = np.float32(lower), np.float32(upper)
    if not (np.isfinite(lower) and np.isfinite(upper) and lower < 0 < upper):
        raise QuantizationError(f"signed activation clamps [{lower}, {upper}] must be finite with lower < 0 < upper")
    width = np.float32(upper - lower)
    z = int(np.clip(np.round(-lower / act_scale(width, bits)), 0, (1 << bits) - 1))
    return float(width), z


# --------------------------------------------------------------------------- weights
def _rows(w, per_channel):
    w = np.asarray(w, dtype=np.float64)
    return w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)


def assign_indices(w, thresholds):
    """Weight indices from bin edges: ``idx = #{t in thresholds[row] : t <= w}`` (uint8).

    ``thresholds`` has one row (shared) or one row per output channel (axis 0 of ``w``).
    """
    w = np.asarray(w, dtype=np.float64)
    thresholds = np.atleast_2d(np.asarray(thresholds, dtype=np.float64))
    flat = w.reshape(w.shape[0], -1)
    if thresholds.shape[0] == 1:
        idx = np.searchsorted(thresholds[0], flat, side="right")
    elif thresholds.shape[0] == flat.shape[0]:
        idx = np.stack([np.searchsorted(t, row, side="right") for t, row in zip(thresholds, flat)])
    else:
        raise ShapeError(
            f"thresholds have {thresholds.shape[0]} rows; expected 1 or {flat.shape[0]} (output channels)"
        )
    return idx.reshape(w.shape).astype(np.uint8)


def kquantile_params(w, bits, per_channel=False):
    """UNIQ k-quantile levels and bin edges of a Gaussian fit N(mu, sigma) to ``w``.

    ``lut[q] = mu + sigma * Phi^-1((q + 1/2) / 2^b)`` and
    ``thresholds[q-1] = mu + sigma * Phi^-1(q / 2^b)`` for q = 1 .. 2^b - 1; each bin holds
    probability 1/2^b of the fitted Gaussian. Returns ``(lut float32 (rows, 2^b),
    thresholds float64 (rows, 2^b - 1))``.
    """
    bits = check_bits(bits, "w_bits")
    rows = _rows(check_finite(w), per_channel)
    n = 1 << bits
    mu = rows.mean(axis=1, keepdims=True)
    sigma = rows.std(axis=1, keepdims=True)
    sigma = np.where(sigma > 0, sigma, np.finfo(np.float32).tiny)  # constant weights: one level
    mids = norm.ppf((np.arange(n) + 0.5) / n)[None, :]
    edges = norm.ppf(np.arange(1, n) / n)[None, :]
    return (mu + sigma * mids).astype(np.float32), mu + sigma * edges


def kquantile_lut(w, bits, per_channel=False):
    """UNIQ k-quantile quantization of ``w``: returns ``(idx uint8, lut float32 (rows, 2^b))``."""
    lut, thresholds = kquantile_params(w, bits, per_channel)
    return assign_indices(w, thresholds), lut


def nice_clip(w):
    """NICE's default symmetric weight clip ``|mu + sign(mu) * 3.45 sigma|`` of a weight row."""
    w = np.asarray(w, dtype=np.float64)
    mu, sigma = w.mean(), w.std()
    sign = 1.0 if mu >= 0 else -1.0
    return abs(mu + sign * NICE_CLIP_SIGMAS * sigma)


def default_uniform_clip(row, bits):
    """Default symmetric clip of one weight row: :func:`nice_clip` up to ``NICE_CLIP_MAX_BITS``
    bits, the row's max ``|w|`` above (see ``NICE_CLIP_MAX_BITS``)."""
    row = np.asarray(row, dtype=np.float64)
    return nice_clip(row) if bits <= NICE_CLIP_MAX_BITS else float(np.abs(row).max())


def uniform_params(w, bits, clip=None, per_channel=False, int8_grid=False):
    """Symmetric uniform levels ``lut[q] = -clip + q * 2 clip / (2^b - 1)`` and midpoint edges
    (the step rounded to 16 significant bits so that the float32 LUT is exactly affine).

    ``clip`` defaults to NICE's ``|mu + sign(mu) 3.45 sigma|`` (per row) up to 4 bits and to the
    row's max ``|w|`` from 5 bits on (:func:`default_uniform_clip`). With b = 1 the levels
    are ``+-clip`` (binary weights). Returns ``(lut float32 (rows, 2^b), thresholds float64)``.

    ``int8_grid=True`` puts the levels on the int8 grid of the integer-only mode instead
    (:func:`uniform_int8_levels`): ``lut[q] = s_w (a + d q)`` with ``s_w = clip / 127`` and integers
    ``a, d``, so that :func:`integer_requant_params` gives back ``lut_int = a + d q`` exactly (the
    float contract and the integer-only mode then compute the same weights, and ``lut_int`` stays
    affine for the bit-plane integer kernels). Symmetric levels cannot be on that grid (127 is
    prime): ``d = floor(254 / (2^b - 1))``, one end of the range is the clip and the other falls
    short of it by ``254 - d (2^b - 1)`` int8 units (2 of 254 at 2 and 3 bits). Up to 7 bits.
    """
    bits = check_bits(bits, "w_bits")
    rows = _rows(check_finite(w), per_channel)
    n = 1 << bits
    if clip is None:
        clips = np.array([default_uniform_clip(r, bits) for r in rows])[:, None]
    else:
        clips = np.broadcast_to(np.asarray(clip, dtype=np.float64).reshape(-1, 1), (rows.shape[0], 1))
        if not np.all(np.isfinite(clips)) or np.any(clips <= 0):
            raise QuantizationError(f"uniform clip={clip!r} must be finite and > 0")
    clips = np.where(clips > 0, clips, np.finfo(np.float32).tiny)
    if int8_grid:
        # s_w with 16 significant bits times an integer below 2^8: every level exact in float32, and
        # max|lut| / 127 gives back s_w exactly (an exact quotient), hence lut_int = a + d q exactly
        mantissa, exponent = np.frexp(clips / 127.0)
        s_w = np.ldexp(np.round(np.ldexp(mantissa, 16)), exponent - 16)
        side = np.where(rows.mean(axis=1, keepdims=True) >= 0, 1.0, -1.0)  # the end NICE's clip measures
        levels = s_w * uniform_int8_levels(bits, side)
    else:
        # The half step keeps 16 significant bits, so every level (2q - (2^b - 1)) * half_step (an odd
        # integer below 2^8 times 16 bits) is exact in float32: the LUT is exactly affine and bit-plane
        # kernels reproduce sum_q lut[q] S[q] to float64 rounding (the clip moves by < 2^-16).
        mantissa, exponent = np.frexp(clips / (n - 1))
        half_step = np.ldexp(np.round(np.ldexp(mantissa, 16)), exponent - 16)
        levels = (2.0 * np.arange(n)[None, :] - (n - 1)) * half_step
    lut = levels.astype(np.float32)
    lut64 = lut.astype(np.float64)
    return lut, (lut64[:, 1:] + lut64[:, :-1]) / 2.0


def uniform_int8_levels(bits, side=1.0):
    """Integer levels ``a + d q`` (q = 0 .. 2^b - 1) of a uniform LUT on the int8 grid, as float64.

    ``d = floor(254 / (2^b - 1))``; the end on ``side`` (+1: the top, -1: the bottom; one value or a
    column per row) is ``+-127``, the other end falls short of 127 by ``254 - d (2^b - 1)``.
    QuantizationError at 8 bits (256 levels do not fit int8's 255 values ``-127 .. 127``).
    """
    bits = check_bits(bits, "w_bits")
    n = 1 << bits
    if n - 1 > 254:
        raise QuantizationError(f"w_bits={bits}: {n} uniform levels do not fit the int8 grid -127..127")
    d = 254 // (n - 1)
    side = np.asarray(side, dtype=np.float64).reshape(-1, 1)
    up = d * np.arange(n)[None, :] - 127.0  # bottom at -127
    down = 127.0 - d * (n - 1 - np.arange(n))[None, :]  # top at +127
    return np.where(side >= 0, down, up)


def uniform_lut(w, bits, clip=None, per_channel=False):
    """NICE symmetric uniform quantization of ``w``: returns ``(idx uint8, lut float32)``."""
    lut, thresholds = uniform_params(w, bits, clip, per_channel)
    return assign_indices(w, thresholds), lut


def lut_rows(lut, out_channels):
    """``lut`` broadcast to ``(out_channels, L)`` float64."""
    lut = np.atleast_2d(np.asarray(lut, dtype=np.float64))
    if lut.shape[0] not in (1, out_channels):
        raise ShapeError(f"lut has {lut.shape[0]} rows; expected 1 or {out_channels} (output channels)")
    return np.broadcast_to(lut, (out_channels, lut.shape[1]))


def dequant_weight(idx, lut):
    """Float32 weight ``lut[o, idx[o, ...]]`` (what the fake-quant and reference graphs use)."""
    idx = np.asarray(idx)
    rows = lut_rows(lut, idx.shape[0]).astype(np.float32)
    flat = idx.reshape(idx.shape[0], -1).astype(np.int64)
    return np.take_along_axis(rows, flat, axis=1).reshape(idx.shape)


def lut_is_affine(lut, rtol=1e-6):
    """True when every row is ``a + d * q`` (a uniform LUT): bit-plane weights then apply."""
    lut = np.atleast_2d(np.asarray(lut, dtype=np.float64))
    if lut.shape[1] < 3:
        return True
    steps = np.diff(lut, axis=1)
    return bool(np.allclose(steps, steps[:, :1], rtol=rtol, atol=rtol * np.abs(lut).max()))


# --------------------------------------------------------------------------- bit packing
def pack_bits(codes, bits, axis, word="uint64"):
    """Pack unsigned codes into LSB-first bit planes along ``axis``.

    Layout: the ``axis`` dimension (C) is replaced by two dimensions ``(bits, ceil(C / W))``,
    plane ``p`` first (p = 0 is the least significant bit of the code), then words of
    ``W = word size`` bits. Element ``c`` sits in word ``c // W`` at bit ``c % W``; the channel
    axis is zero-padded to a multiple of W. Example: NHWC codes packed on axis 3 give
    ``(N, H, W, bits, C_words)``.
    """
    bits = check_bits(bits)
    if word not in WORD_DTYPES:
        raise ShapeError(f"word={word!r}; expected one of {sorted(WORD_DTYPES)}")
    dtype = WORD_DTYPES[word]
    width = np.dtype(dtype).itemsize * 8
    codes = np.asarray(codes)
    axis = axis if axis >= 0 else axis + codes.ndim
    codes = np.moveaxis(codes.astype(np.uint64), axis, -1)
    channels = codes.shape[-1]
    n_words = -(-channels // width)
    padded = np.zeros(codes.shape[:-1] + (n_words * width,), dtype=np.uint64)
    padded[..., :channels] = codes
    lanes = padded.reshape(codes.shape[:-1] + (n_words, width))
    weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
    planes = [
        (((lanes >> np.uint64(p)) & np.uint64(1)) * weights).sum(axis=-1, dtype=np.uint64)
        for p in range(bits)
    ]
    packed = np.stack(planes, axis=-2).astype(dtype)  # (..., bits, n_words)
    return np.moveaxis(packed, (-2, -1), (axis, axis + 1))


def unpack_bits(planes, bits, axis, channels):
    """Inverse of :func:`pack_bits`: ``(..., bits, words, ...)`` at ``axis`` back to uint8 codes."""
    planes = np.asarray(planes)
    width = planes.dtype.itemsize * 8
    ndim_out = planes.ndim - 1
    axis = axis if axis >= 0 else axis + ndim_out
    moved = np.moveaxis(planes, (axis, axis + 1), (-2, -1)).astype(np.uint64)
    shifts = np.arange(width, dtype=np.uint64)
    lane_bits = (moved[..., None] >> shifts) & np.uint64(1)  # (..., bits, words, width)
    lane_bits = lane_bits.reshape(moved.shape[:-2] + (moved.shape[-2], -1))[..., :channels]
    values = (lane_bits << np.arange(bits, dtype=np.uint64)[:, None]).sum(axis=-2)
    return np.moveaxis(values.astype(np.uint8), -1, axis)


def popcount(words):
    """Number of set bits of each unsigned integer (int64)."""
    return np.bitwise_count(np.asarray(words)).astype(np.int64)


# --------------------------------------------------------------------------- convolution sums
def _pair(value):
    return (int(value), int(value)) if np.isscalar(value) else tuple(int(v) for v in value)


def padding4(padding):
    """Padding as ``(top, left, bottom, right)`` from an int, a (ph, pw) pair or a 4-tuple."""
    pad = _pair(padding)
    return pad + pad if len(pad) == 2 else pad


def conv_out_hw(h, w, kernel, stride=1, padding=0, dilation=1):
    (kh, kw), (sh, sw), (dh, dw) = map(_pair, (kernel, stride, dilation))
    top, left, bottom, right = padding4(padding)
    return (h + top + bottom - dh * (kh - 1) - 1) // sh + 1, (w + left + right - dw * (kw - 1) - 1) // sw + 1


def _windows(act, kernel, stride, padding, dilation, fill=0):
    """im2col: (N, C, H, W) -> (N, C, kh, kw, Ho, Wo), padded positions set to ``fill``.

    ``padding`` is an int, (ph, pw) or (top, left, bottom, right). The sums pass centred codes
    ``q - z`` with ``fill=0`` (a padded position stands for ``x_hat = 0``); the bit-serial model
    passes raw codes with ``fill=z``.
    """
    (kh, kw), (sh, sw), (dh, dw) = map(_pair, (kernel, stride, dilation))
    top, left, bottom, right = padding4(padding)
    n, c, h, w = act.shape
    ho, wo = conv_out_hw(h, w, (kh, kw), (sh, sw), (top, left, bottom, right), (dh, dw))
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"input {h}x{w} is smaller than kernel {kh}x{kw} (padding {padding})")
    padded = np.pad(act, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=act.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = padded[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh,
                                      j * dw : j * dw + sw * (wo - 1) + 1 : sw]
    return cols


def _check_conv(act_codes, idx, groups):
    act_codes, idx = np.asarray(act_codes), np.asarray(idx)
    if act_codes.ndim != 4 or idx.ndim != 4:
        raise ShapeError(f"conv expects 4-D NCHW codes and OIHW indices, got {act_codes.shape} and {idx.shape}")
    c, o = act_codes.shape[1], idx.shape[0]
    if c % groups or o % groups or idx.shape[1] * groups != c:
        raise ShapeError(
            f"conv with groups={groups}: input channels {c} and weight {idx.shape} do not agree"
        )
    return act_codes, idx


def qconv2d_sums(act_codes, idx, n_levels, stride=1, padding=0, groups=1, dilation=1, zero_point=0):
    """Exact integer sums ``S[n, o, q, y, x] = sum_{c,kh,kw : idx[o,c,kh,kw] = q} (act[n, c, ...] - z)``.

    Padded positions contribute 0 (``x_hat = 0``: code ``z``). Returns int64 of shape
    ``(N, O, n_levels, H_out, W_out)``.
    """
    act_codes, idx = _check_conv(act_codes, idx, groups)
    o, cg, kh, kw = idx.shape
    cols = _windows(act_codes.astype(np.int64) - int(zero_point), (kh, kw), stride, padding, dilation)
    n, _, _, _, ho, wo = cols.shape
    og = o // groups
    onehot = (idx[..., None] == np.arange(n_levels)).astype(np.int64)  # (O, Cg, kh, kw, L)
    sums = np.empty((n, o, n_levels, ho, wo), dtype=np.int64)
    for g in range(groups):
        block = cols[:, g * cg : (g + 1) * cg]
        sums[:, g * og : (g + 1) * og] = np.einsum("ncijyx,ocijq->noqyx", block, onehot[g * og : (g + 1) * og])
    return sums


def combine_sums(sums, s_a, lut, bias):
    """Float output ``y[o] = s_a * sum_q lut[o, q] * S[o, q] + bias[o]`` in float64."""
    out_channels = sums.shape[1]
    rows = lut_rows(lut, out_channels)
    if rows.shape[1] != sums.shape[2]:
        raise ShapeError(f"lut has {rows.shape[1]} levels; sums have {sums.shape[2]}")
    y = float(s_a) * np.einsum("noq...,oq->no...", sums.astype(np.float64), rows)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


def qconv2d(act_codes, s_a, idx, lut, bias=None, stride=1, padding=0, groups=1, dilation=1, zero_point=0):
    """Quantized conv2d: float64 output via the exact integer sums (DESIGN's float output)."""
    levels = np.atleast_2d(lut).shape[1]
    sums = qconv2d_sums(act_codes, idx, levels, stride, padding, groups, dilation, zero_point)
    return combine_sums(sums, s_a, lut, bias)


def qdense_sums(act_codes, idx, n_levels, zero_point=0):
    """``S[n, o, q] = sum_{c : idx[o, c] = q} (act[n, c] - z)`` as int64 ``(N, O, n_levels)``."""
    act_codes, idx = np.asarray(act_codes), np.asarray(idx)
    if act_codes.ndim != 2 or idx.ndim != 2 or act_codes.shape[1] != idx.shape[1]:
        raise ShapeError(f"dense expects codes (N, C) and indices (O, C), got {act_codes.shape} and {idx.shape}")
    onehot = (idx[..., None] == np.arange(n_levels)).astype(np.int64)
    return np.einsum("nc,ocq->noq", act_codes.astype(np.int64) - int(zero_point), onehot)


def qdense(act_codes, s_a, idx, lut, bias=None, zero_point=0):
    """Quantized dense layer: float64 ``(N, O)`` output via the exact integer sums."""
    levels = np.atleast_2d(lut).shape[1]
    return combine_sums(qdense_sums(act_codes, idx, levels, zero_point), s_a, lut, bias)


def bitserial_sums(act_codes, a_bits, idx, w_bits, stride=1, padding=0, groups=1, dilation=1, word="uint64",
                   zero_point=0):
    """``S`` of :func:`qconv2d_sums` computed the way the bit-serial kernels do.

    Activations are packed into ``a_bits`` LSB-first planes along channels (:func:`pack_bits`),
    the spatial padding filled with code ``z``; the weights into one-hot index planes
    ``W_q = [idx == q]`` for q < 2^b_w - 1. Then ``S'[q] = sum_p 2^p popcount(A_p & W_q)`` and the
    last level is the total minus the others, ``S'[L-1] = T - sum_{q<L-1} S'[q]`` with
    ``T = sum_p 2^p popcount(A_p & valid)``: 2^b_w - 1 one-hot planes suffice. Padding channels
    hold zero codes, so they add nothing. The zero point comes off per output channel and level:
    ``S[q] = S'[q] - z * N[q]`` with ``N[q] = #{c, kh, kw : idx = q}`` (every window position
    holds a code, the padded ones code ``z``).
    """
    a_bits, w_bits = check_bits(a_bits, "a_bits"), check_bits(w_bits, "w_bits")
    z = check_zero_point(zero_point, a_bits)
    act_codes, idx = _check_conv(act_codes, idx, groups)
    if int(np.max(act_codes, initial=0)) >= 1 << a_bits:
        raise QuantizationError(f"activation code {int(act_codes.max())} does not fit a_bits={a_bits}")
    o, cg, kh, kw = idx.shape
    levels = 1 << w_bits
    cols = _windows(act_codes, (kh, kw), stride, padding, dilation, fill=z)  # (N, C, kh, kw, Ho, Wo)
    n, _, _, _, ho, wo = cols.shape
    og = o // groups
    sums = np.zeros((n, o, levels, ho, wo), dtype=np.int64)
    for g in range(groups):
        act_planes = pack_bits(cols[:, g * cg : (g + 1) * cg], a_bits, axis=1, word=word)  # (N, Ba, Cw, kh, kw, Ho, Wo)
        w_idx = idx[g * og : (g + 1) * og]
        valid = pack_bits(np.ones_like(w_idx[:1]), 1, axis=1, word=word)[:, 0]  # (1, Cw, kh, kw)
        total = sum(
            (1 << p) * popcount(act_planes[:, p][:, None] & valid[None, :, :, :, :, None, None]).sum(axis=(2, 3, 4))
            for p in range(a_bits)
        )  # (N, 1, Ho, Wo)
        rest = np.zeros_like(total)
        for q in range(levels - 1):
            w_plane = pack_bits((w_idx == q).astype(np.uint8), 1, axis=1, word=word)[:, 0]  # (Og, Cw, kh, kw)
            s_q = sum(
                (1 << p) * popcount(act_planes[:, p][:, None] & w_plane[None, :, :, :, :, None, None]).sum(axis=(2, 3, 4))
                for p in range(a_bits)
            )
            sums[:, g * og : (g + 1) * og, q] = s_q
            rest = rest + s_q
        sums[:, g * og : (g + 1) * og, levels - 1] = total - rest
    counts = (idx.reshape(o, -1)[..., None] == np.arange(levels)).sum(axis=1)  # N[o, q]
    return sums - z * counts[None, :, :, None, None]


# --------------------------------------------------------------------------- integer-only mode
def integer_requant_params(lut, s_a, bias=None, s_next=None, out_channels=None, max_shift=62):
    """Integer-only parameters of one layer (DESIGN's integer-only mode).

    * ``s_w[o] = max_q |lut[o, q]| / 127``; ``lut_int[o, q] = round(lut[o, q] / s_w[o])`` (int8);
    * ``bias_int[o] = round(bias[o] / (s_a * s_w[o]))`` (int32). A channel whose weights are
      (nearly) zero but whose bias is not (the dead channels of pretrained networks: max |w| ~1e-8
      after BN folding, bias ~1) would need ``|bias_int|`` beyond int32; its ``s_w`` is raised to
      ``|bias| / (s_a 2^30)``, so its weights round to a few int8 units or 0 (they move that
      channel's output by at most ``|bias| K (2^b - 1) / 2^31`` over ``K`` inputs, against a bias of
      ``|bias|``), and ``bias_int`` keeps a factor-2 margin below 2^31;
    * when ``s_next`` (the next layer's activation scale) is given, the requant multiplier
      ``M[o] / 2^sh[o] ~= s_a * s_w[o] / s_next`` with int32 ``M`` in [2^30, 2^31) where the shift
      allows (``sh <= max_shift``).

    Returns a dict with ``lut_int, s_w, bias_int`` and, with ``s_next``, ``multiplier, shift``.
    """
    rows = lut_rows(lut, out_channels or np.atleast_2d(lut).shape[0])
    s_a = float(s_a)
    s_w = np.abs(rows).max(axis=1) / 127.0
    s_w = np.where(s_w > 0, s_w, 1.0)
    bias = np.zeros(rows.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    s_w = np.maximum(s_w, np.abs(bias) / (s_a * 2.0**30))
    lut_int = np.clip(np.round(rows / s_w[:, None]), -127, 127).astype(np.int8)
    bias_int = np.round(bias / (s_a * s_w))
    if np.any(np.abs(bias_int) >= 2**31):
        raise QuantizationError("bias does not fit int32 at this activation/weight scale")
    params = {"lut_int": lut_int, "s_w": s_w, "bias_int": bias_int.astype(np.int32)}
    if s_next is not None:
        ratio = s_a * s_w / float(s_next)
        shift = np.clip(30 - np.floor(np.log2(ratio)).astype(np.int64), 0, max_shift)
        multiplier = np.round(ratio * np.exp2(shift)).astype(np.int64)
        multiplier = np.where(multiplier >= 2**31, multiplier // 2, multiplier)
        shift = np.where(np.round(ratio * np.exp2(shift)) >= 2**31, shift - 1, shift)
        params["multiplier"] = multiplier.astype(np.int32)
        params["shift"] = shift.astype(np.int32)
    return params


def requantize(acc, multiplier, shift, out_bits, upper=None, zero_point=0, lower=None):
    """Next-layer codes ``clip(((acc * M[o] + 2^(sh[o]-1)) >> sh[o]) + z_next, lo, hi)`` as uint8.

    ``acc`` is int32 with output channels on axis 1; the product is formed in int64 (as in
    hardware, a 32x32 multiply). ``hi = 2^out_bits - 1`` or ``upper`` if smaller (ReLU6/clip);
    ``lo = 0`` or ``lower`` if larger (a ReLU before signed codes: ``lo = z_next``).
    """
    out_bits = check_bits(out_bits, "a_bits")
    z = check_zero_point(zero_point, out_bits, "zero_point")
    acc = np.asarray(acc).astype(np.int64)
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    m = np.asarray(multiplier, dtype=np.int64).reshape(shape)
    sh = np.asarray(shift, dtype=np.int64).reshape(shape)
    rounding = np.where(sh > 0, np.left_shift(np.int64(1), np.maximum(sh - 1, 0)), 0)
    value = np.right_shift(acc * m + rounding, sh) + z
    hi = (1 << out_bits) - 1 if upper is None else min((1 << out_bits) - 1, int(upper))
    lo = 0 if lower is None else max(0, int(lower))
    return np.clip(value, lo, hi).astype(np.uint8)


def qconv2d_int_acc(act_codes, idx, lut_int, bias_int, stride=1, padding=0, groups=1, dilation=1, zero_point=0):
    """int32 accumulator ``acc[o] = sum lut_int[o, idx] * (q_a - z) + bias_int[o]`` (padding adds 0)."""
    lut_int = np.atleast_2d(np.asarray(lut_int, dtype=np.int64))
    sums = qconv2d_sums(act_codes, idx, lut_int.shape[1], stride, padding, groups, dilation, zero_point)
    rows = np.broadcast_to(lut_int, (sums.shape[1], lut_int.shape[1]))
    acc = np.einsum("noqyx,oq->noyx", sums, rows) + np.asarray(bias_int, dtype=np.int64)[None, :, None, None]
    if np.any(np.abs(acc) >= 2**31):
        raise QuantizationError("accumulator overflows int32")
    return acc.astype(np.int32)


def qdense_int_acc(act_codes, idx, lut_int, bias_int, zero_point=0):
    """int32 accumulator of a dense layer, ``(N, O)``: ``sum lut_int[o, idx] * (q_a - z) + bias_int[o]``."""
    lut_int = np.atleast_2d(np.asarray(lut_int, dtype=np.int64))
    sums = qdense_sums(act_codes, idx, lut_int.shape[1], zero_point)
    rows = np.broadcast_to(lut_int, (sums.shape[1], lut_int.shape[1]))
    acc = np.einsum("noq,oq->no", sums, rows) + np.asarray(bias_int, dtype=np.int64)[None, :]
    if np.any(np.abs(acc) >= 2**31):
        raise QuantizationError("accumulator overflows int32")
    return acc.astype(np.int32)


def qconv2d_int(act_codes, idx, lut_int, bias_int, multiplier, shift, out_bits,
                stride=1, padding=0, groups=1, dilation=1, upper=None, zero_point=0, out_zero_point=0, lower=None):
    """Integer-only conv: int32 accumulator then :func:`requantize` to the next layer's codes
    (input zero point ``zero_point``, the next layer's ``out_zero_point``)."""
    acc = qconv2d_int_acc(act_codes, idx, lut_int, bias_int, stride, padding, groups, dilation, zero_point)
    return requantize(acc, multiplier, shift, out_bits, upper, out_zero_point, lower)


def qdense_int(act_codes, idx, lut_int, bias_int, multiplier, shift, out_bits, upper=None, zero_point=0,
               out_zero_point=0, lower=None):
    """Integer-only dense layer: accumulator then requant to codes ``(N, O)`` uint8."""
    return requantize(qdense_int_acc(act_codes, idx, lut_int, bias_int, zero_point), multiplier, shift, out_bits,
                      upper, out_zero_point, lower)


def zero_point_weight_sums(idx, lut_rows_):
    """``sum_{c, kh, kw} lut[o, idx[o, c, kh, kw]]`` per output channel (float64 or int64 as ``lut_rows_``).

    The per-channel term of ``sum w (q - z) = sum w q - z sum w`` that kernels keeping unsigned
    code planes subtract (the spatial padding then holds code ``z``).
    """
    idx = np.asarray(idx)
    rows = np.asarray(lut_rows_)
    rows = np.broadcast_to(np.atleast_2d(rows), (idx.shape[0], np.atleast_2d(rows).shape[1]))
    flat = idx.reshape(idx.shape[0], -1).astype(np.int64)
    return np.take_along_axis(rows, flat, axis=1).sum(axis=1)


# --------------------------------------------------------------------------- BOPs
def layer_bops(in_channels, out_channels, kernel, out_positions, a_bits, w_bits):
    """UNIQ's bit-operation count of one layer.

    ``BOPs = P * m * n * k^2 * (b_a * b_w + b_a + b_w + log2(n * k^2))`` with n input channels
    (per group for grouped conv: the fan-in of one output), m output channels, a k x k kernel
    (``kernel`` may be a (kh, kw) pair: k^2 = kh * kw) and P output positions. An fp32 layer
    passes ``a_bits = w_bits = 32``. The accumulator term ``log2(n k^2)`` is included (FINN's
    count omits it).
    """
    kh, kw = _pair(kernel)
    fan_in = int(in_channels) * kh * kw
    macs = int(out_positions) * int(out_channels) * fan_in
    return macs * (a_bits * w_bits + a_bits + w_bits + math.log2(fan_in))

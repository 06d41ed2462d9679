"""The streaming planner's layer block in RTL: ``verilog/mvau_stream.v``, its numpy reference,
thresholds from DESIGN's integer requant, and iverilog co-simulation.

``mvau_stream`` is a FINN-style matrix-vector-activation unit (``PE`` output rows x ``SIMD`` input
lanes, bit-serial over activation bits, weights and thresholds in on-chip memory, valid/ready
streams); ``vta_ext.streaming`` sizes one per layer (``PE x SIMD`` = its folding) and
``benchmarks/rtl_mvau.py`` synthesizes it for the block resource fit
(``vta_ext/rtl_fit/mvau_fit.json``, read by ``vta_ext.streaming.cost.block_resources``).

Numbers follow ``tvm_qnn.reference``: activations are unsigned integer codes, weights signed
integers (``W_BITS``-bit two's complement; an integer-only layer's ``lut_int[o, idx]`` at that
width), accumulators exact integers, outputs the next layer's codes. A threshold stage computes
``code = #{t : acc >= thr[t]}``; ``thresholds_from_requant`` gives thresholds under which it equals
``reference.requantize`` (DESIGN's ``clip(((acc*M + 2^(sh-1)) >> sh) + z, 0, 2^b - 1)``) for every
accumulator in range, so the block implements the integer-only requant without a multiplier.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import numpy as np

from tvm_qnn import reference
from tvm_qnn.errors import ShapeError
from vta_ext.rtl.simulate import SimulationError, build_testbench, check_range, pack_words, run_built, write_hex

MODULES = ("mvau_stream",)


def acc_bits(fan_in, w_bits, a_bits):
    """Accumulator width of ``mvau_stream`` (signed): ``W_BITS + A_BITS + clog2(MW) + 1``."""
    return w_bits + a_bits + max(1, math.ceil(math.log2(fan_in))) + 1 if fan_in > 1 else w_bits + a_bits + 1


def mvau_reference(weights, thresholds, acts):
    """Output codes ``[N, MH]`` of the MVAU: ``#{t : (acts @ weights.T)[n, o] >= thresholds[o, t]}``."""
    w = np.asarray(weights, dtype=np.int64)
    thr = np.asarray(thresholds, dtype=np.int64)
    acc = np.asarray(acts, dtype=np.int64) @ w.T
    return (acc[:, :, None] >= thr[None, :, :]).sum(axis=2).astype(np.int64)


def thresholds_from_requant(multiplier, shift, out_bits, acc_lo, acc_hi, zero_point=0):
    """Thresholds ``[MH, 2^out_bits - 1]`` equal to ``reference.requantize`` on ``acc_lo..acc_hi``.

    Threshold ``k`` of channel ``o`` is the smallest accumulator whose code is ``>= k`` (requant
    with ``M >= 0`` is monotone), or ``acc_hi + 1`` when no accumulator in range reaches it.
    """
    m = np.asarray(multiplier, dtype=np.int64).reshape(-1)
    if (m < 0).any():
        raise ShapeError("thresholds_from_requant: a negative multiplier is not monotone; expected M >= 0")
    sh = np.broadcast_to(np.asarray(shift, dtype=np.int64).reshape(-1), m.shape)
    acc = np.arange(acc_lo, acc_hi + 1, dtype=np.int64)
    codes = reference.requantize(np.broadcast_to(acc[:, None], (acc.size, m.size)), m, sh, out_bits,
                                 zero_point=zero_point).astype(np.int64)  # [acc, channel], nondecreasing
    levels = np.arange(1, 1 << out_bits)
    first = np.stack([np.searchsorted(codes[:, o], levels, side="left") for o in range(m.size)])
    return np.where(first < acc.size, acc_lo + first, acc_hi + 1)


def _check(weights, thresholds, acts, pe, simd, w_bits, a_bits, o_bits):
    weights, thresholds, acts = (np.asarray(x) for x in (weights, thresholds, acts))
    mh, mw = weights.shape
    if mh % pe or mw % simd:
        raise ShapeError(f"mvau: PE={pe} must divide MH={mh} and SIMD={simd} must divide MW={mw}")
    if thresholds.shape != (mh, (1 << o_bits) - 1):
        raise ShapeError(f"mvau: thresholds shape {thresholds.shape}; expected {(mh, (1 << o_bits) - 1)}")
    if acts.ndim != 2 or acts.shape[1] != mw:
        raise ShapeError(f"mvau: acts shape {acts.shape}; expected (N, {mw})")
    half = 1 << (w_bits - 1)
    check_range("weights", weights, -half, half - 1)
    check_range("acts", acts, 0, (1 << a_bits) - 1)
    width = acc_bits(mw, w_bits, a_bits)
    check_range("thresholds", thresholds, -(1 << (width - 1)), (1 << (width - 1)) - 1)
    return weights.astype(np.int64), thresholds.astype(np.int64), acts.astype(np.int64), mh, mw, width


def cosim_mvau(weights, thresholds, acts, pe, simd, w_bits, a_bits, o_bits, stall_pct=0, seed=1, timeout_s=120.0):
    """Run ``acts`` ``[N, MW]`` through ``mvau_stream`` in iverilog.

    Returns ``(codes [N, MH], beat_cycles)``: the output codes and the clock of every output beat
    (``NF`` beats per vector); ``stall_pct`` > 0 drops in_valid / out_ready at random.
    """
    weights, thresholds, acts, mh, mw, width = _check(weights, thresholds, acts, pe, simd, w_bits, a_bits, o_bits)
    sf, nf, levels = mw // simd, mh // pe, (1 << o_bits) - 1
    n = acts.shape[0]
    wgt_words = [pack_words(weights[f * pe:(f + 1) * pe, s * simd:(s + 1) * simd].reshape(-1), w_bits)
                 for f in range(nf) for s in range(sf)]
    thr_words = [pack_words(thresholds[f * pe:(f + 1) * pe].reshape(-1), width) for f in range(nf)]
    act_words = [pack_words(acts[v, s * simd:(s + 1) * simd], a_bits) for v in range(n) for s in range(sf)]
    params = {"PE": pe, "SIMD": simd, "MW": mw, "MH": mh, "W_BITS": w_bits, "A_BITS": a_bits, "O_BITS": o_bits,
              "N_VEC": n}
    with tempfile.TemporaryDirectory(prefix="qnn_mvau_") as tmp:
        work = Path(tmp)
        write_hex(work / "wgt.hex", wgt_words, pe * simd * w_bits)
        write_hex(work / "thr.hex", thr_words, pe * levels * width)
        write_hex(work / "act.hex", act_words, simd * a_bits)
        run_cmd = build_testbench("tb_mvau_stream", MODULES, params, "iverilog", work, timeout_s)
        out = run_built(run_cmd, {"wgt": work / "wgt.hex", "thr": work / "thr.hex", "act": work / "act.hex",
                                  "stall": int(stall_pct), "seed": int(seed)}, work, timeout_s,
                        f"iverilog run of tb_mvau_stream with {params}")
    beats = re.findall(r"out (\d+) cycle (\d+) data ([0-9a-fA-FxXzZ]+)", out)
    if len(beats) != n * nf:
        raise SimulationError(f"tb_mvau_stream with {params}: {len(beats)} output beats, expected {n * nf}:\n{out[-2000:]}")
    codes = np.zeros((n, mh), dtype=np.int64)
    cycles = []
    for index, (_, cycle, data) in enumerate(beats):
        if re.search(r"[xXzZ]", data):
            raise SimulationError(f"tb_mvau_stream with {params}: beat {index} has unknown bits {data}")
        v, f = divmod(index, nf)
        word = int(data, 16)
        codes[v, f * pe:(f + 1) * pe] = [(word >> (p * o_bits)) & ((1 << o_bits) - 1) for p in range(pe)]
        cycles.append(int(cycle))
    return codes, cycles


def mvau_ii(pe, simd, mw, mh, a_bits):
    """Clocks per input vector of ``mvau_stream`` (its fold count times the activation bits)."""
    return (mh // pe) * (mw // simd) * a_bits


# --------------------------------------------------------------------------- resource fit
FIT_PATH = Path(__file__).resolve().parents[1] / "rtl_fit" / "mvau_fit.json"
FIT_FORMAT = "tvm-qnn-mvau-fit/1"
# the block's logic, term by term (what mvau_stream.v instantiates per PE):
#   pe_simd_wbit  PE x SIMD x W_BITS   AND gates and popcount trees of the weight bit planes
#   pe_acc        PE x ACC_W           accumulator (adder and register)
#   pe_run        PE x ACC_W if A_BITS > 1   the running sum's shift-add and register (at one
#                                      activation bit there is nothing to shift: yosys removes it)
#   pe_thr        PE x T x ACC_W       threshold comparators (T = 2^O_BITS - 1)
#   simd_abit     SIMD x A_BITS        activation bit-plane select
#   intercept                          fold counters, bank flags, stream handshakes
LUT_TERMS = ("pe_simd_wbit", "pe_acc", "pe_run", "pe_thr", "simd_abit", "intercept")
FF_TERMS = ("pe_acc", "pe_run", "pe_obit", "intercept")  # accumulator, running sum, output register, control


def fit_features(pe, simd, w_bits, a_bits, o_bits, fan_in):
    """Feature values of one block (``fan_in`` = MW sets the accumulator width)."""
    width = acc_bits(fan_in, w_bits, a_bits)
    if o_bits > 8:  # a network's last layer emits its accumulators: no threshold stage
        levels, o_bits = 0, width
    else:
        levels = (1 << o_bits) - 1
    return {"pe_simd_wbit": pe * simd * w_bits, "pe_acc": pe * width, "pe_run": pe * width * (a_bits > 1),
            "pe_thr": pe * levels * width,
            "simd_abit": simd * a_bits, "pe_obit": pe * o_bits, "intercept": 1.0}


def _features_of(row, terms):
    p = row["params"]
    f = fit_features(p["PE"], p["SIMD"], p["W_BITS"], p["A_BITS"], p["O_BITS"], p["MW"])
    return [f[t] for t in terms]


def fit_block(rows):
    """Non-negative least squares of relative residuals on the ``fit`` rows (LUTs and FFs);
    returns {"lut": {term: coef}, "ff": {...}, "heldout": [...], "fit_rel_errors": {...}}."""
    from scipy.optimize import nnls

    fit_rows = [r for r in rows if r["role"] == "fit"]
    held = [r for r in rows if r["role"] == "heldout"]
    out = {}
    for key, measured, terms in (("lut", "luts", LUT_TERMS), ("ff", "ffs", FF_TERMS)):
        x = np.asarray([_features_of(r, terms) for r in fit_rows], float)
        y = np.asarray([r[measured] for r in fit_rows], float)
        scale = x.max(axis=0)
        scale[scale == 0] = 1.0
        sol, _ = nnls(x / scale / y[:, None], np.ones_like(y))
        sol = sol / scale
        out[key] = {t: round(float(v), 4) for t, v in zip(terms, sol)}
        out[f"{key}_fit_max_rel_error"] = round(float(np.max(np.abs(x @ sol - y) / y)), 4)
    heldout = []
    for r in held:
        pred = predict_block(out, r["params"]["PE"], r["params"]["SIMD"], r["params"]["W_BITS"],
                             r["params"]["A_BITS"], r["params"]["O_BITS"], r["params"]["MW"])
        heldout.append({"params": r["params"], "measured_luts": r["luts"], "predicted_luts": round(pred["lut"], 1),
                        "lut_rel_error": round(abs(pred["lut"] - r["luts"]) / r["luts"], 4),
                        "measured_ffs": r["ffs"], "predicted_ffs": round(pred["ff"], 1),
                        "ff_rel_error": round(abs(pred["ff"] - r["ffs"]) / r["ffs"], 4)})
    out["heldout"] = heldout
    out["heldout_max_lut_rel_error"] = max((h["lut_rel_error"] for h in heldout), default=None)
    out["heldout_max_ff_rel_error"] = max((h["ff_rel_error"] for h in heldout), default=None)
    return out


def predict_block(fit, pe, simd, w_bits, a_bits, o_bits, fan_in, copies=1):
    """LUT/FF of the block's logic (memories excluded) from a fit; ``copies`` replicates the
    PE array (MMV output pixels in parallel share the control, not the lanes)."""
    f = fit_features(pe, simd, w_bits, a_bits, o_bits, fan_in)
    out = {}
    for key, terms in (("lut", LUT_TERMS), ("ff", FF_TERMS)):
        coef = fit[key]
        out[key] = sum(coef[t] * f[t] * (1 if t == "intercept" else copies) for t in terms)
    return out


_FIT_CACHE = {}


def load_block_fit(path=FIT_PATH):
    """The committed fit (``vta_ext/rtl_fit/mvau_fit.json``) or None when it has not been written."""
    path = Path(path)
    if path not in _FIT_CACHE:
        import json

        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data.get("format") != FIT_FORMAT or "lut" not in data.get("fit", {}):
            raise ShapeError(f"{path}: expected format {FIT_FORMAT!r} with a 'fit' mapping")
        _FIT_CACHE[path] = data
    return _FIT_CACHE[path]

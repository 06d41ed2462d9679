"""Fit of the resource model's coefficients to yosys results, and ``load_coefficients()``.

The model is ``vta_ext/resources.py``'s, term by term, with ``lanes =
batch*block_in*block_out``, ``outputs = batch*block_out``, ``L = 2^w_bits``:

* GEMM unit LUTs and FFs (yosys ``synth_xilinx -flatten -noiopad -nodsp``): the columns are
  ``vta_ext.resources.gemm_terms`` evaluated with one coefficient at 1 (``_unit_feature``), so
  each weight mode is fitted with exactly the terms the model charges it — decode:
  ``lut_per_lane_wbit * lanes * 8 + lut_per_lane_level_decode * lanes * L``; onehot:
  ``lut_per_lane_level_onehot * lanes * L + lut_per_output_level * outputs * L`` (no lanes x
  b_w term: the one-hot lanes compare indices, they multiply nothing) — plus ``per_output *
  outputs + intercept`` shared by both;
* ALU lanes (``synth_xilinx -flatten -noiopad``, DSPs allowed): LUTs, FFs and DSPs per output;
  ``lut_per_alu_lane`` = ALU + LUT-apply LUTs per output + the GEMM's per-output term
  (accumulator adders), which the resource model has no separate term for;
* FFs likewise (the GEMM's running sums are per output, per output x level for onehot);
  ``ff_per_lane_level`` is one field shared by both modes.

The fit is non-negative least squares (``scipy.optimize.nnls``) of relative residuals on the configurations marked
``fit``; the ``heldout`` ones are predicted with ``vta_ext.resources.estimate`` itself (control
terms ``lut_base``/``ff_base`` set to the fitted intercept, since the RTL datapath has no
fetch/DMA) and their relative error is stored. Control, fetch and DMA (``lut_base``,
``ff_base``) and BRAM are not in the RTL and keep ``vta_ext.resources``' defaults.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from tvm_qnn.errors import HwConfigError

FIT_PATH = Path(__file__).resolve().parents[1] / "rtl_fit" / "resources_fit.json"
FORMAT = "tvm-qnn-resources-fit/1"


GEMM_COEFFICIENTS = {  # measured key -> the ResourceCoefficients fields of resources.gemm_terms
    "luts": ("lut_per_lane_wbit", "lut_per_lane_level_decode", "lut_per_lane_level_onehot", "lut_per_output_level"),
    "ffs": ("ff_per_lane_wbit", "ff_per_lane_level", "ff_per_output_level"),
}


def _unit_feature(name, key, mode, lanes, outputs, w_bits):
    """What ``resources.gemm_terms`` charges for coefficient ``name`` = 1 (all others 0): the model's
    own column, so the fit has exactly the terms each weight mode's hardware has, no more."""
    from vta_ext.config import ResourceCoefficients
    from vta_ext.resources import gemm_terms

    unit = ResourceCoefficients(**{f: 0.0 for f in ResourceCoefficients.__dataclass_fields__} | {name: 1.0})
    luts, ffs = gemm_terms(unit, mode, lanes, outputs, w_bits)
    return sum(luts.values()) if key == "luts" else ffs


def _gemm_features(rows, key):
    """Design matrix of GEMM-unit rows (onehot/decode) and the measured ``key`` (luts or ffs)."""
    names = list(GEMM_COEFFICIENTS[key]) + ["output", "intercept"]
    x, y = [], []
    for r in rows:
        p = r["params"]
        lanes, outputs = p["BATCH"] * p["BLOCK_IN"] * p["BLOCK_OUT"], p["BATCH"] * p["BLOCK_OUT"]
        mode = "onehot" if p["WEIGHT_MODE"] == 1 else "decode"
        x.append([_unit_feature(n, key, mode, lanes, outputs, p["W_BITS"]) for n in GEMM_COEFFICIENTS[key]]
                 + [outputs, 1.0])
        y.append(r[key])
    return names, np.asarray(x, float), np.asarray(y, float)


def _r2(y, pred):
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot else 1.0


def fit_coefficients(results):
    """Fit from sweep rows (``SynthResult.as_dict()`` plus ``"role": "fit"|"heldout"``).

    Returns ``(coefficients, details)``: coefficients named as ``ResourceCoefficients`` fields."""
    gemm = [r for r in results if r["top"] == "gemm_unit" and r["flow"] == "xilinx-nodsp"
            and r["params"]["WEIGHT_MODE"] in (1, 2) and r.get("role") == "fit" and r.get("luts") is not None]
    if len(gemm) < 6:
        raise HwConfigError(f"resource fit needs >= 6 onehot/decode GEMM results, got {len(gemm)}")
    details = {}
    coef = {}
    for key in ("luts", "ffs"):
        names, x, y = _gemm_features(gemm, key)
        scale = x.max(axis=0)
        scale[scale == 0] = 1.0
        # relative residuals: the model must hold for small cores too, not only the largest
        solution, _ = nnls(x / scale / y[:, None], np.ones_like(y))
        solution = solution / scale
        details[f"gemm_{key}"] = {"terms": dict(zip(names, solution.round(4).tolist())),
                                  "r2": round(_r2(y, x @ solution), 5), "n": len(y)}
        coef[key] = dict(zip(names, solution))
    per_output = {}
    for top in ("alu_lanes", "lut_apply"):
        rows = [r for r in results if r["top"] == top and r["flow"] == "xilinx" and r.get("luts") is not None]
        if not rows:
            raise HwConfigError(f"resource fit needs a synthesized {top} (flow xilinx)")
        outs = np.asarray([r["params"]["BATCH"] * r["params"]["BLOCK_OUT"] for r in rows], float)
        per_output[top] = {k: float(np.mean([r[k] for r in rows] / outs)) for k in ("luts", "ffs", "dsp")}
    details["per_output"] = per_output
    bitplane = [r for r in results if r["top"] == "gemm_unit" and r["flow"] == "xilinx-nodsp"
                and r["params"]["WEIGHT_MODE"] == 0 and r.get("luts") is not None]
    if bitplane:
        lanes_wbit = np.asarray([r["params"]["BATCH"] * r["params"]["BLOCK_IN"] * r["params"]["BLOCK_OUT"]
                                 * r["params"]["W_BITS"] for r in bitplane], float)
        outs = np.asarray([r["params"]["BATCH"] * r["params"]["BLOCK_OUT"] for r in bitplane], float)
        x = np.stack([lanes_wbit, outs, np.ones_like(outs)], axis=1)
        y = np.asarray([r["luts"] for r in bitplane], float)
        sol, _ = nnls(x, y)
        details["bitplane_luts"] = {"lut_per_lane_wbit": round(float(sol[0]), 4), "per_output": round(float(sol[1]), 4),
                                    "intercept": round(float(sol[2]), 2), "r2": round(_r2(y, x @ sol), 5), "n": len(y)}
    details["onehot_without_lane_wbit"] = _onehot_alternative(results)
    lut, ff = coef["luts"], coef["ffs"]
    alu_luts = per_output["alu_lanes"]["luts"] + per_output["lut_apply"]["luts"]
    coefficients = {name: lut[name] for name in GEMM_COEFFICIENTS["luts"]}
    coefficients.update({name: ff[name] for name in GEMM_COEFFICIENTS["ffs"]})
    coefficients["lut_per_alu_lane"] = alu_luts + lut["output"]
    coefficients["ff_per_alu_lane"] = per_output["alu_lanes"]["ffs"] + per_output["lut_apply"]["ffs"] + ff["output"]
    coefficients["dsp_per_alu_lane"] = per_output["alu_lanes"]["dsp"] + per_output["lut_apply"]["dsp"]
    coefficients = {k: round(float(v), 4) for k, v in coefficients.items()}
    details["datapath_intercept"] = {"luts": round(float(lut["intercept"]), 2), "ffs": round(float(ff["intercept"]), 2)}
    return coefficients, details


def _onehot_alternative(results):
    """One-hot GEMM LUTs as ``a * lanes * L + b * outputs * L`` alone (no lanes x w_bits term):
    what the RTL does (one popcount per lane and level, one accumulator per output and level).
    Fitted on the ``fit`` rows, evaluated on the ``heldout`` rows: the check that the full fit's
    onehot terms (which are exactly these, plus a shared per-output term and intercept) agree."""
    def rows(role):
        return [r for r in results if r["top"] == "gemm_unit" and r["flow"] == "xilinx-nodsp"
                and r["params"]["WEIGHT_MODE"] == 1 and r.get("role") == role and r.get("luts") is not None]

    def features(rs):
        x = [[p["BATCH"] * p["BLOCK_IN"] * p["BLOCK_OUT"] << p["W_BITS"], p["BATCH"] * p["BLOCK_OUT"] << p["W_BITS"]]
             for p in (r["params"] for r in rs)]
        return np.asarray(x, float), np.asarray([r["luts"] for r in rs], float)

    x, y = features(rows("fit"))
    if len(y) < 3:
        return None
    sol, _ = nnls(x / y[:, None], np.ones_like(y))
    xh, yh = features(rows("heldout"))
    errors = (np.abs(xh @ sol - yh) / yh).round(4).tolist() if len(yh) else []
    return {"lut_per_lane_level_onehot": round(float(sol[0]), 4), "lut_per_output_level": round(float(sol[1]), 4),
            "r2": round(_r2(y, x @ sol), 5), "heldout_rel_errors": errors}


def predict_datapath(coefficients, details, params, lut_mode):
    """GEMM + ALU LUTs/FFs of one configuration via ``vta_ext.resources.estimate`` (control = intercept)."""
    from vta_ext.config import HwConfig, ResourceCoefficients
    from vta_ext.resources import estimate

    merged = dict(coefficients, lut_base=details["datapath_intercept"]["luts"],
                  ff_base=details["datapath_intercept"]["ffs"])
    known = {k: v for k, v in merged.items() if k in ResourceCoefficients.__dataclass_fields__}
    cfg = HwConfig(name="rtl-sweep", batch=params["BATCH"], block_in=params["BLOCK_IN"], block_out=params["BLOCK_OUT"],
                   max_a_bits=params["A_BITS"], max_w_bits=params["W_BITS"], lut_entries=max(2, 1 << params["W_BITS"]),
                   lut_mode=lut_mode, inp_buff_bytes=1 << 16, wgt_buff_bytes=1 << 20, acc_buff_bytes=1 << 18,
                   prm_buff_bytes=1 << 18)
    est = estimate(cfg, coefficients=ResourceCoefficients(**known))
    return est.luts, est.ffs


def predict_gemm_luts(coefficients, details, params, lut_mode):
    """GEMM-unit LUTs predicted by ``vta_ext.resources.estimate``: its total minus the ALU lanes'
    synthesized share (the GEMM unit is synthesized without the ALU)."""
    luts, _ = predict_datapath(coefficients, details, params, lut_mode)
    per_output = details["per_output"]
    alu = per_output["alu_lanes"]["luts"] + per_output["lut_apply"]["luts"]
    return luts - alu * params["BATCH"] * params["BLOCK_OUT"]


def heldout_errors(results, coefficients, details):
    """Relative LUT error of every held-out onehot/decode GEMM-unit configuration (never fitted)."""
    rows = []
    for r in results:
        p = r["params"]
        if r.get("role") != "heldout" or r["top"] != "gemm_unit" or p.get("WEIGHT_MODE") not in (1, 2) \
                or r.get("luts") is None:
            continue
        mode = "onehot" if p["WEIGHT_MODE"] == 1 else "decode"
        measured = r["luts"]
        predicted = predict_gemm_luts(coefficients, details, p, mode)
        rows.append({"params": p, "mode": mode, "measured_luts": measured, "predicted_luts": round(predicted, 1),
                     "rel_error": round(abs(predicted - measured) / measured, 4)})
    return rows


def write_fit(coefficients, details, heldout, tool_versions, path=FIT_PATH, extra=None):
    """Write the calibration JSON (``"coefficients"`` is what ``vta_ext/resources.py`` reads)."""
    data = {
        "format": FORMAT,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tools": tool_versions,
        "source": "benchmarks/rtl.py: yosys synth_xilinx -flatten -noiopad (-nodsp for the GEMM unit) of vta_ext/rtl",
        "coefficients": coefficients,
        "not_from_rtl": ["lut_base", "ff_base", "power coefficients"],
        "details": details,
        "heldout": heldout,
        "heldout_max_rel_error": max((h["rel_error"] for h in heldout), default=None),
    }
    if extra:
        data.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def load_coefficients(path=FIT_PATH):
    """The fitted ``ResourceCoefficients`` fields (a dict), or None when no fit has been written."""
    from vta_ext.resources import read_fit_file  # the one reader of the fit file

    data = read_fit_file(path)
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("coefficients"), dict):
        raise HwConfigError(f"{path}: expected format {FORMAT!r} with a 'coefficients' mapping")
    return dict(data["coefficients"])

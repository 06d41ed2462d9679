"""Whole-core fit of the resource model (``vta_ext.resources.estimate``) to synthesized whole cores.

Each row is one whole ``qnn_core`` synthesized by yosys (``benchmarks/fpga_core_fit.py``): its
``hardware`` (the ``vta_ext.fit.HARDWARE_FIELDS``), its ``measured`` ``{lut, ff, bram, dsp}`` and a
``role``, ``"fit"`` or ``"heldout"``. For LUTs, FFs and DSPs the fit is non-negative least
squares of relative residuals over the ``fit`` rows; the design matrix has one column per fitted
``ResourceCoefficients`` field, that column being ``estimate`` itself evaluated with this one
coefficient at 1 and every other at 0. So the fit has exactly the terms the model charges (the
decode GEMM terms, folded arrays building a ``gemm_passes``-th of the lanes, the ALU per physical
lane, the buffer datapath, the DMA assembly, the one-hot accumulators, the control constant) and
nothing the model cannot use. The terms not fitted (the one-hot GEMM terms, which stay the
GEMM-unit fit's, and the structural ones) are an offset at their values (``_base``).
The ``heldout`` rows are then predicted by ``estimate`` with the fitted coefficients; their
relative errors are the model's error on cores it never saw. Block RAM is not fitted: it is the
structural memory map (``vta_ext.resources.memories`` on the part's block shapes), compared with
the measured count.

``fit(rows)`` returns the coefficients, every row's prediction and error, and the maximum held-out
error per resource; ``write`` puts it in ``vta_ext/rtl_fit/core_fit.json``, whose
``"coefficients"`` ``vta_ext.resources`` loads over the GEMM-unit fit.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from tvm_qnn.errors import HwConfigError
from vta_ext.config import HwConfig, ResourceCoefficients

FIT_PATH = Path(__file__).resolve().parents[1] / "rtl_fit" / "core_fit.json"
FORMAT = "tvm-qnn-core-fit/1"
TARGET = 0.10  # the held-out relative error the model must stay within

# resource -> (estimate's attribute, the coefficients fitted for it)
FITTED = {
    "lut": ("luts", ("lut_base", "lut_per_lane_wbit", "lut_per_lane_level_decode", "lut_per_alu_lane",
                     "lut_per_datapath_bit", "lut_per_dma_byte_lane", "lut_per_onehot_acc_bit_level")),
    "ff": ("ffs", ("ff_base", "ff_per_lane_wbit", "ff_per_lane_level", "ff_per_alu_lane", "ff_per_dma_buffer_bit",
                   "ff_per_onehot_acc_bit")),
    "dsp": ("dsps", ("dsp_base", "dsp_per_alu_lane", "dsp_per_lut_apply_lane", "dsp_per_address_width")),
}


def row_config(row):
    """The ``HwConfig`` of a row's hardware (no part: the row is measured, not checked)."""
    hardware = {k: v for k, v in row["hardware"].items() if k != "part"}
    try:
        return HwConfig(name=row.get("name", "core").replace(" ", "_"), **hardware)
    except TypeError as err:
        raise HwConfigError(f"core {row.get('name')!r}: hardware {hardware} is not an HwConfig: {err}") from None


def _unit(name):
    """Every coefficient 0 but ``name``."""
    zero = {f.name: 0.0 for f in dataclasses.fields(ResourceCoefficients)}
    return ResourceCoefficients(**(zero | {name: 1.0}))




def _base():
    """What the whole-core fit starts from: the defaults with the GEMM-unit fit over them. The one-hot
    GEMM terms (per lane and level, per output and level) stay the GEMM unit's: one-hot whole cores
    take half an hour of yosys each, too few to fit them again."""
    from vta_ext.resources import FIT_PATH, coefficients_for

    return coefficients_for(HwConfig(), fit_path=FIT_PATH, core_fit_path=None)[0]


def _fixed():
    """The coefficients no resource fits, at their ``_base`` values (an offset); the fitted ones 0."""
    return ResourceCoefficients(**(dataclasses.asdict(_base()) | {n: 0.0 for _, names in FITTED.values()
                                                                   for n in names}))


def _features(configs, attribute, names):
    """The design matrix (one column per fitted coefficient) and the fixed terms' offset."""
    from vta_ext.resources import estimate

    x = [[getattr(estimate(cfg, coefficients=_unit(n)), attribute) for n in names] for cfg in configs]
    fixed = _fixed()
    offset = [getattr(estimate(cfg, coefficients=fixed), attribute) for cfg in configs]
    return np.asarray(x, float), np.asarray(offset, float)


def _solve(x, y, offset):
    """Non-negative least squares of relative residuals (small cores weigh as much as large ones)."""
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(x / scale / y[:, None], 1.0 - offset / y)
    return solution / scale


def fit(rows):
    """Fit LUT/FF/DSP coefficients on the ``fit`` rows and predict every row (module doc)."""
    from vta_ext.resources import estimate

    fit_rows = [r for r in rows if r.get("role") == "fit" and r.get("measured")]
    if len(fit_rows) < 8:
        raise HwConfigError(f"the whole-core fit needs >= 8 measured 'fit' cores, got {len(fit_rows)}")
    configs = {id(r): row_config(r) for r in rows}
    coefficients, quality = {}, {}
    for resource, (attribute, names) in FITTED.items():
        x, offset = _features([configs[id(r)] for r in fit_rows], attribute, names)
        y = np.asarray([r["measured"][resource] for r in fit_rows], float)
        used = x.any(axis=0)
        solution = np.zeros(len(names))
        solution[used] = _solve(x[:, used], y, offset) if (y > 0).all() else 0.0
        coefficients.update(zip(names, solution.round(4).tolist()))
        pred = x @ solution + offset
        quality[resource] = {"n": len(y), "max_rel_error_fit": round(float(np.max(np.abs(pred - y) / y)), 4)}
    fitted = ResourceCoefficients(**(dataclasses.asdict(_base()) | coefficients))
    table = []
    for r in rows:
        if not r.get("measured"):
            continue
        e = estimate(configs[id(r)], coefficients=fitted)  # its block RAM: Xilinx blocks, as the rows'
        predicted = {"lut": e.luts, "ff": e.ffs, "dsp": e.dsps, "bram": e.bram36}
        errors = {k: round(abs(predicted[k] - r["measured"][k]) / r["measured"][k], 4) if r["measured"][k] else None
                  for k in predicted}
        table.append({"name": r["name"], "role": r["role"], "measured": r["measured"],
                      "predicted": {k: round(v) for k, v in predicted.items()}, "rel_error": errors})
    heldout = [t for t in table if t["role"] == "heldout"]
    worst = {k: max((t["rel_error"][k] for t in heldout if t["rel_error"][k] is not None), default=None)
             for k in ("lut", "ff", "dsp", "bram")}
    return {"coefficients": coefficients, "quality": quality, "rows": table, "heldout_max_rel_error": worst,
            "target": TARGET}


def summary(result):
    """Text table: every core's measured / predicted LUT, FF, DSP, BRAM and the held-out maxima."""
    lines = [f"{'core':<24} {'role':<8} " + " ".join(f"{r:>18}" for r in ("lut", "ff", "dsp", "bram"))]
    for t in result["rows"]:
        cells = []
        for k in ("lut", "ff", "dsp", "bram"):
            err = t["rel_error"][k]
            cells.append(f"{t['measured'][k]:>7}/{t['predicted'][k]:<7}{'' if err is None else f'{err:5.1%}':>4}")
        lines.append(f"{t['name'][:24]:<24} {t['role']:<8} " + " ".join(f"{c:>18}" for c in cells))
    lines.append("held-out max relative error: " + ", ".join(
        f"{k} {v:.1%}" for k, v in result["heldout_max_rel_error"].items() if v is not None))
    return "\n".join(lines)


def write(result, tools, path=FIT_PATH):
    """Write the fit (``"coefficients"`` is what ``vta_ext.resources`` loads)."""
    data = {"format": FORMAT, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tools": tools, "source": "benchmarks/fpga_core_fit.py: whole qnn_core, yosys synth_xilinx -flatten",
            **result}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def committed(path=FIT_PATH):
    """One line on the committed whole-core fit: its cores and the held-out maxima against ``TARGET``."""
    path = Path(path)
    if not path.is_file():
        raise HwConfigError(f"no whole-core fit at {path}: run python benchmarks/fpga_core_fit.py")
    data = json.loads(path.read_text())
    heldout = sum(1 for t in data["rows"] if t["role"] == "heldout")
    worst = ", ".join(f"{k.upper()} {v:.1%}" for k, v in data["heldout_max_rel_error"].items() if v is not None)
    return (f"{len(data['rows'])} synthesized whole cores, {heldout} held out: held-out max error {worst} "
            f"(target <= {data['target']:.0%})")

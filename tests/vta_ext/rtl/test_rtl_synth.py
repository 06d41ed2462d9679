"""yosys synthesis of the generated RTL: bounded runs, errors with the tool's last lines, calibration."""

import json

import pytest

from vta_ext.config import ResourceCoefficients
from vta_ext.rtl import resource_fit as calibration
from vta_ext.rtl.synth import SynthesisError, SynthesisLimitError, synthesize, yosys_script

pytestmark = pytest.mark.rtl

SMALL = dict(BATCH=1, BLOCK_IN=8, BLOCK_OUT=8, A_BITS=4, W_BITS=2, WEIGHT_MODE=0)


def test_small_gemm_unit_on_ice40():
    result = synthesize("gemm_unit", SMALL, "ice40", timeout_s=300)
    # 64 lanes x 2 weight bits of AND + popcount plus 8 accumulators: hundreds of LUT4s, and
    # the running sums are registers
    assert 200 < result.luts < 5000 and result.ffs > 0 and result.dsp == 0 and result.bram == 0


def test_synthesis_failure_shows_the_tool_lines_and_the_config():
    with pytest.raises(SynthesisError) as err:
        synthesize("gemm_unit", dict(SMALL, NOT_A_PARAM=3), "ice40", timeout_s=300)
    message = str(err.value)
    assert "NOT_A_PARAM" in message and "ERROR" in message and "'BLOCK_IN': 8" in message


def test_synthesis_time_limit():
    with pytest.raises(SynthesisLimitError, match="exceeded 0 s"):
        synthesize("gemm_unit", SMALL, "ice40", timeout_s=0.2)


def test_unknown_top_and_flow():
    with pytest.raises(SynthesisError, match="known"):
        yosys_script("vta_core", {}, "ice40")
    with pytest.raises(SynthesisError, match="xilinx-nodsp"):
        yosys_script("gemm_unit", {}, "vivado")


def test_committed_fit_is_what_the_resource_model_reads():
    coefficients = calibration.load_coefficients()
    assert coefficients, "vta_ext/rtl_fit/resources_fit.json is missing: run benchmarks/rtl.py"
    known = set(ResourceCoefficients.__dataclass_fields__)
    assert set(coefficients) <= known
    ResourceCoefficients(**coefficients)  # valid values
    data = json.loads(calibration.FIT_PATH.read_text())
    assert data["date"] and data["tools"]["yosys"].startswith("Yosys")
    from vta_ext import resources

    assert resources.load_fit() == coefficients


@pytest.mark.slow
def test_heldout_configurations_within_ten_percent():
    """Re-synthesize the held-out configurations and predict them with the committed fit."""
    data = json.loads(calibration.FIT_PATH.read_text())
    coefficients, details = data["coefficients"], data["details"]
    assert data["heldout"], "the fit has no held-out configurations"
    for row in data["heldout"]:
        p = row["params"]
        measured = synthesize("gemm_unit", p, "xilinx-nodsp", timeout_s=600, mem_mb=4096).luts
        predicted = calibration.predict_gemm_luts(coefficients, details, p, row["mode"])
        assert abs(predicted - measured) / measured <= 0.10, (p, measured, predicted)


def test_ice40_logic_cells_count_lone_flip_flops(tmp_path):
    """The iCE40 fit figure: nextpnr packs the GEMM unit into at least as many cells as it has LUT4s or
    flip-flops and at most one per LUT4, flip-flop and carry; a non-iCE40 part is refused by name."""
    from tvm_qnn.errors import HwConfigError
    from vta_ext.rtl.bitstream import ice40_logic_cells

    netlist = tmp_path / "gemm.json"
    result = synthesize("gemm_unit", SMALL, "ice40", timeout_s=300, json_out=str(netlist))
    cells = ice40_logic_cells(netlist, "ice40hx8k")
    assert max(result.luts, result.ffs) <= cells <= result.luts + result.ffs + result.carry
    with pytest.raises(HwConfigError, match="xc7z020"):
        ice40_logic_cells(netlist, "xc7z020")

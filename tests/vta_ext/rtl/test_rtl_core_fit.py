"""Whole-core resource fit (vta_ext.rtl.core_fit) and the synthesis flow a core gets (core_synth.flow_of)."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from tvm_qnn.errors import HwConfigError
from vta_ext import resources
from vta_ext.config import HwConfig, ResourceCoefficients
from vta_ext.fit import MEASURED_PATH, hardware_key
from vta_ext.parts import get_part, memory_blocks
from vta_ext.rtl import core_fit
from vta_ext.rtl.core_synth import flow_of, synthesize_core
from vta_ext.rtl.synth import SynthesisLimitError, yosys_script

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))

import fpga_core_fit  # noqa: E402

# the one-hot GEMM terms are not refitted (core_fit._base: the GEMM-unit fit's); every other term is
KNOWN = dataclasses.replace(core_fit._base(), lut_base=3000, lut_per_lane_wbit=6.0, lut_per_lane_level_decode=2.5,
                            lut_per_alu_lane=1300.0, lut_per_datapath_bit=2.0, lut_per_dma_byte_lane=1.5,
                            lut_per_onehot_acc_bit_level=0.3, ff_base=900, ff_per_lane_wbit=0.1,
                            ff_per_lane_level=0.03, ff_per_alu_lane=40.0, ff_per_dma_buffer_bit=1.2,
                            ff_per_onehot_acc_bit=1.1, dsp_per_alu_lane=8.0, dsp_per_lut_apply_lane=2.0,
                            dsp_per_address_width=3.0, dsp_base=10.0)


def _rows(coefficients):
    """The benchmark's cores, 'measured' by the model itself with ``coefficients``."""
    rows = []
    for name, *fields, role in fpga_core_fit.CORES:
        cfg = fpga_core_fit.core_config(name, *fields)
        e = resources.estimate(cfg, coefficients=coefficients)
        rows.append({"name": name, "role": role, "hardware": hardware_key(cfg),
                     "measured": {"lut": round(e.luts), "ff": round(e.ffs), "dsp": round(e.dsps), "bram": e.bram36}})
    return rows


def test_fit_recovers_the_coefficients_it_was_made_with():
    result = core_fit.fit(_rows(KNOWN))
    for name, value in result["coefficients"].items():
        assert value == pytest.approx(getattr(KNOWN, name), rel=0.02, abs=0.02), name
    assert result["heldout_max_rel_error"]["lut"] < 0.005 and result["heldout_max_rel_error"]["ff"] < 0.005
    assert {t["name"] for t in result["rows"] if t["role"] == "heldout"} == {
        c[0] for c in fpga_core_fit.CORES if c[-1] == "heldout"}
    assert "held-out max relative error: lut" in core_fit.summary(result)


def test_fit_reports_a_term_the_model_lacks_as_heldout_error():
    rows = _rows(KNOWN)
    for row in rows:  # hardware the model has no term for: 4,000 LUTs per 8-bit-activation core
        if row["hardware"]["max_a_bits"] == 8:
            row["measured"]["lut"] += 4000
    assert core_fit.fit(rows)["heldout_max_rel_error"]["lut"] > 0.05


def test_fit_needs_enough_cores():
    rows = [r for r in _rows(KNOWN) if r["role"] == "fit"][:5]
    with pytest.raises(HwConfigError, match=">= 8 measured 'fit' cores, got 5"):
        core_fit.fit(rows)


def test_committed_core_fit_is_loaded_and_holds_on_heldout_cores():
    data = json.loads(core_fit.FIT_PATH.read_text())
    assert data["format"] == core_fit.FORMAT and data["tools"]["yosys"].startswith("Yosys")
    heldout = [t for t in data["rows"] if t["role"] == "heldout"]
    assert len(heldout) >= 5
    for resource in ("lut", "ff", "dsp", "bram"):
        assert data["heldout_max_rel_error"][resource] <= core_fit.TARGET, (resource, data["heldout_max_rel_error"])
    assert resources.load_fit(resources.CORE_FIT_PATH) == data["coefficients"]
    coefficients, source = resources.coefficients_for(HwConfig())
    assert str(resources.CORE_FIT_PATH) in source and coefficients.lut_base == data["coefficients"]["lut_base"]


def test_memory_blocks_take_the_fewest_blocks_of_the_family():
    assert memory_blocks(72, 512, "xilinx") == 1.0          # one RAMB36, 72 bits wide
    assert memory_blocks(36, 512, "xilinx") == 0.5          # one RAMB18
    assert memory_blocks(256, 1024, "xilinx") == 7.5        # 15 RAMB18 of 18 x 1024
    assert memory_blocks(832, 39, "xilinx") == 0.0          # 64 deep or less: distributed RAM
    assert memory_blocks(832, 39, "xilinx", block_only=True) == 12.0  # 12 x 72 bits
    assert memory_blocks(16, 64, "ice40") == 1.0            # iCE40 has no distributed RAM
    assert memory_blocks(32, 512, "ice40") == 4.0           # 512 x 8 EBRs side by side
    with pytest.raises(HwConfigError, match="family='gowin'"):
        memory_blocks(8, 512, "gowin")


@pytest.mark.parametrize("name", ["pynq_z1", "ice40_hx8k"])
def test_block_ram_model_equals_the_synthesized_presets(name):
    """The structural memory map against yosys' block RAM count of the whole preset core
    (vta_ext/rtl_fit/whole_core.json, written by benchmarks/fpga_build.py)."""
    entry = json.loads(MEASURED_PATH.read_text())["cores"][name]
    cfg = HwConfig.preset(name)
    assert resources.block_rams(cfg, get_part(cfg.part).family) == entry["measured"]["bram"]


def test_dsp_terms_count_the_multipliers_the_rtl_builds():
    unit = {f.name: 0.0 for f in dataclasses.fields(ResourceCoefficients)}
    ones = ResourceCoefficients(**unit | {"dsp_per_alu_lane": 1, "dsp_per_lut_apply_lane": 1,
                                          "dsp_per_address_width": 1, "dsp_base": 1})
    pynq = HwConfig.preset("pynq_z1").replace(part=None)  # decode, 4 ALU lanes of 8 outputs: serial LUT apply
    assert resources.dsp_terms(pynq, ones) == {"alu": 4, "lut apply": 0, "dma offsets": 8, "dma lengths": 1}
    vector = pynq.replace(alu_lanes=None, max_a_bits=4, max_w_bits=2)  # one lane per output; widths 3 (twice)
    assert resources.dsp_terms(vector, ones) == {"alu": 8, "lut apply": 8, "dma offsets": 2, "dma lengths": 1}


def test_core_fit_is_layered_over_the_gemm_fit(tmp_path):
    gemm, core = tmp_path / "gemm.json", tmp_path / "core.json"
    gemm.write_text(json.dumps({"coefficients": {"lut_per_lane_wbit": 7.5, "lut_base": 1.0}}))
    core.write_text(json.dumps({"coefficients": {"lut_base": 2.0}}))
    coefficients, source = resources.coefficients_for(HwConfig(), gemm, core)
    assert (coefficients.lut_per_lane_wbit, coefficients.lut_base) == (7.5, 2.0)
    assert source.index(str(gemm)) < source.index(str(core))


def test_datapath_term_counts_the_words_the_core_moves():
    cfg = HwConfig.preset("pynq_z1").replace(part=None)
    unit = ResourceCoefficients(**{f.name: 0.0 for f in dataclasses.fields(ResourceCoefficients)}
                                | {"lut_per_datapath_bit": 1.0})
    bits = 8 * (cfg.inp_vector_bytes(8) + cfg.wgt_block_bytes(4) + cfg.acc_vector_bytes + cfg.prm_entry_bytes)
    assert resources.estimate(cfg, coefficients=unit).breakdown["buffer datapath"] == bits


def test_flow_follows_the_per_lane_decode_a_run_can_map():
    assert flow_of(get_part("xc7z020"), HwConfig.preset("pynq_z1")) == "xilinx"
    assert flow_of(get_part("ice40hx8k"), HwConfig.preset("ice40_hx8k")) == "ice40"
    big = HwConfig(batch=1, block_in=32, block_out=32, max_a_bits=8, max_w_bits=8, lut_entries=256, lut_mode="decode",
                   dma_bytes_per_cycle=4)  # 8,480-byte parameter rows x 4-byte beats
    assert flow_of(get_part("xcvu9p"), big) == "xilinx-columns"  # 32 lanes x 256 levels per column
    with pytest.raises(SynthesisLimitError, match="one-hot lanes are not split"):
        flow_of(get_part("xcvu9p"), big.replace(lut_mode="onehot"))
    with pytest.raises(SynthesisLimitError, match=r"in one GEMM column \(16,384\)"):
        flow_of(get_part("xcvu9p"), big.replace(block_in=64, inp_buff_bytes=1 << 20))
    folded = big.replace(gemm_out_lanes=1)  # 32 built lanes x 256 levels: one flat run
    assert flow_of(get_part("xcvu9p"), folded) == "xilinx"
    with pytest.raises(SynthesisLimitError, match=r"8,480-byte elements from 64-byte beats \(542,720 byte lanes"):
        flow_of(get_part("xcvu9p"), big.replace(dma_bytes_per_cycle=64))  # the ultrascale_plus preset's DMA
    # parameter rows assembled beat by beat: the compute engine's shifter takes accumulator vectors only
    assert flow_of(get_part("xcvu9p"), big.replace(dma_bytes_per_cycle=64, prm_row_beats=True)) == "xilinx-columns"
    script = yosys_script("qnn_core", {}, "xilinx-columns")
    assert "setattr -mod -set keep_hierarchy 1 *gemm_decode_column" in script and "\nflatten" in script


@pytest.mark.slow
def test_column_flow_counts_what_the_flat_flow_counts():
    """One GEMM column per module, then flattened: an upper bound of the flat run on a decode core, by
    at most 6 % of its LUTs (nothing is shared across columns; measured +5.1 %) and 3 % of its FFs."""
    name, *fields, _ = fpga_core_fit.CORES[0]
    cfg = fpga_core_fit.core_config(name, *fields)
    _, flat = synthesize_core(cfg, part="xc7z020", timeout_s=1800, mem_mb=8192)
    _, columns = synthesize_core(cfg, part="xc7z020", timeout_s=1800, mem_mb=8192, max_lane_levels=32)
    assert flat["lut"] <= columns["lut"] <= 1.06 * flat["lut"], (flat, columns)
    assert abs(columns["ff"] - flat["ff"]) <= 0.03 * flat["ff"], (flat, columns)
    assert (columns["bram"], columns["dsp"]) == (flat["bram"], flat["dsp"])

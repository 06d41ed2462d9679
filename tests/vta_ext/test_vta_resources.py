"""Resource model: terms grow as the hardware does; fitted coefficients are loaded when present."""

import json

import pytest

from tvm_qnn.errors import HwConfigError
from vta_ext.config import HwConfig
from vta_ext.resources import PUBLISHED, coefficients_for, comparison_table, estimate, load_fit


def test_terms_follow_lanes_and_bits():
    cfg = HwConfig.preset("pynq_z1").replace(part=None)  # the model's terms, not the fit check
    c = cfg.resources
    base = estimate(cfg, w_bits=2, coefficients=c)  # explicit coefficients: independent of any fit file
    # per-lane decode: lanes x 2^b_w; going from 2 to 4 weight bits adds exactly 12 levels per lane
    assert estimate(cfg, w_bits=4, coefficients=c).luts - base.luts == pytest.approx(c.lut_per_lane_level_decode * cfg.lanes * 12)
    # decode multiplies the decoded int8 level: its datapath is lanes x 8, whatever b_w
    assert base.breakdown["bit-serial datapath"] == c.lut_per_lane_wbit * cfg.lanes * 8
    onehot = cfg.replace(lut_mode="onehot")
    onehot_terms = [estimate(onehot, w_bits=b, coefficients=c).breakdown for b in (1, 2, 4)]
    assert all("bit-serial datapath" not in t and "per-lane LUT decode" not in t for t in onehot_terms)  # no multiply
    outputs = cfg.batch * cfg.block_out
    assert [t["one-hot level adders"] for t in onehot_terms] == [c.lut_per_lane_level_onehot * cfg.lanes * (1 << b)
                                                                 for b in (1, 2, 4)]  # lanes x 2^b_w
    assert [t["level-sum accumulators"] for t in onehot_terms] == [c.lut_per_output_level * outputs * (1 << b)
                                                                   for b in (1, 2, 4)]  # outputs x 2^b_w
    wide = cfg.replace(block_in=2 * cfg.block_in, block_out=2 * cfg.block_out, inp_buff_bytes=4 * cfg.inp_buff_bytes)  # 4x lanes
    assert estimate(wide, w_bits=2, coefficients=c).breakdown["per-lane LUT decode"] == pytest.approx(
        4 * base.breakdown["per-lane LUT decode"])
    assert estimate(cfg, a_bits=1, coefficients=c).luts == estimate(cfg, a_bits=8, coefficients=c).luts  # b_a costs cycles, not area
    assert base.bram36 >= (cfg.wgt_buff_bytes * 8) // (36 * 1024)
    assert base.power_w > c.static_power_w


def test_unknown_weight_mode_names_the_known_ones():
    from vta_ext.resources import gemm_terms

    with pytest.raises(HwConfigError, match="lut_mode='bitplanes'.*decode.*onehot"):
        gemm_terms(HwConfig().resources, "bitplanes", 64, 8, 2)


def test_fitted_coefficients_override_defaults(tmp_path):
    cfg = HwConfig.preset("pynq_z1")
    assert load_fit(tmp_path / "none.json") is None
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"date": "2026-11-26", "tools": {"yosys": "0.x"},
                               "coefficients": {"lut_per_lane_wbit": 7.5, "unknown_term": 1}}))
    coefficients, source = coefficients_for(cfg, fit, tmp_path / "no_core_fit.json")
    assert coefficients.lut_per_lane_wbit == 7.5 and str(fit) in source
    assert coefficients.lut_base == cfg.resources.lut_base
    fit.write_text("{broken")
    with pytest.raises(HwConfigError, match="not valid JSON"):
        load_fit(fit)


def test_comparison_table_lists_published_figures():
    rows = [(f"published: {k}", v) for k, v in PUBLISHED.items()]
    rows.append(("ours", estimate(HwConfig.preset("ultrascale_plus"), w_bits=4).as_dict()))
    text = comparison_table(rows)
    assert "596,081" in text and "1,175,373" in text and "343,295" in text and "16.10" in text


def test_the_former_ice40_core_is_refused_by_the_model():
    """The 1x8x8 a4/w2 core the first ice40_hx8k preset described needs 8 requant multipliers
    (DSP on Xilinx; the HX8K has none) and more LUTs than its 7,680 logic cells: refused. The preset
    of that name now is the measured lane-serial 1x8x4 a2/w2 core."""
    small = dict(batch=1, block_in=8, block_out=8, max_a_bits=4, max_w_bits=2, lut_entries=4, lut_mode="decode",
                 inp_buff_bytes=2048, wgt_buff_bytes=4096, acc_buff_bytes=4096, uop_buff_bytes=2048,
                 prm_buff_bytes=1024, dma_bytes_per_cycle=4, clock_mhz=50.0)
    with pytest.raises(HwConfigError, match=r"part ice40hx8k: LUT [\d,]+ needed > 7,680 available"):
        HwConfig(name="ice40_hx8k", part="ice40hx8k", **small)
    preset = HwConfig.preset("ice40_hx8k")
    assert (preset.block_out, preset.max_a_bits, preset.lane_serial) == (4, 2, True)
    HwConfig(name="small", **small)  # the same core with no part is not checked


def test_small_core_runs_a_layer_bit_exact():
    import numpy as np

    from tvm_qnn import reference
    from tvm_qnn.layer import QnnLayer
    from vta_ext.compiler import compile_layer
    from vta_ext.sim.functional import run_program

    cfg = HwConfig(name="small", block_in=8, block_out=8, max_a_bits=4, max_w_bits=2, lut_entries=4,
                   lut_mode="decode", inp_buff_bytes=2048, wgt_buff_bytes=4096, acc_buff_bytes=4096,
                   uop_buff_bytes=2048, prm_buff_bytes=1024, dma_bytes_per_cycle=4)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 4, (24, 20, 3, 3)).astype(np.uint8)  # 3 output and input blocks: tiled
    lut = rng.normal(size=(24, 4)).astype(np.float32)
    layer = QnnLayer("L", "conv2d", idx, lut, rng.normal(size=24).astype(np.float32), 2, "kquantile", 4, 1.5,
                     (1, 20, 10, 10), out_min=0.0, stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1))
    codes = rng.integers(0, 16, layer.input_shape).astype(np.uint8)
    program = compile_layer(layer, cfg)
    p = program.params
    want = reference.qconv2d_int_acc(codes, idx, p["lut_int"], p["bias_int"], (1, 1), (1, 1, 1, 1), 1, (1, 1))
    np.testing.assert_array_equal(run_program(program, codes), want)

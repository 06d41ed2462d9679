"""Co-simulation: compiled layers through the RTL (iverilog) and vta_ext.sim, bit-exact, cycles compared."""

import numpy as np
import pytest

from tvm_qnn import reference
from tvm_qnn.layer import QnnLayer
from vta_ext.compiler import compile_layer
from vta_ext.config import HwConfig
from vta_ext.rtl import cosim
from vta_ext.rtl.cosim import CosimMismatch, cosim_program, rtl_cycles_expected, with_rtl_pipeline
from vta_ext.sim import timing

pytestmark = pytest.mark.rtl


def _config(lut_mode, max_w_bits=8):
    return HwConfig(name=f"tiny-{lut_mode}", batch=1, block_in=8, block_out=8, max_a_bits=8, max_w_bits=max_w_bits,
                    lut_entries=256, lut_mode=lut_mode, inp_buff_bytes=2048, wgt_buff_bytes=4096,
                    acc_buff_bytes=16384, uop_buff_bytes=2048, prm_buff_bytes=4 * 8 * (256 + 9))


def _layer(w_bits, a_bits, seed=1, in_ch=10, out_ch=12, hw=6):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(out_ch, in_ch, 3, 3)).astype(np.float32)
    idx, lut = reference.kquantile_lut(w, w_bits)
    layer = QnnLayer(name="conv", kind="conv2d", weight_idx=idx, lut=lut, bias=rng.normal(size=out_ch).astype(np.float32),
                     w_bits=w_bits, w_scheme="kquantile", a_bits=a_bits, a_clamp=2.0, input_shape=(1, in_ch, hw, hw),
                     padding=(1, 1, 1, 1), out_min=0.0)
    codes = rng.integers(0, 1 << a_bits, layer.input_shape).astype(np.uint8)
    return layer, codes


@pytest.mark.parametrize("lut_mode, w_bits, a_bits", [("decode", 2, 3), ("onehot", 2, 3)])
def test_small_layer_raw_accumulators(lut_mode, w_bits, a_bits):
    """A whole conv layer: RTL outputs equal the simulator's and the integer reference's."""
    layer, codes = _layer(w_bits, a_bits)
    cfg = with_rtl_pipeline(_config(lut_mode))
    program = compile_layer(layer, cfg)
    report, sim_out, rtl_out = cosim_program(program, codes)
    report.check()
    assert report.outputs_equal and report.n_compute_insns > 0 and report.acc_entries_checked > 0
    p = program.params
    expected = reference.qconv2d_int_acc(codes, layer.weight_idx, p["lut_int"], p["bias_int"], padding=layer.padding)
    np.testing.assert_array_equal(rtl_out, expected)
    # the RTL's cycles are its documented formula, and with the RTL's per-instruction overhead the
    # timing model agrees instruction by instruction
    compute = [i for i in program.insns if type(i).__name__ in ("GemmInsn", "AluInsn")]
    assert report.rtl_cycles == [rtl_cycles_expected(i) for i in compute]
    assert report.rtl_cycles == [timing.insn_cycles(cfg, i) for i in compute]


def test_small_layer_requantized_to_next_codes():
    """The integer-only epilogue (LUT apply, bias, REQUANT, clamp) on the RTL ALU."""
    layer, codes = _layer(w_bits=3, a_bits=2, seed=3)
    program = compile_layer(layer, with_rtl_pipeline(_config("onehot")), out_act=(3, 1.5))
    report, sim_out, rtl_out = cosim_program(program, codes)
    report.check()
    p = program.params
    acc = reference.qconv2d_int_acc(codes, layer.weight_idx, p["lut_int"], p["bias_int"], padding=layer.padding)
    expected = np.clip(reference.requantize(acc, p["multiplier"], p["shift"], 3), p["lo"], p["hi"])
    np.testing.assert_array_equal(rtl_out, expected)


def test_zero_points_need_no_rtl_change():
    """A padded conv with input zero point z and next-layer zero point z_next: host padding with code
    z, the bias row carrying -z sum lut_int and the ADD immediate run on the unchanged RTL, bit-exact."""
    layer, _ = _layer(w_bits=2, a_bits=3, seed=4)
    layer = QnnLayer(**{**{f: getattr(layer, f) for f in QnnLayer.__dataclass_fields__}, "a_zero_point": 5})
    codes = np.random.default_rng(4).integers(0, 8, layer.input_shape).astype(np.uint8)
    program = compile_layer(layer, with_rtl_pipeline(_config("decode")), out_act=(4, 1.5, 9))
    report, sim_out, rtl_out = cosim_program(program, codes)
    report.check()
    p = program.params
    expected = reference.qconv2d_int(codes, layer.weight_idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"],
                                     4, padding=layer.padding, zero_point=5, out_zero_point=9, lower=p["lo"])
    np.testing.assert_array_equal(rtl_out, expected)
    assert p["lo"] == 9  # the ReLU bound is the code of 0


def test_cycles_against_the_preset_overheads_within_ten_percent():
    """With the preset's 4-cycle pipeline overhead the model stays within 10% of the RTL on a layer."""
    layer, codes = _layer(w_bits=2, a_bits=4, seed=5)
    program = compile_layer(layer, _config("decode"))
    report, _, _ = cosim_program(program, codes)
    assert not report.mismatches
    assert abs(report.cycle_ratio - 1) <= 0.10, report.cycle_ratio


def test_mismatch_names_the_first_differing_element(monkeypatch):
    """A simulator that is off by one in one accumulator element is caught, with coordinates."""
    layer, codes = _layer(w_bits=2, a_bits=2, seed=2)
    program = compile_layer(layer, with_rtl_pipeline(_config("decode")))
    real_run = cosim.functional.run_stream
    state_seen = {}

    def perturbed(cfg, insns, dram, state=None):
        result = real_run(cfg, insns, dram, state)
        if type(insns[0]).__name__ == "GemmInsn" and not insns[0].reset and "done" not in state_seen:
            state_seen["done"] = True
            result.acc[0, 0, 5] += 1
        return result

    monkeypatch.setattr(cosim.functional, "run_stream", perturbed)
    report, _, _ = cosim_program(program, codes)
    with pytest.raises(CosimMismatch, match=r"accumulator entry 0 \(batch 0, out 5\): RTL -?\d+ vs sim -?\d+"):
        report.check()
    assert any("output element (0, 5, 0, 0)" in m for m in report.mismatches)


@pytest.mark.slow
@pytest.mark.parametrize("bits", range(1, 9))
def test_layers_bits_1_to_8(bits):
    for lut_mode in ("decode", "onehot"):
        w_bits = bits if lut_mode == "decode" else min(bits, 5)  # onehot at 2^8 levels is minutes in iverilog
        layer, codes = _layer(w_bits=w_bits, a_bits=bits, seed=bits, in_ch=9, out_ch=9, hw=4)
        program = compile_layer(layer, with_rtl_pipeline(_config(lut_mode)))
        report, _, rtl_out = cosim_program(program, codes)
        report.check()
        p = program.params
        expected = reference.qconv2d_int_acc(codes, layer.weight_idx, p["lut_int"], p["bias_int"], padding=layer.padding)
        np.testing.assert_array_equal(rtl_out, expected)

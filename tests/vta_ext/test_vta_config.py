"""HwConfig: presets, JSON round trip, derived sizes, and each bad field named in the error."""

import json

import pytest

from tvm_qnn.errors import HwConfigError, QnnError
from vta_ext.config import HwConfig


@pytest.mark.parametrize("name", ["pynq_z1", "ultrascale_plus", "ice40_hx8k"])
def test_presets_load_and_round_trip(name, tmp_path):
    cfg = HwConfig.preset(name)
    assert HwConfig.from_json(cfg.to_json()) == cfg
    path = tmp_path / "c.json"
    cfg.to_json(path)
    assert HwConfig.from_json(path) == cfg


def test_pynq_preset_is_the_measured_core_that_fits_its_part():
    """VTA's default core (1x16x16 int8) does not fit a Zynq-7020 with per-lane LUT decode; the whole
    core synthesized at 1x32x8 w4 needed 90,588 LUT and 180 BRAM36 (DMA reassembly over its 200-byte
    parameter rows): the preset is 2x8x4 at a8/w4 (100-byte parameter rows; 8 output elements so
    every output width 1..8 packs whole bytes) with 4 ALU lanes and 64/128 KB accumulator/weight buffers."""
    cfg = HwConfig.preset("pynq_z1")
    assert (cfg.batch, cfg.block_in, cfg.block_out, cfg.clock_mhz, cfg.part) == (2, 8, 4, 100.0, "xc7z020")
    assert cfg.lanes == 64 and cfg.max_w_bits == 4 and cfg.max_a_bits == 8 and cfg.alu_passes == 2
    # packing: an 8-bit input vector is 16 bytes, a 1-bit one 2 bytes -> 8x the depth
    assert cfg.inp_vector_bytes(8) == 16 and cfg.inp_depth(1) == 8 * cfg.inp_depth(8)
    assert cfg.acc_depth == cfg.acc_buff_bytes // (8 * 4)
    assert cfg.peak_gops(8) == pytest.approx(2 * 64 * 100e6 / 8 / 1e9)
    for out_bits in range(1, 9):
        cfg.check_layer_bits("conv", 8, 4, out_bits)
    assert HwConfig.preset("ultrascale_plus").lanes >= 4 * cfg.lanes


@pytest.mark.parametrize("field,value", [
    ("batch", 0), ("block_in", 12), ("block_out", 1024), ("max_a_bits", 9), ("max_w_bits", 0),
    ("lut_entries", 3), ("lut_mode", "magic"), ("inp_buff_bytes", 8), ("dma_bytes_per_cycle", 3),
    ("clock_mhz", -5), ("clock_mhz", float("nan")), ("block_in", True), ("name", ""),
    ("alu_lanes", 3), ("alu_lanes", 32), ("alu_lanes", 0), ("alu_mul_cycles", 3), ("alu_mul_cycles", 64),
    ("alu_mul_cycles", 0), ("gemm_out_lanes", 3), ("gemm_out_lanes", 32), ("gemm_out_lanes", 0),
    ("prm_row_beats", "yes"), ("prm_row_beats", 1),
])
def test_bad_field_is_named(field, value):
    with pytest.raises(HwConfigError, match=field):
        HwConfig(**{field: value})


def test_inconsistent_fields():
    with pytest.raises(HwConfigError, match="lut_entries"):
        HwConfig(max_w_bits=8, lut_entries=16)
    with pytest.raises(HwConfigError, match="batch\\*block_in"):
        HwConfig(batch=1, block_in=4, block_out=4, lut_entries=256)
    with pytest.raises(HwConfigError, match="gemm_out_lanes=2 < block_out=16 .*lut_mode='onehot'"):
        HwConfig(gemm_out_lanes=2, lut_mode="onehot")
    with pytest.raises(HwConfigError, match="gemm_out_lanes=2 < block_out=16 .*batch=2"):
        HwConfig(gemm_out_lanes=2, lut_mode="decode", batch=2)
    with pytest.raises(HwConfigError, match="prm_row_beats=true needs dma_bytes_per_cycle > 1"):
        HwConfig(prm_row_beats=True, dma_bytes_per_cycle=1)
    with pytest.raises(HwConfigError, match="resources.lut_base"):
        HwConfig.from_dict({"resources": {"lut_base": -1}})


def test_bad_json_and_unknown_fields(tmp_path):
    with pytest.raises(HwConfigError, match="unknown field"):
        HwConfig.from_dict({"blocks": 3})
    with pytest.raises(HwConfigError, match="not valid JSON"):
        HwConfig.from_json("{not json")
    with pytest.raises(HwConfigError, match="does not exist"):
        HwConfig.from_json(str(tmp_path / "missing.json"))
    with pytest.raises(HwConfigError, match="known presets"):
        HwConfig.preset("zcu999")
    data = json.loads(HwConfig().to_json())
    data["resources"]["bogus"] = 1
    with pytest.raises(HwConfigError, match="bogus"):
        HwConfig.from_dict(data)


def test_layer_bits_beyond_the_core():
    cfg = HwConfig(max_a_bits=4, max_w_bits=2, lut_entries=4)
    cfg.check_layer_bits("ok", 4, 2)
    with pytest.raises(HwConfigError, match="layer 'conv'.*a_bits=5.*max_a_bits=4"):
        cfg.check_layer_bits("conv", 5, 2)
    with pytest.raises(QnnError, match="w_bits=3"):
        cfg.check_layer_bits("conv", 2, 3)
    # the error names the shipped presets whose core takes the layer, read from their configs
    takes_8 = [n for n in ("pynq_z1", "ultrascale_plus") if HwConfig.preset(n).max_w_bits >= 8]
    assert takes_8  # a preset with 8-bit weights ships: the suggestion below is not empty
    with pytest.raises(HwConfigError, match="w_bits=8.*presets whose core takes it: " + ", ".join(takes_8)):
        HwConfig.preset("pynq_z1").check_layer_bits("conv", 8, 8)


@pytest.mark.parametrize("name", ["pynq_z1", "ultrascale_plus"])
def test_every_preset_names_its_part_and_fits_it(name):
    from vta_ext.fit import utilisation
    from vta_ext.parts import PARTS

    cfg = HwConfig.preset(name)
    report = utilisation(cfg)
    assert cfg.capacity == PARTS[cfg.part].capacity()
    for resource in ("lut", "ff", "bram", "dsp"):
        assert 0 < report[resource]["need"] <= report[resource]["capacity"], (name, resource, report)


@pytest.mark.parametrize("changes,resource", [
    ({"block_in": 16, "block_out": 16, "max_w_bits": 8, "lut_entries": 256}, "LUT"),  # VTA's default at w8: ~210k LUT
    ({"wgt_buff_bytes": 1 << 23}, "block RAM"),  # 8 MiB of weights: 1,821 BRAM36 > 140
])
def test_a_core_that_does_not_fit_is_refused_naming_the_resource_and_both_numbers(changes, resource):
    cfg = HwConfig.preset("pynq_z1")
    need = _unchecked(cfg, changes)
    capacity = {"LUT": "53,200", "block RAM": "140"}[resource]
    key = {"LUT": "lut", "block RAM": "bram"}[resource]
    with pytest.raises(HwConfigError, match=rf"part xc7z020: {resource} {need[key]:,} needed > {capacity} available"):
        cfg.replace(**changes)
    with pytest.raises(HwConfigError, match=resource):
        HwConfig.from_dict({**cfg.to_dict(), **changes})


def _unchecked(cfg, changes):
    """The model's figures for ``cfg`` + ``changes`` without the check (built without a part first)."""
    from vta_ext.fit import modelled

    free = HwConfig(**{**cfg.to_dict(), **changes, "part": None})
    object.__setattr__(free, "part", cfg.part)
    return modelled(free)


def test_unknown_part_lists_the_known_ones():
    with pytest.raises(HwConfigError, match=r"part='xc7k70t' is unknown; known parts: \['ice40hx8k'"):
        HwConfig(part="xc7k70t")
    with pytest.raises(HwConfigError, match="part=7"):
        HwConfig(part=7)


def test_compile_refuses_an_oversized_core_before_building():
    import tvm_qnn

    big = {**HwConfig.preset("ultrascale_plus").to_dict(), "block_in": 64, "block_out": 64}
    with pytest.raises(HwConfigError, match=r"does not fit its part xcvu9p: LUT [\d,]+ needed > 1,182,240"):
        tvm_qnn.compile(None, target=big)  # refused while reading the target, before the module is touched


def test_output_bits_that_do_not_fill_whole_bytes_are_refused_by_name():
    """4 outputs at 3 bits are 12 bits: the layer is refused naming out_bits, not a ZeroDivisionError later."""
    cfg = HwConfig(batch=1, block_in=8, block_out=4, max_a_bits=4, max_w_bits=2, lut_entries=4)
    with pytest.raises(HwConfigError, match="out_bits=3 .* 12 bits"):
        cfg.check_layer_bits("conv", 2, 2, 3)
    cfg.check_layer_bits("conv", 2, 2, 2)  # 8 bits: one byte

"""HwConfig: presets, JSON round trip, derived sizes, and each bad field named in the error."""

import json

import pytest

from tvm_qnn.errors import HwConfigError, QnnError
from vta_ext.config import HwConfig


@pytest.mark.parametrize("name", ["pynq_z1", "ultrascale_plus"])
def test_presets_load_and_round_trip(name, tmp_path):
    cfg = HwConfig.preset(name)
    assert HwConfig.from_json(cfg.to_json()) == cfg
    path = tmp_path / "c.json"
    cfg.to_json(path)
    assert HwConfig.from_json(path) == cfg


def test_pynq_preset_is_vta_default_sized():
    cfg = HwConfig.preset("pynq_z1")
    assert (cfg.batch, cfg.block_in, cfg.block_out, cfg.clock_mhz) == (1, 16, 16, 100.0)
    assert cfg.lanes == 256
    # packing: an 8-bit input vector is 16 bytes, a 1-bit one 2 bytes -> 8x the depth
    assert cfg.inp_vector_bytes(8) == 16 and cfg.inp_depth(1) == 8 * cfg.inp_depth(8)
    assert cfg.acc_depth == cfg.acc_buff_bytes // (16 * 4)
    assert cfg.peak_gops(8) == pytest.approx(2 * 256 * 100e6 / 8 / 1e9)
    assert HwConfig.preset("ultrascale_plus").lanes > 8 * cfg.lanes


@pytest.mark.parametrize("field,value", [
    ("batch", 0), ("block_in", 12), ("block_out", 1024), ("max_a_bits", 9), ("max_w_bits", 0),
    ("lut_entries", 3), ("lut_mode", "magic"), ("inp_buff_bytes", 8), ("dma_bytes_per_cycle", 3),
    ("clock_mhz", -5), ("clock_mhz", float("nan")), ("block_in", True), ("name", ""),
])
def test_bad_field_is_named(field, value):
    with pytest.raises(HwConfigError, match=field):
        HwConfig(**{field: value})


def test_inconsistent_fields():
    with pytest.raises(HwConfigError, match="lut_entries"):
        HwConfig(max_w_bits=8, lut_entries=16)
    with pytest.raises(HwConfigError, match="batch\\*block_in"):
        HwConfig(batch=1, block_in=4, block_out=4, lut_entries=256)
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

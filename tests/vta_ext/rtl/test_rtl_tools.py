"""Tool lookup, bounded runs and generator parameter validation (no hardware tools needed)."""

import shutil

import pytest

from tvm_qnn.errors import HwConfigError, ToolNotFoundError
from vta_ext.config import HwConfig
from vta_ext.rtl import tools
from vta_ext.rtl.params import CoreParams


@pytest.mark.parametrize("tool, package", [("yosys", "yosys"), ("iverilog", "iverilog"), ("vvp", "iverilog"),
                                           ("verilator", "verilator"), ("nextpnr-ice40", "nextpnr-ice40"),
                                           ("icepack", "fpga-icestorm")])
def test_missing_tool_names_the_debian_package(monkeypatch, tool, package):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolNotFoundError, match=f"Debian package '{package}'"):
        tools.find_tool(tool)
    assert not tools.has_tool(tool)


def test_unknown_tool_lists_the_known_ones():
    with pytest.raises(ToolNotFoundError, match="yosys"):
        tools.find_tool("vivado")


def test_run_bounded_kills_on_timeout():
    run = tools.run_bounded(["sleep", "5"], timeout_s=0.3)
    assert run.timed_out and run.wall_s < 3


def test_run_bounded_limits_memory():
    # a child asking for more than its address-space limit fails instead of eating the machine
    run = tools.run_bounded(["python3", "-c", "x = bytearray(512 * 1024 * 1024)"], timeout_s=30, mem_mb=256)
    assert run.returncode != 0 and "MemoryError" in run.tail()


@pytest.mark.parametrize("field, value", [("block_in", 12), ("block_out", 6), ("batch", 3), ("block_in", 512)])
def test_lanes_not_a_power_of_two_names_the_field(field, value):
    with pytest.raises(HwConfigError, match=field):
        CoreParams(**{field: value})


def test_bits_and_mode_are_checked():
    with pytest.raises(HwConfigError, match="w_bits"):
        CoreParams(w_bits=9)
    with pytest.raises(HwConfigError, match="weight_mode"):
        CoreParams(weight_mode="lut")


def test_lut_with_more_entries_than_the_core_names_lut_entries():
    params = CoreParams(w_bits=2, weight_mode="decode")
    with pytest.raises(HwConfigError, match="lut_entries"):
        params.check_lut([[0] * 8])
    with pytest.raises(HwConfigError, match="lut_entries"):
        CoreParams(w_bits=3, lut_entries=4)


def test_bitplane_refuses_a_non_uniform_lut():
    params = CoreParams(w_bits=2, weight_mode="bitplane")
    params.check_lut([[-3, -1, 1, 3]])
    with pytest.raises(HwConfigError, match="bitplane"):
        params.check_lut([[-3, -1, 2, 3]])


def test_params_from_hw_config():
    cfg = HwConfig.preset("pynq_z1")
    params = CoreParams.from_hw_config(cfg, w_bits=2)
    assert (params.batch, params.block_in, params.block_out, params.weight_mode) == (2, 8, 4, cfg.lut_mode)
    assert params.lanes == 64 and params.levels == 4

"""Whole-core synthesis (vta_ext.rtl.core_synth), its block-RAM buffers, the measured fit and the iCE40
bitstream flow (vta_ext.rtl.bitstream, `tvm-qnn bitstream`)."""

import json
import subprocess

import pytest

from tvm_qnn.errors import HwConfigError
from vta_ext import fit
from vta_ext.config import HwConfig, preset_names
from vta_ext.parts import get_part
from vta_ext.rtl.bitstream import BitstreamError, build_bitstream, run_ice40_flow
from vta_ext.rtl.core_synth import part_resources, synthesis_parameters, synthesize_core
from vta_ext.rtl.cosim import isa_header
from vta_ext.rtl.simulate import verilog_sources
from vta_ext.rtl.synth import TOPS
from vta_ext.rtl.tools import find_tool, run_bounded

pytestmark = pytest.mark.rtl

SMALL_CORE = HwConfig(name="small-core", batch=1, block_in=8, block_out=4, max_a_bits=2, max_w_bits=2,
                      lut_entries=4, lut_mode="decode", inp_buff_bytes=512, wgt_buff_bytes=1024, acc_buff_bytes=2048,
                      uop_buff_bytes=2048, prm_buff_bytes=64, dma_bytes_per_cycle=1, dma_latency_cycles=4)


def _memories(cfg, tmp_path, lut_mode="decode"):
    """yosys' view of qnn_core's memories just before block-RAM mapping (after memory_dff folded the
    address registers into read ports): ``{name: parameters}`` of every $mem_v2."""
    params = dict(synthesis_parameters(cfg, "xc7z020"), LUT_MODE={"onehot": 1, "decode": 2}[lut_mode])
    (tmp_path / "isa_fields.vh").write_text(isa_header())
    sources = " ".join(str(p) for p in verilog_sources(*TOPS["qnn_core"]))
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    (tmp_path / "mem.ys").write_text(
        f"read_verilog -sv -I{tmp_path} {sources}\nchparam {chparam} qnn_core\n"
        "synth_ice40 -top qnn_core -run :map_ram\nwrite_json mem.json\n")  # up to block-RAM mapping
    run = run_bounded([find_tool("yosys"), "-q", "mem.ys"], cwd=tmp_path, timeout_s=300, mem_mb=3072)
    assert run.returncode == 0, run.tail()
    cells = json.loads((tmp_path / "mem.json").read_text())["modules"]["qnn_core"]["cells"]
    return {c["parameters"]["MEMID"].split(".")[-1]: c["parameters"] for c in cells.values() if c["type"] == "$mem_v2"}


def _bits(value):
    return str(value) if isinstance(value, str) else format(value, "b")


# parameter rows for 16 output blocks: a one-row buffer has no address for yosys to fold in (it becomes FFs)
SHAPE_CORE = SMALL_CORE.replace(prm_buff_bytes=1024)


def test_decode_core_buffers_are_block_ram_shaped(tmp_path):
    """Every buffer and queue: one write port and only synchronous (clocked) read ports, what a block RAM has."""
    memories = _memories(SHAPE_CORE, tmp_path)
    assert {"inp_mem", "wgt_mem", "acc_mem", "uop_mem", "prm_mem"} <= set(memories)
    for name, p in memories.items():
        assert int(_bits(p["WR_PORTS"]), 2) == 1, (name, p["WR_PORTS"])
        reads = int(_bits(p["RD_PORTS"]), 2)
        assert reads >= 1 and set(_bits(p["RD_CLK_ENABLE"]).zfill(reads)) == {"1"}, (name, p["RD_CLK_ENABLE"])
    # the accumulator is read by the ALU's two operands (two ports: yosys duplicates the RAM) and by the store,
    # from its own copy written with it (no bypass logic: the tokens keep the store off entries being written)
    assert int(_bits(memories["acc_mem"]["RD_PORTS"]), 2) == 2
    assert int(_bits(memories["acc_store_mem"]["RD_PORTS"]), 2) == 1


def test_lane_serial_core_keeps_its_lanes_in_block_ram(tmp_path):
    """The lane-serial datapath (one GEMM column, one ALU lane: the smallest iCE40 core): the accumulators are one
    32-bit lane per word (two ALU operand ports, and the store's whole-entry copy), the parameter rows four
    per-lane memories; every one block-RAM shaped, and no whole-vector accumulator or parameter row is left."""
    cfg = SMALL_CORE.replace(alu_lanes=1, gemm_out_lanes=1, alu_mul_cycles=8)
    assert cfg.lane_serial
    memories = _memories(cfg, tmp_path)
    assert {"acc_lane", "acc_store_mem", "lut_lane", "bias_lane", "mult_lane", "shift_lane"} <= set(memories)
    assert not {"acc_mem", "prm_mem"} & set(memories)
    for name, p in memories.items():
        assert int(_bits(p["WR_PORTS"]), 2) == 1, (name, p["WR_PORTS"])
        reads = int(_bits(p["RD_PORTS"]), 2)
        assert reads >= 1 and set(_bits(p["RD_CLK_ENABLE"]).zfill(reads)) == {"1"}, (name, p["RD_CLK_ENABLE"])
    acc = memories["acc_lane"]
    assert int(_bits(acc["RD_PORTS"]), 2) == 2 and int(_bits(acc["WIDTH"]), 2) == 32
    assert int(_bits(acc["SIZE"]), 2) == cfg.acc_depth * cfg.block_out


def test_onehot_accumulator_is_the_only_register_file(tmp_path):
    """One-hot GEMM reads and writes 2^w_bits level entries per clock: that buffer alone is not block-RAM shaped."""
    memories = _memories(SHAPE_CORE, tmp_path, lut_mode="onehot")
    acc = memories["acc_mem"]
    assert "0" in _bits(acc["RD_CLK_ENABLE"]).zfill(int(_bits(acc["RD_PORTS"]), 2))
    assert all(set(_bits(p["RD_CLK_ENABLE"])) == {"1"} for name, p in memories.items() if name != "acc_mem")


def test_synthesized_buffers_hold_the_configured_bytes():
    cfg = HwConfig.preset("pynq_z1")
    p = synthesis_parameters(cfg)
    assert p["INP_DEPTH"] * cfg.inp_vector_bytes(cfg.max_a_bits) == cfg.inp_buff_bytes
    assert p["WGT_DEPTH"] * cfg.wgt_block_bytes(cfg.max_w_bits) == cfg.wgt_buff_bytes
    assert p["ACC_DEPTH"] * cfg.acc_vector_bytes == cfg.acc_buff_bytes
    assert p["UOP_DEPTH"] * 8 == cfg.uop_buff_bytes


def test_xilinx_block_rams_count_in_36kb_units():
    class Result:  # the cell counts part_resources reads
        cells = {"LUT6": 10, "RAM64M": 2, "RAMB36E1": 3, "RAMB18E1": 3, "DSP48E1": 1}
        luts, ffs, bram, dsp = 10, 5, 6, 1
    assert part_resources(Result, "xilinx") == {"lut": 18, "ff": 5, "bram": 5, "dsp": 1}


def test_measured_cores_are_what_the_fit_check_uses():
    data = json.loads(fit.MEASURED_PATH.read_text())
    assert data["cores"], "vta_ext/rtl_fit/whole_core.json holds no measured core"
    for name, entry in data["cores"].items():
        need, part = entry["measured"], get_part(entry["hardware"]["part"])
        if name in preset_names():
            cfg = HwConfig.preset(name)
            report = fit.utilisation(cfg)
            assert report["source"].startswith("measured") and all(report[r]["need"] == need[r] for r in need)
            assert all(need[r] <= part.capacity()[r] for r in need), (name, need)  # a preset fits its part
        else:  # a measured core that does not fit is refused with the measured numbers
            over = [r for r in need if need[r] > part.capacity()[r]]
            if over:
                with pytest.raises(HwConfigError, match=f"{need[over[0]]:,} needed"):
                    HwConfig(**{k: v for k, v in entry["hardware"].items()}, name=name)


def test_bitstream_needs_an_ice40_part(tmp_path):
    with pytest.raises(HwConfigError, match="ice40hx8k"):
        build_bitstream(HwConfig.preset("pynq_z1"), tmp_path)


def test_bitstream_command_names_the_part_problem(tmp_path):
    import sys

    run = subprocess.run([sys.executable, "-m", "tvm_qnn.cli", "bitstream", "--hw-config", "pynq_z1", "-o",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "xc7z020" in run.stderr and "iCE40" in run.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ice40_preset_bitstream_from_the_command_line(tmp_path):
    """`tvm-qnn bitstream --hw-config ice40_hx8k`: the whole core placed and routed on the HX8K at the preset's clock
    (timing met), and icepack -u reads core.bin back as the same 8k device with the same logic tiles."""
    import sys

    from vta_ext.rtl.bitstream import unpack_bitstream

    out = tmp_path / "ice40"
    run = subprocess.run([sys.executable, "-m", "tvm_qnn.cli", "bitstream", "--hw-config", "ice40_hx8k", "-o", str(out)],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    cfg = HwConfig.preset("ice40_hx8k")
    assert report["timing_met"] and report["fmax_mhz"] >= cfg.clock_mhz == report["clock_mhz"]
    cells = report["utilisation"]["ICESTORM_LC"]
    assert 0 < cells["used"] <= cells["available"] == 7680
    back = unpack_bitstream(out / "core.bin")
    assert back == {"device": "8k", "logic_tiles": (out / "core.asc").read_text().count(".logic_tile")}


@pytest.mark.slow
def test_bitstream_flow_on_the_gemm_harness(tmp_path):
    """synth_ice40 -> nextpnr -> icepack on a small top; icepack -u reads the bitstream back; timing is met."""
    params = dict(BATCH=1, BLOCK_IN=8, BLOCK_OUT=2, A_BITS=2, W_BITS=2, WEIGHT_MODE=2)
    report = run_ice40_flow("pnr_harness", TOPS["pnr_harness"], params, "ice40hx8k", 12.0, tmp_path)
    assert report["timing_met"] and report["fmax_mhz"] >= 12.0
    assert 0 < report["utilisation"]["ICESTORM_LC"]["used"] <= report["utilisation"]["ICESTORM_LC"]["available"]
    unpacked = run_bounded([find_tool("icepack"), "-u", "core.bin", "back.asc"], cwd=tmp_path, timeout_s=120)
    assert unpacked.returncode == 0, unpacked.tail()
    back = (tmp_path / "back.asc").read_text()
    assert ".device 8k" in back and back.count(".logic_tile") == (tmp_path / "core.asc").read_text().count(".logic_tile")
    with pytest.raises(BitstreamError, match=r"timing failed: pnr_harness on ice40hx8k: Fmax [\d.]+ MHz < clock 900"):
        run_ice40_flow("pnr_harness", TOPS["pnr_harness"], params, "ice40hx8k", 900.0, tmp_path / "fast")


@pytest.mark.slow
@pytest.mark.timeout(6000)  # ultrascale_plus: 22 min of yosys alone, past the suite's 900 s on a loaded machine
@pytest.mark.parametrize("name", ["pynq_z1", "ice40_hx8k", "ultrascale_plus"])
def test_preset_whole_core_synthesizes_within_its_part(name):
    """Synthesize the preset's whole core again and compare yosys' counts with the part and the committed record."""
    cfg = HwConfig.preset(name)
    result, measured = synthesize_core(cfg, timeout_s=5400, mem_mb=16384)  # ultrascale_plus: 22 min, 6+ GB
    capacity = get_part(cfg.part).capacity()
    assert result.bram > 0, "no buffer became block RAM"
    assert all(measured[r] <= capacity[r] for r in capacity), (measured, capacity)
    assert measured == json.loads(fit.MEASURED_PATH.read_text())["cores"][name]["measured"]

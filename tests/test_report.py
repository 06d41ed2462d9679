"""benchmarks/report.py: README results tables from synthetic benchmark JSONs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("bench_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(directory: Path, name: str, payload):
    (directory / name).write_text(json.dumps(payload))


def _accuracy(fast=False):
    return {"meta": {"model": "fmnist_resnet", "train_images": 2048 if fast else 60000, "test_images": 10000},
            "results": [{"kind": "fp32", "tag": "fp32", "accuracy": 0.9, "gbops": 10.5},
                        {"kind": "ptq", "tag": "w3a3-uniform", "label": "NICE w3a3", "accuracy": 0.7, "gbops": 0.334},
                        {"kind": "ptq", "tag": "w2a2-kquantile", "label": "UNIQ w2a2", "accuracy": 0.6, "gbops": 0.27},
                        {"kind": "qat", "tag": "w3a3-uniform", "label": "NICE w3a3", "accuracy": 0.894,
                         "gbops": 0.334},
                        {"kind": "qat", "tag": "w2a2-kquantile", "label": "UNIQ w2a2", "accuracy": 0.8871,
                         "int_accuracy": 0.8861, "agreement": 0.97, "gbops": 0.27}],
            "targets": {"fp32 >= 93.0 (floor)": {"value_pt": 90.0, "bound_pt": 93.0, "met": False},
                        "qat w2a2-kquantile >= fp32 - 2.0pt (floor)": {"value_pt": 88.71, "bound_pt": 88.0,
                                                                       "met": True},
                        "qat w2a2-kquantile >= ptq + 5pt": {"value_pt": 88.71, "bound_pt": 65.0, "met": True}},
            "wall_s_total": 123.0}


def _kernels():
    summary = {"w1a1": {"vs_torch": 30.5, "vs_ort_int8": 4.25, "vs_ort_fp32": 20.0, "vs_tvm_fp32": 9.0,
                        "vs_upstream": 2.0, "tuned_vs_hand": 1.1, "roofline_fraction": 0.75},
               "w2a2-lut": {"vs_torch": 3.0, "vs_ort_int8": 0.5, "vs_ort_fp32": 2.0, "vs_tvm_fp32": None,
                            "vs_upstream": None, "tuned_vs_hand": None, "roofline_fraction": 0.5,
                            "lut_slowdown_vs_uniform": 1.8},
               "torch_fp32_roofline_fraction": 0.59}
    return {"machine": {"date": "2030-01-02T03:04:05+00:00", "cpu_model": "Test CPU 9000",
                        "load_average": [1.25, 2.0, 3.0]},
            "summary": summary, "rows": [{"shape": {"in_channels": 64}, "upstream": {"exact": True}}],
            "peaks": {"popcount_bitmacs_per_s": {"per_core": 1.2e12}, "fp32_flops_per_s": {"per_core": 1.1e11},
                      "bitmacs_per_fp32_fma": 21.8}}


def _fpga():
    layer = {"name": "l1", "macs": 100, "utilisation": 0.5, "cycles": 10}
    entry = {"cycles": 1234567, "latency_ms": 12.35, "fps": 81.0, "gops": 45.6, "dram_bytes": 2**20, "layers": [layer]}
    fit = {"part": "xc7z020", "source": "model (vta_ext.resources.estimate)", "array": "1x32x8", "bits": "a8/w4",
           "lut_mode": "decode", "lut": {"need": 41785, "capacity": 53200}, "ff": {"need": 2000, "capacity": 106400},
           "bram": {"need": 106, "capacity": 140}, "dsp": {"need": 48, "capacity": 220}}
    return {"image_hw": 224, "presets": {"pynq_z1": {"resnet18": {"w2a2": entry}}}, "fit": {"pynq_z1": fit},
            "published": {"streaming ResNet-18": {"luts": 596081, "ffs": 1175373, "latency_ms": 16.1}},
            "bops_fit": {"pynq_z1/resnet18": {"r2": 0.9751}}}


def _rtl_sweep():
    rows = []
    for w in (1, 2, 4):  # LUTs exactly linear in the tile's BOPs -> R^2 = 1
        params = {"BATCH": 1, "BLOCK_IN": 8, "BLOCK_OUT": 8, "A_BITS": 8, "W_BITS": w, "WEIGHT_MODE": 0}
        bops = 64 * (8 * w + 8 + w + math.log2(8))
        rows.append({"top": "gemm_unit", "flow": "xilinx-nodsp", "params": params, "luts": int(2 * bops),
                     "ffs": 100 + w, "carry": 7, "bram": 0, "dsp": 0, "wall_s": 3.0, "role": "fit"})
    rows.append({"top": "gemm_unit", "flow": "xilinx-nodsp", "role": "fit", "skipped": "yosys exceeded 240 s",
                 "params": {"BATCH": 1, "BLOCK_IN": 32, "BLOCK_OUT": 32, "A_BITS": 8, "W_BITS": 3, "WEIGHT_MODE": 2}})
    return rows


def _all_results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _write(results, "accuracy.json", _accuracy())
    _write(results, "kernels.json", _kernels())
    _write(results, "fpga.json", _fpga())
    _write(results, "rtl_sweep.json", _rtl_sweep())
    _write(results, "compile_time.json", {"model": "resnet18", "seconds": {"import": 1.5, "compile": 70.25},
                                          "total_s": 71.75})
    return results


def test_tables_contain_the_numbers_and_targets(report, tmp_path):
    block = report.render(_all_results(tmp_path), tmp_path / "no_fit.json")
    # accuracy: float / integer-only values, agreement and the benchmark's own target checks
    assert "| 90.00 |" in block and "| 89.40 |" in block and "| 88.71 / 88.61 |" in block and "| 97.00 |" in block
    assert "fp32 >= 93.0 (floor): missed" in block
    assert "qat >= fp32 - 2.0pt (floor): 88.71 (**met**)" in block and "qat >= ptq + 5pt: 88.71 (**met**)" in block
    assert "| -1.29 |" in block
    # kernels: ratios with their targets, roofline %, LUT slowdown, provenance from "machine"
    assert "30.50× (≥ 24×: **met**)" in block and "4.25× (≥ 5×: missed)" in block
    assert "75.0% (≥ 70%: **met**)" in block and "1.80× slower (≤ 1.6×: missed)" in block
    assert "measured: 2030-01-02T03:04:05+00:00 · CPU: Test CPU 9000 · load average: 1.2, 2.0, 3.0" in block
    assert "PyTorch fp32 reaches 59% of the fp32 peak" in block
    # FPGA: cycles, fps, GOPS, resources next to the published figure, R^2
    assert "1,234,567" in block and "| 81.0 |" in block and "| 45.6 |" in block
    assert "596,081" in block and "pynq_z1/resnet18 R² = 0.975" in block
    assert "| pynq_z1 | xc7z020 | 1x32x8 | a8/w4 | decode | 41,785 / 53,200 (79%) |" in block  # the fit to its part
    assert "ours: pynq_z1 core, resnet18 w2a2 | 41,785 |" in block
    # compile time target missed; RTL rows and the skipped config (R² comes from the fit JSON: next test)
    assert "**71.75** (< 60 s: missed)" in block
    assert "per-lane decode 1024 lanes b_w=3 (skipped)" in block


def test_rtl_fit_json_gives_r2_fmax_and_heldout_error(report, tmp_path):
    results = _all_results(tmp_path)
    fit = tmp_path / "resources_fit.json"
    _write(tmp_path, "resources_fit.json", {
        "date": "2031-05-06T07:08:09+00:00", "tools": {"yosys": "Yosys 0.23"}, "heldout_max_rel_error": 0.0712,
        "fmax": {"fmax_mhz": 50.78, "device": "hx8k", "logic_cells": 1644,
                 "config": {"BATCH": 1, "BLOCK_IN": 8, "BLOCK_OUT": 8, "A_BITS": 4, "W_BITS": 2, "WEIGHT_MODE": 0}},
        "bops_r2": {"onehot": {"n": 15, "r2_luts_vs_bops": 0.3608, "r2_lut_cycles_vs_bops": 0.3608}}})
    block = report.render(results, fit)
    rtl = block[block.index("### RTL"):]
    assert "measured: 2031-05-06T07:08:09+00:00" in rtl and "Yosys 0.23" in rtl
    assert "one-hot level sums: R² LUTs vs BOPs 0.361" in rtl and "computed by report.py" not in rtl
    assert "**50.8 MHz**" in rtl and "1×8×8 bit-plane, b_a=4, b_w=2" in rtl
    assert "worst LUT error 7.1% (≤ 10%: **met**)" in rtl
    # JSONs without provenance fields say so; plots are linked
    assert "CPU: not recorded" in block and "measured: not recorded ·" in block  # never the file time
    assert "[kernels_speedup.png](results/kernels_speedup.png)" in block and "make bench" in block


def test_named_runs_get_their_own_table(report, tmp_path):
    results = _all_results(tmp_path)
    kernels = _kernels()
    kernels["summary"]["w1a1"]["vs_torch"] = 14.27
    kernels["rows"][0]["tuned_error"] = "TuningError: workload conv: MetaSchedule tuning failed: Unknown CostModel"
    _write(results, "kernels_tuned_1shape.json", kernels)
    _write(results, "kernels_asm.json", {"w1a1": {"uops_per_bitmac": 0.00702}})
    block = report.render(results, tmp_path / "no_fit.json")
    assert "#### Other run: `kernels_tuned_1shape.json`" in block and "14.27× (≥ 24×: missed)" in block
    assert "tuning failed in 1/1 rows" in block and "Unknown CostModel`" in block
    assert "Other run: `kernels_asm.json`" not in block and "w1a1 7.02 instructions per 1000 bit-MACs" in block


def test_missing_files_say_which_script_to_run(report, tmp_path):
    empty = tmp_path / "results"
    empty.mkdir()
    block = report.render(empty, tmp_path / "no_fit.json")
    for script in ("accuracy", "kernels", "roofline", "models", "cost_model", "compile_time", "fpga",
                   "fpga_streaming", "rtl"):
        assert f"not measured yet: run `python benchmarks/{script}.py`" in block
    assert "|" not in block  # no table without data


def test_fast_accuracy_is_labelled(report, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _write(results, "fast-accuracy.json", _accuracy(fast=True))
    block = report.render(results, tmp_path / "no_fit.json")
    assert "FAST MODE" in block and "2048 training" in block
    _write(results, "accuracy.json", _accuracy())  # the full run wins when both exist
    assert "FAST MODE" not in report.render(results, tmp_path / "no_fit.json")


def test_accuracy_rows_with_their_own_schedule_and_runs(report, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    data = _accuracy()
    data["meta"]["qat"] = {"stages": 2, "epochs_per_stage": 1, "lr": 0.003}
    data["meta"]["qat_per_row"] = {"w2a2-kquantile": {"epochs_per_stage": 2, "final_epochs": 4}}
    data["meta"]["runs"] = [{"date": "2030-01-01T00:00:00+00:00", "rows": ["fp32 fp32", "qat w3a3-uniform"],
                             "wall_s": 100.0},
                            {"date": "2030-01-02T00:00:00+00:00", "rows": ["qat w2a2-kquantile"], "wall_s": 23.0}]
    _write(results, "accuracy.json", data)
    block = report.render(results, tmp_path / "no_fit.json")
    assert 'QAT (every row unless stated): {"epochs_per_stage": 1, "lr": 0.003, "stages": 2}' in block
    assert 'w2a2-kquantile trained with {"epochs_per_stage": 2, "final_epochs": 4}' in block
    assert "Total wall time 123 s over 2 runs (2030-01-01T00:00:00+00:00: 2 rows, 100 s; " in block


def test_readme_block_replaced_nothing_else_touched_and_check(report, tmp_path):
    results = _all_results(tmp_path)
    readme = tmp_path / "README.md"
    head = "# title\n\nsome text with `code`\n\n"
    tail = "\n\n## After\ntrailing text, no final newline"
    readme.write_text(f"{head}{report.START}\nold stale table\n{report.END}{tail}")
    args = ["--results", str(results), "--readme", str(readme), "--rtl-fit", str(tmp_path / "no_fit.json")]
    assert report.main(args + ["--check"]) == 1  # stale
    assert "old stale table" in readme.read_text()  # --check never writes
    assert report.main(args) == 0
    text = readme.read_text()
    assert text.startswith(head + report.START + "\n") and text.endswith(report.END + tail)
    assert "old stale table" not in text and "30.50×" in text
    assert report.main(args + ["--check"]) == 0
    assert report.main(args) == 0 and readme.read_text() == text  # idempotent
    kernels = _kernels()
    kernels["summary"]["w1a1"]["vs_torch"] = 31.0
    _write(results, "kernels.json", kernels)
    assert report.main(args + ["--check"]) == 1


def test_readme_without_markers_is_refused(report, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no block here\n")
    assert report.main(["--results", str(tmp_path), "--readme", str(readme)]) == 2
    assert "results:start" in capsys.readouterr().err
    assert readme.read_text() == "# no block here\n"


def test_machine_info_fields(report):
    info = report.machine_info()
    assert set(info) == {"date", "cpu_model", "load_average", "cores"}
    assert info["date"].endswith("+00:00") and len(info["load_average"]) == 3 and info["cores"] >= 1


def test_readme_results_block_is_what_the_committed_jsons_render(report):
    """A fresh clone holds results/*.json and the RTL fit; the README's block must be their rendering."""
    assert report.main(["--check"]) == 0


def test_conformance_table_one_row_per_model_with_failed_cases_listed(report, tmp_path):
    ok = {"status": "ok", "resolution": 32, "ops": ["add", "conv2d", "relu"], "quantized_layers": 19,
          "cpu_vs_reference": 0.0, "agreement": 1.0, "ms": 12.34}
    data = {"meta": {"date": "2026-12-04T00:00:00+00:00"}, "inputs": 64, "cases": [
        {**ok, "model": "resnet18", "bits": 8, "importer": "torch"},
        {**ok, "model": "resnet18", "bits": 4, "importer": "torch", "agreement": 0.984375},
        {"model": "resnet18", "bits": 8, "importer": "onnx", "status": "error", "error": "UnsupportedOpError: x"},
        {**ok, "model": "mobilenet_v2", "bits": 8, "importer": "torch", "cpu_vs_reference": 2e-5, "fpga": "ok"},
    ]}
    _write(tmp_path, "conformance.json", data)
    body, _ = report.render_conformance(data, tmp_path / "conformance.json")
    rows = [line for line in body.splitlines() if line.startswith("| ") and "model" not in line]
    assert rows[0] == "| mobilenet_v2 | 3 | 19 | ✓ / not run | ✗, ✓ | w8a8 torch 100.0% | 12.3 |"
    assert rows[1] == ("| resnet18 | 3 | 19 | ✓ / ✗ | ✓, not run | w8a8 onnx error, w8a8 torch 100.0%, "
                       "w4a4 torch 98.4% | 12.3 |")
    assert "- resnet18 w8a8 via onnx: UnsupportedOpError: x" in body


def test_accuracy_merge_keeps_only_runs_whose_rows_the_file_still_holds():
    spec = importlib.util.spec_from_file_location("bench_accuracy", SCRIPT.parent / "accuracy.py")
    accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accuracy)
    runs = [{"date": "a", "rows": ["fp32 fp32", "ptq w2a2", "qat w2a2"], "wall_s": 100.0},
            {"date": "b", "rows": ["fp32 fp32", "qat w3a3"], "wall_s": 50.0},
            {"date": "c", "rows": ["fp32 fp32", "ptq w2a2", "qat w2a2"], "wall_s": 120.0}]
    # run a: every row measured again by c; run b still holds qat w3a3
    assert [r["date"] for r in accuracy.live_runs(runs)] == ["b", "c"]
    assert [r["date"] for r in accuracy.live_runs(runs[:2])] == ["a", "b"]

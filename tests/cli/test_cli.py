"""The ``tvm-qnn`` command: help, exit codes, one-line errors, --json, and a real
calibrate -> compile -> run pipeline whose output equals the Python API's bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tvm_qnn import cli

COMMANDS = ("train", "calibrate", "compile", "tune", "bench", "plan", "serve", "run", "bitstream", "demo")


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command_and_examples(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name}" in text
    assert "exit codes" in text and "examples:" in text
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        sub_help = capsys.readouterr().out
        assert "examples:" in sub_help and f"tvm-qnn {name}" in sub_help


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["compile"])  # missing MODEL and --out
    assert info.value.code == cli.EXIT_USAGE
    assert cli.main([]) == cli.EXIT_USAGE


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    """A real recipe for the zoo tiny_cnn, made by the calibrate command on the digits data."""
    path = tmp_path_factory.mktemp("cli") / "recipe.json"
    assert cli.main(["calibrate", "tiny_cnn", "--data", "digits", "--batches", "1",
                     "--out", str(path), "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def cpu_export(tmp_path_factory, recipe_file):
    """An export written by the compile command (checked in test_compile_and_run...)."""
    export = tmp_path_factory.mktemp("cli") / "cpu"
    assert cli.main(["compile", "tiny_cnn", "--recipe", str(recipe_file), "--target", "cpu",
                     "--out", str(export), "--quiet"]) == 0
    return export


@pytest.mark.parametrize("case", ["missing model", "missing recipe", "wrong recipe",
                                  "unknown target", "unreachable tracker", "missing export",
                                  "bad hw config"])
def test_bad_input_is_one_line_and_nonzero(case, capsys, tmp_path, recipe_file, cpu_export):
    bad_recipe = tmp_path / "bad.json"
    bad_recipe.write_text(json.dumps({"format": "tvm-qnn-recipe/0", "layers": {}}))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    argv, expected_code, needle = {
        "missing model": (["compile", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")],
                          1, "none.pt"),
        "missing recipe": (["compile", "tiny_cnn", "--recipe", str(tmp_path / "r.json"),
                            "--out", str(tmp_path / "o")], 1, "r.json"),
        "wrong recipe": (["compile", "tiny_cnn", "--recipe", str(bad_recipe),
                          "--out", str(tmp_path / "o")], 1, "format"),
        "unknown target": (["compile", "tiny_cnn", "--recipe", str(recipe_file), "--target",
                            "gpu", "--out", str(tmp_path / "o")], 1, "known targets"),
        "unreachable tracker": (["run", "--rpc", "127.0.0.1:9", "--key", "cpu",
                                 str(cpu_export), str(tmp_path / "x.npy")], 3, "unreachable"),
        "missing export": (["run", str(tmp_path / "nowhere"), str(tmp_path / "x.npy")],
                           1, "nowhere"),
        "bad hw config": (["compile", "tiny_cnn", "--recipe", str(recipe_file), "--target",
                           "fpga", "--hw-config", "no_such_board", "--out", str(tmp_path / "o")],
                          1, "no_such_board"),
    }[case]
    code, out, err = run_cli(capsys, *argv)
    assert code == expected_code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tvm-qnn {argv[0]}: ") and needle in lines[0]
    assert "Traceback" not in err + out


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        cli.main(["compile", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"), "--debug"])


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tvm_qnn", "run", str(tmp_path / "none"),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "none" in proc.stderr


def test_compile_and_run_json_equal_the_api(capsys, tmp_path, recipe_file):
    import tvm_qnn
    import tvm_qnn.targets
    from tvm_qnn import models

    export = tmp_path / "cpu"
    code, out, _ = run_cli(capsys, "compile", "tiny_cnn", "--recipe", str(recipe_file),
                           "--target", "cpu", "--out", str(export), "--json")
    assert code == 0
    compiled = json.loads(out)
    assert compiled["export"] == str(export)
    assert compiled["target"] == tvm_qnn.targets.get_target("cpu").name
    assert compiled["inputs"][0]["shape"] == [1, 1, 28, 28]

    x = models.example_input("tiny_cnn", seed=3).numpy()
    np.save(tmp_path / "x.npy", x)
    code, out, _ = run_cli(capsys, "run", str(export), str(tmp_path / "x.npy"), "--repeat", "2",
                           "--output", str(tmp_path / "y.npy"), "--json")
    assert code == 0
    summary = json.loads(out)
    expected = tvm_qnn.load(export).run(x)
    assert np.array_equal(np.load(tmp_path / "y.npy"), expected)
    assert summary["top1"] == [int(expected.argmax())] and summary["mean_ms"] > 0


def test_compile_integer_only_equals_the_fpga_export(capsys, tmp_path, recipe_file):
    import tvm_qnn
    from tvm_qnn import models

    for name, extra in (("int", ["--target", "cpu", "--integer-only", "--hw-config", "pynq_z1"]),
                        ("fpga", ["--target", "fpga", "--hw-config", "pynq_z1"])):
        torch.manual_seed(0)  # a zoo name builds freshly initialised weights: the same ones for both
        code, _, _ = run_cli(capsys, "compile", "tiny_cnn", "--recipe", str(recipe_file), *extra,
                             "--out", str(tmp_path / name), "--json")
        assert code == 0
    x = models.example_input("tiny_cnn", seed=4).numpy()
    integer = tvm_qnn.load(tmp_path / "int")
    assert integer.artifact.info["integer_only"] and integer.artifact.info["partition_config"] == "pynq_z1"
    assert np.array_equal(integer.run(x), tvm_qnn.load(tmp_path / "fpga").run(x))
    code, _, err = run_cli(capsys, "compile", "tiny_cnn", "--recipe", str(recipe_file), "--target", "fpga",
                           "--integer-only", "--out", str(tmp_path / "bad"))
    assert code != 0 and "--integer-only needs --target cpu" in err


def test_plan_json_is_an_object(capsys):
    code, out, _ = run_cli(capsys, "plan", "resnet18", "--devices", "2", "--json")
    assert code == 0
    plan = json.loads(out)
    assert isinstance(plan, dict) and plan


def test_bench_json_reports_a_positive_latency(capsys, cpu_export):
    code, out, _ = run_cli(capsys, "bench", str(cpu_export), "--repeat", "2", "--json",
                           "--baseline", "tiny_cnn")
    assert code == 0
    bench = json.loads(out)
    assert bench["mean_ms"] > 0 and bench["torch_fp32_ms"] > 0
    assert bench["speedup_vs_torch_fp32"] == pytest.approx(bench["torch_fp32_ms"] / bench["mean_ms"])


def test_train_writes_a_model_and_recipe_that_compile(capsys, tmp_path):
    import tvm_qnn

    out_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "--model", "tiny_cnn", "--data", "digits",
                           "--limit", "64", "--fp32-epochs", "0", "--epochs", "1",
                           "--out", str(out_dir), "--json", "--quiet")
    assert code == 0
    trained = json.loads(out)
    assert 0.0 <= trained["quantized_accuracy"] <= 1.0 and trained["gbops"] > 0
    recipe = tvm_qnn.load_recipe(out_dir / "recipe.json")
    assert recipe.layers  # the quantized layers of tiny_cnn
    code, out, _ = run_cli(capsys, "compile", str(out_dir / "model.pt"), "--recipe",
                           str(out_dir / "recipe.json"), "--target", "cpu-reference",
                           "--out", str(tmp_path / "export"), "--json")
    assert code == 0 and json.loads(out)["target"] == "cpu-reference"

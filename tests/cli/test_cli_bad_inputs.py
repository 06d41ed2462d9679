"""The ``tvm-qnn`` command on a newcomer's mistakes: destructive --out paths, out-of-range flags,
NaN inputs, a baseline of another model, edited exports. Each is one line on stderr with the
documented exit code, naming the fault; the user's files survive."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvm_qnn import cli


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in argv])
    return info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "recipe.json"
    assert cli.main(["calibrate", "tiny_cnn", "--data", "digits", "--batches", "1", "--out", str(path),
                     "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def export(tmp_path_factory, recipe_file):
    out = tmp_path_factory.mktemp("cli") / "build"
    assert cli.main(["compile", "tiny_cnn", "--recipe", str(recipe_file), "--target", "cpu-reference",
                     "--out", str(out), "--quiet"]) == 0
    return out


def one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_compile_out_pwd_with_user_files_is_refused(capsys, tmp_path, monkeypatch, recipe_file):
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print(1)")
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--force"]):
        code, _, err = run_cli(capsys, "compile", "tiny_cnn", "--recipe", recipe_file, "--target", "cpu-reference",
                               "--out", str(tmp_path), *extra)
        line = one_line(err)
        assert code == 1 and "ExportError" in line and str(tmp_path) in line and "refusing to replace" in line
    assert (tmp_path / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "src" / "train.py").read_text() == "print(1)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "thesis.tex"]


def test_compile_out_naming_a_file_is_refused(capsys, tmp_path, recipe_file):
    (tmp_path / "weights.bin").write_bytes(b"\x01\x02")
    code, _, err = run_cli(capsys, "compile", "tiny_cnn", "--recipe", recipe_file, "--out", tmp_path / "weights.bin",
                           "--force")
    assert code == 1 and "weights.bin is a file, not an export directory" in one_line(err)
    assert (tmp_path / "weights.bin").read_bytes() == b"\x01\x02"


def test_compile_replaces_an_earlier_export_only_with_force(capsys, tmp_path, recipe_file):
    argv = ["compile", "tiny_cnn", "--recipe", recipe_file, "--target", "cpu-reference", "--out", tmp_path / "b"]
    assert run_cli(capsys, *argv)[0] == 0
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and "already holds an export" in one_line(err) and "--force" in err
    assert run_cli(capsys, *argv, "--force")[0] == 0


@pytest.mark.parametrize("argv, flag", [
    (["calibrate", "tiny_cnn", "--batches", "0", "--out", "r.json"], "--batches"),
    (["bench", "somewhere", "--repeat", "0"], "--repeat"),
    (["run", "somewhere", "x.npy", "--repeat", "0"], "--repeat"),
    (["train", "--limit", "0", "--out", "runs/x"], "--limit"),
    (["train", "--lr", "nan", "--out", "runs/x"], "--lr"),
    (["calibrate", "tiny_cnn", "--w-bits", "9", "--out", "r.json"], "--w-bits"),
    (["tune", "m", "--recipe", "r", "--work-dir", "w", "--trials", "0"], "--trials"),
    (["plan", "resnet18", "--devices", "0"], "--devices"),
])
def test_out_of_range_flags_are_usage_errors(capsys, argv, flag):
    code, err = usage_error(capsys, *argv)
    assert code == cli.EXIT_USAGE
    assert f"argument {flag}" in err and ("out of range" in err or "is not" in err), err
    assert "Traceback" not in err


def test_tune_work_dir_naming_a_file(capsys, tmp_path, recipe_file):
    (tmp_path / "db").write_text("mine")
    code, _, err = run_cli(capsys, "tune", "tiny_cnn", "--recipe", recipe_file, "--work-dir", tmp_path / "db",
                           "--trials", "1")
    assert code == 4 and "TuningError" in one_line(err) and "db' is a file" in err
    assert (tmp_path / "db").read_text() == "mine"


def test_run_refuses_nan_input_unless_allowed(capsys, tmp_path, export):
    x = np.random.default_rng(0).random((1, 1, 28, 28)).astype(np.float32)
    x[0, 0, 0, :3] = np.nan
    x[0, 0, 1, 0] = -np.inf
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(capsys, "run", export, tmp_path / "x.npy", "--repeat", "1")
    line = one_line(err)
    assert code == 1 and "QuantizationError" in line and "input 'x' holds 3 NaN and 1 inf" in line
    assert "pass --allow-nonfinite to run anyway" in line
    code, out, _ = run_cli(capsys, "run", export, tmp_path / "x.npy", "--repeat", "1", "--allow-nonfinite", "--json")
    assert code == 0 and json.loads(out)["output_shape"] == [1, 10]


def test_bench_baseline_of_another_model_is_refused(capsys, export):
    code, _, err = run_cli(capsys, "bench", export, "--repeat", "1", "--baseline", "resnet18")
    assert code == 1 and "--baseline 'resnet18' takes input shape [1, 3, 224, 224]; the export takes [1, 1, 28, 28]" \
        in one_line(err)
    code, _, err = run_cli(capsys, "bench", export, "--repeat", "1", "--baseline", "fmnist_resnet")
    assert code == 1 and "--baseline 'fmnist_resnet' has" in one_line(err) and "parameters" in err
    code, out, _ = run_cli(capsys, "bench", export, "--repeat", "1", "--baseline", "tiny_cnn", "--json")
    assert code == 0 and json.loads(out)["speedup_vs_torch_fp32"] > 0


def test_run_of_an_export_with_an_edited_manifest(capsys, tmp_path, export):
    import shutil

    copy = shutil.copytree(export, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["inputs"][0]["shape"] = [1, 1, 32, 32]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    code, _, err = run_cli(capsys, "run", copy, tmp_path / "x.npy")
    assert code == 1 and "ExportError" in one_line(err) and "manifest.json was modified after export" in err


def test_os_errors_on_user_paths_are_bad_input_not_internal(capsys, tmp_path, export):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(capsys, "run", export, tmp_path / "x.npy", "--repeat", "1",
                           "--output", tmp_path / "afile" / "y.npy")
    assert code == 1 and "internal error" not in one_line(err) and "afile" in err

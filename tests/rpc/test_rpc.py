"""Deployment over TVM RPC on localhost: a tracker and boards started by PID, stopped by PID.

One tracker with boards ``cpu``, ``fpga`` (simulator runtime, pynq_z1) and two ``tune`` boards
is shared by the module (starting TVM processes dominates the cost). Remote outputs are compared
bit for bit with ``tvm_qnn.load(dir).run`` in this process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from tvm_qnn import rpc
from tvm_qnn.rpc import client as rpc_remote
from tvm_qnn.errors import ExportError, RemoteError

pytestmark = pytest.mark.rpc

FAULT_BOUND_S = 45.0  # a dead board must surface as RemoteError well within this


def _our_servers():
    """Descendants of this test process that are RPC trackers or boards."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "tvm.exec.rpc_tracker" in cmdline or "tvm_qnn serve" in cmdline:
            found.append(proc.pid)
    return found


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """cpu and fpga exports of a PTQ-quantized tiny CNN (w2a2 k-quantile) plus an input."""
    import torch

    import tvm_qnn
    from tvm_qnn import models
    from tvm_qnn.train import ptq

    torch.manual_seed(0)
    model = models.tiny_cnn().eval()
    x = models.example_input("tiny_cnn", batch=1)
    batches = [(models.example_input("tiny_cnn", batch=8, seed=s), torch.zeros(8, dtype=torch.long))
               for s in range(2)]
    recipe = ptq(model, batches, w_bits=2, a_bits=2, batches=2, model_name="tiny_cnn")
    mod, params = tvm_qnn.from_torch(model, x)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    root = tmp_path_factory.mktemp("exports")
    dirs, compiled = {}, {}
    for target in ("cpu", "fpga"):
        compiled[target] = tvm_qnn.compile(qmod, target=target)
        dirs[target] = compiled[target].export(root / target)
    return {"dirs": dirs, "compiled": compiled, "x": x.numpy(), "qmod": qmod, "root": root}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    boards = [("cpu", None), ("fpga", "pynq_z1"), ("tune", None), ("tune", None)]
    log_dir = tmp_path_factory.mktemp("rpc-logs")
    before = set(_our_servers())
    with rpc.local_cluster(boards, log_dir=log_dir) as started:
        yield started
        pids = started.all_pids()
    # no processes left behind: every PID we saw (servers and their session children) is gone
    time.sleep(0.5)
    assert [pid for pid in pids if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE] == []
    assert set(_our_servers()) - before == set()


def _local(export_dir, x):
    import tvm_qnn

    return tvm_qnn.load(export_dir).run(x)


def test_remote_cpu_run_equals_local_bit_for_bit(cluster, exports):
    x = exports["x"]
    result = rpc.remote(exports["dirs"]["cpu"], cluster.tracker_address, "cpu", inputs=x,
                        timeout_s=120)
    local = _local(exports["dirs"]["cpu"], x)
    assert result.output.dtype == local.dtype and result.output.shape == local.shape
    assert np.array_equal(result.output, local)
    assert result.key == "cpu" and result.board == cluster.boards_for("cpu")[0].address
    assert result.mean_ms > 0 and len(result.results_ms) == 3


def test_compiled_model_remote_fpga_equals_local_bit_for_bit(cluster, exports):
    import tvm_qnn

    x = exports["x"]
    model = exports["compiled"]["fpga"]  # CompiledModel.remote exports it, then rpc.remote
    result = model.remote(cluster.tracker_address, "fpga", inputs=x, timeout_s=180)
    assert np.array_equal(result.output, model.run(x))
    assert np.array_equal(result.output, tvm_qnn.load(exports["dirs"]["fpga"]).run(x))
    assert result.board == cluster.boards_for("fpga")[0].address


def test_loaded_model_runs_remotely(cluster, exports):
    import tvm_qnn

    x = exports["x"]
    loaded = tvm_qnn.load(exports["dirs"]["cpu"])  # uploads the directory it was loaded from
    result = loaded.remote(cluster.tracker_address, "cpu", inputs=x, timeout_s=180)
    assert np.array_equal(result.output, loaded.run(x))


def test_demo_remote_run_on_running_boards(cluster, exports):
    summaries = rpc.demo_remote_run([exports["dirs"]["cpu"], exports["dirs"]["fpga"]],
                                    inputs=exports["x"], tracker=cluster.tracker_address,
                                    progress=False)
    assert [s["key"] for s in summaries] == ["cpu", "fpga"]
    assert all(s["identical"] and s["mean_ms"] > 0 for s in summaries)


def test_fpga_export_refused_by_a_board_without_accelerator(cluster, exports):
    with pytest.raises(RemoteError, match=r"board 127\.0\.0\.1:\d+ key 'cpu'.*fpga"):
        rpc.remote(exports["dirs"]["fpga"], cluster.tracker_address, "cpu",
                   inputs=exports["x"], timeout_s=60)


def test_fpga_export_for_another_core_is_refused(cluster, exports):
    import tvm_qnn
    from vta_ext import HwConfig

    other = tvm_qnn.compile(exports["qmod"], target=HwConfig.preset("ultrascale_plus"))
    directory = other.export(exports["root"] / "fpga-ultrascale")
    with pytest.raises(RemoteError, match=r"key 'fpga'.*'ultrascale_plus'.*'pynq_z1'"):
        rpc.remote(directory, cluster.tracker_address, "fpga", inputs=exports["x"], timeout_s=60)


def test_version_mismatch_is_refused_with_board_and_key(cluster, exports, tmp_path):
    old = shutil.copytree(exports["dirs"]["cpu"], tmp_path / "old")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["versions"]["tvm_qnn"] = "0.0.1"
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RemoteError, match=r"board 127\.0\.0\.1:\d+ key 'cpu'.*tvm_qnn 0\.0\.1"):
        rpc.remote(old, cluster.tracker_address, "cpu", inputs=exports["x"], timeout_s=60)


def test_corrupt_upload_is_detected_on_the_board(cluster, exports, monkeypatch):
    honest = rpc_remote.read_for_upload

    def flip_one_byte(path):
        data = bytearray(honest(path))
        data[len(data) // 2] ^= 0x01
        return bytes(data)

    monkeypatch.setattr(rpc_remote, "read_for_upload", flip_one_byte)
    with pytest.raises(RemoteError, match=r"key 'cpu': upload of .* is corrupt"):
        rpc.remote(exports["dirs"]["cpu"], cluster.tracker_address, "cpu",
                   inputs=exports["x"], timeout_s=60)


def test_locally_corrupt_export_is_an_export_error(exports, tmp_path):
    broken = shutil.copytree(exports["dirs"]["cpu"], tmp_path / "broken")
    library = broken / "model.so"
    data = bytearray(library.read_bytes())
    data[-1] ^= 0xFF
    library.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="model.so"):
        rpc.remote(broken, "127.0.0.1:9", "cpu", inputs=exports["x"], timeout_s=10)


def test_unknown_key_and_unreachable_tracker_fail_fast(cluster, exports):
    start = time.monotonic()
    with pytest.raises(RemoteError, match=r"no board with key 'gpu'.*cpu"):
        rpc.remote(exports["dirs"]["cpu"], cluster.tracker_address, "gpu", inputs=exports["x"])
    unused = rpc.free_port()
    with pytest.raises(RemoteError, match=rf"tracker 127\.0\.0\.1:{unused} is unreachable.*key 'cpu'"):
        rpc.remote(exports["dirs"]["cpu"], f"127.0.0.1:{unused}", "cpu", inputs=exports["x"])
    assert time.monotonic() - start < 20


def _tar_kernel(tmp_path):
    """A tiny compiled kernel in MetaSchedule's artifact format (tar), and its argument infos."""
    import tvm
    from tvm import te
    from tvm.s_tir.meta_schedule.arg_info import TensorInfo
    from tvm.support.tar import tar

    from tvm_qnn.targets import host_target

    a = te.placeholder((256,), "float32", name="a")
    b = te.compute((256,), lambda i: a[i] * 2.0 + 1.0, name="b")
    library = tvm.compile(tvm.IRModule({"main": te.create_prim_func([a, b])}),
                          target=tvm.target.Target(host_target()))
    path = tmp_path / "candidate.tar"
    library.export_library(str(path), fcompile=tar)
    return str(path), [TensorInfo("float32", [256]), TensorInfo("float32", [256])]


def test_metaschedule_rpc_runner_keeps_measuring_when_one_of_two_boards_dies(cluster, tmp_path):
    """What tvm_qnn.tune(rpc=(tracker, key)) relies on: MetaSchedule's RPCRunner asks the
    tracker for a board per candidate, so when one of the boards under the key dies the next
    candidates are measured on the survivor."""
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, RPCConfig, RPCRunner, RunnerInput

    host, port = rpc.parse_address(cluster.tracker_address)
    runner = RPCRunner(rpc_config=RPCConfig(tracker_host=host, tracker_port=port,
                                            tracker_key="tune", session_timeout_sec=60),
                       evaluator_config=EvaluatorConfig(number=3, repeat=1, min_repeat_ms=1),
                       max_workers=1)
    path, arg_infos = _tar_kernel(tmp_path)
    candidates = [RunnerInput(path, "cpu", arg_infos) for _ in range(2)]

    def measured(batch):
        results = [future.result() for future in runner.run(batch)]
        return [r.error_msg for r in results if r.error_msg], [r for r in results if r.run_secs]

    errors, ok = measured(candidates)
    assert not errors and len(ok) == 2
    boards = cluster.boards_for("tune")
    boards[0].stop()
    assert boards[1].alive()
    for _round in range(2):  # every later candidate lands on the survivor
        errors, ok = measured(candidates)
        assert not errors and len(ok) == 2
        assert all(float(s) > 0 for r in ok for s in r.run_secs)


def test_board_killed_mid_run_raises_remote_error_in_bounded_time(cluster, exports):
    board = cluster.boards_for("cpu")[0]
    raised = {}

    def kill_when_running():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if board.descendants():  # the session process exists: the run is on the board
                time.sleep(1.0)
                raised["killed_at"] = time.monotonic()
                board.stop()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    with pytest.raises(RemoteError) as info:
        # ~forever on the board: 3 repeats of >= 60 s each
        rpc.remote(exports["dirs"]["cpu"], cluster.tracker_address, "cpu", inputs=exports["x"],
                   timeout_s=300, min_repeat_ms=60_000)
    failed_at = time.monotonic()
    killer.join(timeout=5)
    assert "killed_at" in raised
    assert failed_at - raised["killed_at"] < FAULT_BOUND_S
    assert board.address in str(info.value) and "key 'cpu'" in str(info.value)


def test_watchdog_bounds_a_hung_call():
    start = time.monotonic()
    with pytest.raises(RemoteError, match=r"board 127\.0\.0\.1:1 key 'x': no answer within 1 s"):
        rpc.run_with_watchdog(lambda: time.sleep(30), 1.0, "board 127.0.0.1:1 key 'x'")
    assert time.monotonic() - start < 5


def test_stop_process_tree_ends_children_too():
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = psutil.Process(parent.pid).children()[0].pid
        stopped = rpc.stop_process_tree(parent.pid, timeout_s=5)
        parent.wait(timeout=5)
        assert set(stopped) == {parent.pid, child}
        assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.slow
def test_tune_over_rpc_continues_when_one_of_two_boards_dies(exports, tmp_path):
    """tvm_qnn.tune(rpc=(tracker, key)) end to end: the first board that receives a candidate is
    killed mid-measurement; tuning finishes on the other and records a verified schedule."""
    import tvm_qnn

    with rpc.local_cluster([("tune", None), ("tune", None)]) as tuning_cluster:
        boards = tuning_cluster.boards
        killed = {}

        def kill_first_busy_board():
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline and not killed:
                for board in boards:
                    if board.descendants():  # a session: a candidate is being measured
                        killed["address"] = board.address
                        board.stop()
                        return
                time.sleep(0.05)

        watcher = threading.Thread(target=kill_first_busy_board, daemon=True)
        watcher.start()
        report = tvm_qnn.tune(exports["qmod"], "cpu", trials=4, cost_model="random",
                              work_dir=tmp_path / "tune",
                              rpc=(tuning_cluster.tracker_address, "tune"))
        watcher.join(timeout=5)
        assert killed, "no candidate ever reached a board"
        assert [b.alive() for b in boards].count(True) == 1
        assert report.results and all(r.verified for r in report.results)

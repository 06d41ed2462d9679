"""Tutorial 5: deploy over TVM RPC — a tracker and two boards (a CPU board and an FPGA board
running the simulator) on localhost, remote runs and timing, checked against local runs.

    python tutorials/05_rpc_deploy.py          # fmnist_resnet
    python tutorials/05_rpc_deploy.py --fast   # tiny CNN (CI)

On real hardware the same three commands run on different machines (only the addresses change):

    python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190
    tvm-qnn serve --host 0.0.0.0 --port 9091 --tracker TRACKER:9190 --key cpu
    tvm-qnn serve --host 0.0.0.0 --port 9092 --tracker TRACKER:9190 --key fpga --fpga pynq_z1

and clients ask the tracker for a board by key (``tvm-qnn run --rpc TRACKER:9190 --key fpga``).
This tutorial binds everything to 127.0.0.1 and stops every process it started by PID.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import tvm_qnn
from tvm_qnn import models, rpc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny model (CI)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    name = "tiny_cnn" if args.fast else "fmnist_resnet"

    # 1. a quantized model compiled for both targets and exported (library + recipe + manifest
    #    with SHA-256 checksums: what gets uploaded to a board)
    model = models.get_model(name).eval()
    x = models.example_input(name, batch=1)
    mod, params = tvm_qnn.from_torch(model, x)
    calibration = models.example_input(name, batch=16, seed=1).numpy()
    recipe = tvm_qnn.calibrate(mod, params, calibration, w_bits=2, a_bits=2, max_batches=16)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    with tempfile.TemporaryDirectory(prefix="tvm-qnn-tutorial5-") as scratch:
        exports = {target: tvm_qnn.compile(qmod, target=target).export(Path(scratch) / target)
                   for target in ("cpu", "fpga")}
        deploy(exports, x.numpy())
    print("all boards and the tracker stopped")
    return 0


def deploy(exports, x):
    """Start the boards, run both exports remotely, compare, stop everything."""
    # 2. a tracker and two boards on free localhost ports; the context manager stops them all
    #    (children included) even if something below fails
    with rpc.local_cluster([("cpu", None), ("fpga", "pynq_z1")]) as cluster:
        print(f"tracker {cluster.tracker_address}; boards: "
              + ", ".join(board.describe() for board in cluster.boards))
        print(rpc.tracker_summary(cluster.tracker_address)["queue_info"])

        # 3. run each export on the board of its kind: the client checks versions, uploads
        #    with checksums verified on the board, runs and times with time_evaluator there
        for target, key in (("cpu", "cpu"), ("fpga", "fpga")):
            remote = rpc.remote(exports[target], cluster.tracker_address, key, inputs=x,
                                timeout_s=180, repeat=3)
            local = tvm_qnn.load(exports[target]).run(x)
            same = np.array_equal(remote.output, local)
            print(f"{target:4s} on board {remote.board} (key {key}): {remote.mean_ms:.3f} ms "
                  f"± {remote.std_ms:.3f}, top-1 {int(remote.output.argmax())}, "
                  f"bit-identical to the local run: {same}")
            assert same

        # 4. faults are errors, not hangs: asking for a key nobody serves
        try:
            rpc.remote(exports["cpu"], cluster.tracker_address, "gpu", inputs=x)
        except tvm_qnn.errors.RemoteError as err:
            print(f"as expected: {err}")


if __name__ == "__main__":
    raise SystemExit(main())

"""Tutorial 4: tune the bit-serial CPU kernels with MetaSchedule and a BOPs-aware cost model.

    python tutorials/04_tune_bitserial.py          # fmnist_resnet, 32 trials per kernel
    python tutorials/04_tune_bitserial.py --fast   # one kernel, 2 trials (CI)
    python tutorials/04_tune_bitserial.py --rpc 127.0.0.1:9190 --key cpu   # measure on boards

Without tuning, ``compile(target="cpu")`` uses a hand schedule for every kernel. ``tune`` searches
each kernel's schedule space (tiling of pixels/channels, words per vector, unroll, parallel axis),
checks every winner bit-exactly against the hand-scheduled kernel before recording it, and
``compile(..., tuning=work_dir)`` picks the records up (hand schedule where there is none).
"""

import argparse
import tempfile

import numpy as np
import torch

import tvm_qnn
from tvm_qnn import models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="one kernel, 2 trials (CI)")
    parser.add_argument("--trials", type=int, default=None, help="measured schedules per kernel")
    parser.add_argument("--rpc", default=None, metavar="HOST:PORT", help="tracker of RPC boards")
    parser.add_argument("--key", default="cpu", help="board key at the tracker")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    name = "tiny_cnn" if args.fast else "fmnist_resnet"
    trials = args.trials or (2 if args.fast else 32)

    model = models.get_model(name).eval()
    x = models.example_input(name, batch=1)
    mod, params = tvm_qnn.from_torch(model, x)
    calibration = models.example_input(name, batch=16, seed=1).numpy()
    fp32_layers = "auto"
    if args.fast:  # keep one quantized conv: one kernel to tune
        fp32_layers = ["conv1.weight", "fc1.weight", "fc2.weight"]
    recipe = tvm_qnn.calibrate(mod, params, calibration, w_bits=2, a_bits=2,
                               fp32_layers=fp32_layers, max_batches=16)
    qmod = tvm_qnn.quantize(mod, params, recipe)

    before = tvm_qnn.compile(qmod, target="cpu")
    repeat = 5 if args.fast else 20

    with tempfile.TemporaryDirectory(prefix="tvm-qnn-tune-") as work_dir:
        rpc = (args.rpc, args.key) if args.rpc else None
        report = tvm_qnn.tune(qmod, "cpu", trials=trials,
                              cost_model="random" if args.fast else "bops-xgb",
                              work_dir=work_dir, rpc=rpc)
        print(report.table())
        after = tvm_qnn.compile(qmod, target="cpu", tuning=work_dir)
        # measured in alternation, best of 3 rounds each, so machine noise hits both alike
        before_ms, after_ms = (min(rounds) for rounds in zip(*[
            (before.benchmark(repeat=repeat)["mean_ms"], after.benchmark(repeat=repeat)["mean_ms"])
            for _ in range(3)]))
        print(f"before tuning (hand schedules): {before_ms:.4f} ms")
        print(f"after tuning ({trials} trials per kernel): {after_ms:.4f} ms "
              f"({before_ms / after_ms:.2f}x the hand schedules)")
        same = np.array_equal(before.run(x.numpy()), after.run(x.numpy()))
        print(f"tuned and hand-scheduled models give identical outputs: {same}")
        assert same
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

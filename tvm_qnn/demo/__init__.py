"""``python -m tvm_qnn.demo``: Fashion-MNIST, fp32 -> UNIQ w2a2 QAT -> recipe -> cpu/fpga -> RPC.

The demo is a list of named steps (``STEPS``) that share one ``state`` dict; later issues append
steps (compile, run on TVM, FPGA simulation, RPC) with :func:`add_step` or by extending the list.
Each step reads what earlier steps put in ``state`` and adds its own keys:

=============  ==========================================================================
step           adds to ``state``
=============  ==========================================================================
data           ``train_loader``, ``test_loader``, ``calibration`` (list of batches)
fp32           ``fp32_model`` (trained, BN folded, eval), ``fp32_acc``
qat            ``qat_model``, ``recipe`` (tvm_qnn.recipe.Recipe), ``float_model`` (the BN-folded
               float model to import with ``tvm_qnn.from_torch``), ``recipe_path``
accuracy       ``quant_model`` (torch fake-quant of float_model + recipe), ``quant_acc``
bops           ``bops_fp32``, ``bops_quant`` (BopsTable)
plot           ``plot_path``
=============  ==========================================================================

Then ``tvm_qnn.demo.deploy``'s steps (import, compile_cpu, speed, fpga, export, rpc, summary) and,
before the summary, ``tvm_qnn.demo.pretrained`` (EfficientNet-Lite1 w8a8 post-training).

Trained models are reused on re-run: the fp32 model from the baseline cache
(``train.baseline``, the best finished one) or ``results/checkpoints/`` or ``<out>/fp32.pt``, and
the QAT run from ``<out>/qat-*.pt``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from dataclasses import dataclass

import torch

from tvm_qnn import data, models
from tvm_qnn.bops import bops
from tvm_qnn.demo.deploy import STEPS as DEPLOY_STEPS
from tvm_qnn.demo.pretrained import step_pretrained
from tvm_qnn.errors import QnnError
from tvm_qnn.recipe import save as save_recipe

INPUT_SHAPE = (1, 28, 28)
SHARED_FP32_CHECKPOINT = os.path.join("results", "checkpoints", "fmnist_resnet_fp32.pt")


@dataclass(frozen=True)
class DemoOptions:
    out_dir: str = os.path.join("results", "demo")
    data_root: str | None = None
    fast: bool = False  # a few hundred images: a smoke test of the steps
    # sized for `make demo` in about 10 minutes on 2 cores from a fresh clone (fp32 training
    # included); benchmarks/accuracy.py trains longer for the figures in the README
    fp32_epochs: int = 2
    qat_train_limit: int | None = 24000
    w_bits: int = 2
    a_bits: int = 2
    w_scheme: str = "kquantile"
    qat_lr: float = 0.003
    threads: int | None = None
    progress: bool = True

    @property
    def tag(self):
        return f"w{self.w_bits}a{self.a_bits}-{self.w_scheme}"


def _finished_model_state(path):
    """Model state of a finished Trainer checkpoint, else None."""
    if not os.path.exists(path):
        return None
    state = torch.load(path, weights_only=False)
    return state["model"] if state.get("epoch", 0) >= state.get("epochs", 1) else None


def step_data(state, options):
    limit_train, limit_test = (2048, 1000) if options.fast else (None, None)
    x_train, y_train = data.load_fashion_mnist(options.data_root, "train", limit_train)
    x_test, y_test = data.load_fashion_mnist(options.data_root, "test", limit_test)
    state["train_loader"] = data.make_loader(x_train, y_train, 128, shuffle=True)
    qat_limit = 1024 if options.fast else options.qat_train_limit
    state["qat_loader"] = data.make_loader(x_train[:qat_limit], y_train[:qat_limit], 128, shuffle=True)
    state["test_loader"] = data.make_loader(x_test, y_test, 500)
    # own seeded shuffle: the clamps do not depend on whether training ran before
    state["calibration"] = list(itertools.islice(data.make_loader(x_train, y_train, 128, shuffle=True, seed=1), 8))
    print(f"Fashion-MNIST: {len(y_train)} train / {len(y_test)} test images")


def step_fp32(state, options):
    from tvm_qnn.train import TrainConfig, Trainer, evaluate, fold_batchnorm

    from tvm_qnn.train.baseline import cached_baselines

    model = models.fmnist_resnet()
    shared = None if options.fast else _finished_model_state(SHARED_FP32_CHECKPOINT)
    cached = None if options.fast else cached_baselines("fmnist_resnet")
    if cached:  # the trained, config-keyed baseline (train.baseline), best cached one
        model, info = cached[0]
        print(f"fp32: reusing the cached baseline {info['path']} (test acc {100 * info['test_acc']:.2f}%)")
    elif shared is not None:
        model.load_state_dict(shared)
        print(f"fp32: reusing {SHARED_FP32_CHECKPOINT}")
    else:
        epochs = 1 if options.fast else options.fp32_epochs
        Trainer(model, state["train_loader"], None, TrainConfig(epochs=epochs, lr=0.05),
                checkpoint=os.path.join(options.out_dir, "fp32.pt"), progress=options.progress, desc="fp32").fit()
    state["fp32_model"] = fold_batchnorm(model)
    state["fp32_acc"] = evaluate(state["fp32_model"], state["test_loader"])
    print(f"fp32 test accuracy: {100 * state['fp32_acc']:.2f}%")


def step_qat(state, options):
    from tvm_qnn.train import (GradualSchedule, QuantConfig, TrainConfig, Trainer, calibrate_clamps, export_float_model,
                        export_recipe, prepare_qat)

    qat = prepare_qat(state["fp32_model"], QuantConfig(options.w_bits, options.a_bits, options.w_scheme,
                                                       per_channel=True))
    calibrate_clamps(qat, state["calibration"])
    # straight-through QAT from the first step (no noise stage): at w2a2 a one-epoch UNIQ noise stage
    # over all layers at once cost ~20 pt in the accuracy benchmark (results/accuracy.json)
    schedule = GradualSchedule.for_model(qat, n_stages=1, epochs_per_stage=0, final_epochs=2)
    Trainer(qat, state["qat_loader"], None, TrainConfig(lr=options.qat_lr, weight_decay=1e-4),
            checkpoint=os.path.join(options.out_dir, f"qat-{options.tag}-ste2.pt"), schedule=schedule,
            progress=options.progress, desc=f"QAT {options.tag}").fit()
    state["qat_model"] = qat.eval()
    state["recipe"] = export_recipe(qat, "fmnist_resnet")
    state["float_model"] = export_float_model(qat)
    state["recipe_path"] = save_recipe(state["recipe"], os.path.join(options.out_dir, f"recipe-{options.tag}.json"))
    torch.save(state["float_model"].state_dict(), os.path.join(options.out_dir, f"float-{options.tag}.pt"))
    print(f"recipe written to {state['recipe_path']}")


def step_accuracy(state, options):
    from tvm_qnn.train import apply_recipe, evaluate

    state["quant_model"] = apply_recipe(state["float_model"], state["recipe"])
    state["quant_acc"] = evaluate(state["quant_model"], state["test_loader"])
    print(f"accuracy: fp32 {100 * state['fp32_acc']:.2f}%  vs  {options.tag} (torch fake-quant) "
          f"{100 * state['quant_acc']:.2f}%")


def step_bops(state, options):
    state["bops_fp32"] = bops(state["fp32_model"], INPUT_SHAPE)
    state["bops_quant"] = bops(state["float_model"], INPUT_SHAPE, state["recipe"])
    print(state["bops_quant"].to_markdown())
    print(f"BOPs: fp32 {state['bops_fp32'].total / 1e9:.3f} G -> {options.tag} {state['bops_quant'].total / 1e9:.3f} G "
          f"({state['bops_fp32'].total / state['bops_quant'].total:.1f}x fewer)")


def step_plot(state, options):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    bench = os.path.join("results", "accuracy.json")
    if os.path.exists(bench):  # the benchmark's variants as context
        with open(bench, encoding="utf-8") as handle:
            rows = json.load(handle)["results"]
        for kind, color in (("ptq", "tab:orange"), ("qat", "tab:blue")):
            chosen = [r for r in rows if r["kind"] == kind]
            ax.scatter([r["gbops"] for r in chosen], [100 * r["accuracy"] for r in chosen], c=color, alpha=0.4,
                       label=f"benchmark {kind.upper()}")
    ax.scatter([state["bops_fp32"].total / 1e9], [100 * state["fp32_acc"]], c="k", marker="*", s=120, label="demo fp32")
    ax.scatter([state["bops_quant"].total / 1e9], [100 * state["quant_acc"]], c="tab:red", marker="o", s=80,
               label=f"demo {options.tag}")
    ax.set_xscale("log")
    ax.set_xlabel("GBOPs per image (log)")
    ax.set_ylabel("test top-1 (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    state["plot_path"] = os.path.join(options.out_dir, "accuracy_vs_bops.png")
    fig.savefig(state["plot_path"], dpi=120)
    plt.close(fig)
    print(f"plot written to {state['plot_path']}")


STEPS = [("data", step_data), ("fp32", step_fp32), ("qat", step_qat), ("accuracy", step_accuracy),
         ("bops", step_bops), ("plot", step_plot)] + DEPLOY_STEPS  # import, compile cpu/fpga, export, rpc, summary


def add_step(name, function, after=None, steps=STEPS):
    """Insert a step ``function(state, options)`` after step ``after`` (default: at the end)."""
    names = [n for n, _ in steps]
    if name in names:
        raise QnnError(f"demo step {name!r} already exists; steps: {names}")
    if after is None:
        steps.append((name, function))
    elif after in names:
        steps.insert(names.index(after) + 1, (name, function))
    else:
        raise QnnError(f"demo step {after!r} does not exist; steps: {names}")
    return steps


add_step("pretrained", step_pretrained, after="rpc")  # a pretrained ImageNet network, before the summary


def run(options=DemoOptions(), steps=None, state=None):
    """Run ``steps`` (default all of ``STEPS``) in order on a shared ``state``; returns the state."""
    if options.threads:
        torch.set_num_threads(options.threads)
    os.makedirs(options.out_dir, exist_ok=True)
    state = {} if state is None else state
    state["options"] = options
    for name, function in (steps or STEPS):
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        function(state, options)
        print(f"   ({name}: {time.perf_counter() - start:.1f} s)", flush=True)
    return state


def main(argv=None):
    parser = argparse.ArgumentParser(description="tvm-qnn demo: QAT on Fashion-MNIST, accuracy and BOPs")
    parser.add_argument("--out", default=DemoOptions.out_dir)
    parser.add_argument("--data", default=None, help="Fashion-MNIST directory (default: Debian location)")
    parser.add_argument("--fast", action="store_true", help="tiny smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy machine)")
    parser.add_argument("--steps", default=None, help="comma-separated subset of: " + ",".join(n for n, _ in STEPS))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    options = DemoOptions(out_dir=args.out, data_root=args.data, fast=args.fast, threads=args.threads,
                          progress=not args.no_progress)
    steps = STEPS
    if args.steps:
        wanted = args.steps.split(",")
        unknown = sorted(set(wanted) - {n for n, _ in STEPS})
        if unknown:
            raise SystemExit(f"unknown demo step(s) {unknown}; steps: {[n for n, _ in STEPS]}")
        steps = [(n, f) for n, f in STEPS if n in wanted]
    run(options, steps)


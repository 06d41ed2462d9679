"""Accuracy vs BOPs of fmnist_resnet on Fashion-MNIST: fp32, PTQ and QAT (NICE / UNIQ).

    python benchmarks/accuracy.py            # full: 60k train / 10k test (bounded by --budget-min)
    python benchmarks/accuracy.py --fast     # tiny smoke version (a few hundred images, ~1-2 min)

Writes ``results/accuracy.json`` (accuracy, BOPs, wall time per variant, targets met or missed)
and ``results/accuracy_vs_bops.png``. The fp32 model is trained once and cached
(``results/checkpoints/fmnist_resnet_fp32.pt``, a resumable Trainer checkpoint); QAT runs start
from its BN-folded weights and are cached too, so a re-run only computes what is missing.

Variants (per-channel LUTs: with BN folded into the convs, output channels differ in scale):
NICE w3a3 uniform, UNIQ w2a2 / w4a4 / w1a2 k-quantile; each as PTQ (calibrated clamps, no
training) and QAT (gradual schedule: noise stage(s), then an all-quantized STE phase).
Targets: w3a3 >= fp32 - 0.5 pt, w2a2 >= fp32 - 1.5 pt, QAT >= PTQ + 5 pt at w2a2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

import torch

from tvm_qnn import data, models
from tvm_qnn.bops import bops
from tvm_qnn.recipe import save as save_recipe
from tvm_qnn.train import (GradualSchedule, QuantConfig, TrainConfig, Trainer, apply_recipe, calibrate_clamps,
                           evaluate, export_float_model, export_recipe, fold_batchnorm, prepare_qat, ptq)

VARIANTS = (  # (label, w_bits, a_bits, scheme)
    ("NICE w3a3 uniform", 3, 3, "uniform"),
    ("UNIQ w2a2 kquantile", 2, 2, "kquantile"),
    ("UNIQ w4a4 kquantile", 4, 4, "kquantile"),
    ("UNIQ w1a2 kquantile", 1, 2, "kquantile"),
)
INPUT_SHAPE = (1, 28, 28)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny smoke run (subset of the data, 1 epoch each)")
    parser.add_argument("--data", default=None, help="Fashion-MNIST directory (default: the Debian location)")
    parser.add_argument("--out", default="results", help="output directory")
    parser.add_argument("--fp32-epochs", type=int, default=3)
    parser.add_argument("--stages", type=int, default=1, help="gradual stages (noise epochs per stage below)")
    parser.add_argument("--epochs-per-stage", type=int, default=1)
    parser.add_argument("--final-epochs", type=int, default=1)
    parser.add_argument("--qat-lr", type=float, default=0.003)
    parser.add_argument("--qat-train-limit", type=int, default=24000, help="train QAT on the first N images only (0 = all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budget-min", type=float, default=60.0, help="skip remaining QAT runs after this")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: on a shared, oversubscribed machine OpenMP spinning "
                             "made 2 threads 5-10x slower than 1)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated subset of tags, e.g. w2a2-kquantile (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def write_json(path, payload):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)
    os.replace(tmp, path)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"fp32": ("k", "*"), "ptq": ("tab:orange", "s"), "qat": ("tab:blue", "o")}
    for kind, (color, marker) in styles.items():
        rows = [r for r in results if r["kind"] == kind and r.get("accuracy") is not None]
        if rows:
            ax.scatter([r["gbops"] for r in rows], [100 * r["accuracy"] for r in rows], c=color, marker=marker,
                       label=kind.upper(), s=60)
            for r in rows:
                ax.annotate(r["tag"], (r["gbops"], 100 * r["accuracy"]), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("GBOPs per image (UNIQ count, log scale)")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    ax.set_title("fmnist_resnet: accuracy vs BOPs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def targets(results):
    by = {(r["kind"], r["tag"]): r["accuracy"] for r in results if r.get("accuracy") is not None}
    fp32 = by.get(("fp32", "fp32"))
    checks = {}

    def check(name, value, bound):
        if value is not None and bound is not None:
            checks[name] = {"value_pt": round(100 * value, 2), "bound_pt": round(100 * bound, 2),
                            "met": value >= bound, "margin_pt": round(100 * (value - bound), 2)}

    if fp32 is not None:
        check("qat w3a3 >= fp32 - 0.5pt", by.get(("qat", "w3a3-uniform")), fp32 - 0.005)
        check("qat w2a2 >= fp32 - 1.5pt", by.get(("qat", "w2a2-kquantile")), fp32 - 0.015)
    ptq2 = by.get(("ptq", "w2a2-kquantile"))
    check("qat w2a2 >= ptq w2a2 + 5pt", by.get(("qat", "w2a2-kquantile")), None if ptq2 is None else ptq2 + 0.05)
    return checks


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start_all = time.perf_counter()
    progress = not args.no_progress
    out = args.out
    ckpt_dir = os.path.join(out, "checkpoints")
    os.makedirs(ckpt_dir, exist_ok=True)
    os.makedirs(os.path.join(out, "recipes"), exist_ok=True)
    if args.fast:
        train_limit, test_limit, fp32_epochs = 2048, 1000, 1
        qat_limit, prefix = 1024, "fast-"
    else:
        train_limit, test_limit, fp32_epochs = None, None, args.fp32_epochs
        qat_limit, prefix = (args.qat_train_limit or None), ""
    x_train, y_train = data.load_fashion_mnist(args.data, "train", train_limit)
    x_test, y_test = data.load_fashion_mnist(args.data, "test", test_limit)
    train_loader = data.make_loader(x_train, y_train, args.batch_size, shuffle=True)
    qat_loader = train_loader if qat_limit is None else data.make_loader(
        x_train[:qat_limit], y_train[:qat_limit], args.batch_size, shuffle=True)
    test_loader = data.make_loader(x_test, y_test, 500)
    json_path = os.path.join(out, f"{prefix}accuracy.json")
    meta = {"model": "fmnist_resnet", "train_images": len(y_train), "test_images": len(y_test),
            "fp32_epochs": fp32_epochs, "qat_schedule": {"stages": args.stages, "epochs_per_stage": args.epochs_per_stage,
                                                       "final_epochs": args.final_epochs, "lr": args.qat_lr},
            "per_channel": True, "torch_threads": torch.get_num_threads()}
    results = []

    def record(row):
        results.append(row)
        write_json(json_path, {"meta": meta, "results": results, "targets": targets(results),
                               "wall_s_total": time.perf_counter() - start_all})
        print(f"[{row['kind']:>4}] {row['tag']:<16} acc {100 * row['accuracy']:6.2f}%  "
              f"{row['gbops']:8.4f} GBOPs  {row['wall_s']:7.1f} s", flush=True)

    # ---- fp32 (cached, resumable)
    t0 = time.perf_counter()
    model = models.fmnist_resnet()
    Trainer(model, train_loader, test_loader, TrainConfig(epochs=fp32_epochs, lr=0.05),
            checkpoint=os.path.join(ckpt_dir, f"{prefix}fmnist_resnet_fp32.pt"), progress=progress, desc="fp32").fit()
    folded = fold_batchnorm(model)
    record({"kind": "fp32", "tag": "fp32", "accuracy": evaluate(folded, test_loader),
            "gbops": bops(folded, INPUT_SHAPE).total / 1e9, "wall_s": time.perf_counter() - t0})

    # calibration batches from their own seeded shuffle, so PTQ/QAT clamps do not depend on
    # whether the fp32 model was trained in this run or loaded from the cache
    calibration = list(itertools.islice(data.make_loader(x_train, y_train, args.batch_size, shuffle=True, seed=1), 8))
    variants = VARIANTS
    if args.variants:
        wanted = args.variants.split(",")
        known = [f"w{w}a{a}-{s}" for _, w, a, s in VARIANTS]
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; known: {known}")
        variants = [v for v, tag in zip(VARIANTS, known) if tag in wanted]
    for label, w_bits, a_bits, scheme in variants:
        tag = f"w{w_bits}a{a_bits}-{scheme}"
        t0 = time.perf_counter()
        recipe = ptq(folded, calibration, w_bits, a_bits, scheme, per_channel=True, model_name="fmnist_resnet")
        record({"kind": "ptq", "tag": tag, "label": label, "accuracy": evaluate(apply_recipe(folded, recipe), test_loader),
                "gbops": bops(folded, INPUT_SHAPE, recipe).total / 1e9, "wall_s": time.perf_counter() - t0})

    for label, w_bits, a_bits, scheme in variants:
        tag = f"w{w_bits}a{a_bits}-{scheme}"
        elapsed_min = (time.perf_counter() - start_all) / 60
        if elapsed_min > args.budget_min:
            print(f"skipping QAT {tag}: wall-time budget of {args.budget_min} min used ({elapsed_min:.1f} min)")
            meta.setdefault("skipped", []).append(tag)
            continue
        t0 = time.perf_counter()
        # the checkpoint name carries what the Trainer's config check cannot see (data, schedule)
        run_key = (f"n{len(qat_loader.dataset)}-s{args.stages}x{args.epochs_per_stage}+{args.final_epochs}"
                   f"-lr{args.qat_lr:g}")
        qat = prepare_qat(folded, QuantConfig(w_bits, a_bits, scheme, per_channel=True))
        calibrate_clamps(qat, calibration)
        schedule = GradualSchedule.for_model(qat, args.stages, args.epochs_per_stage, args.final_epochs)
        history = Trainer(qat, qat_loader, test_loader, TrainConfig(lr=args.qat_lr, weight_decay=1e-4),
                          checkpoint=os.path.join(ckpt_dir, f"{prefix}qat-{tag}-{run_key}.pt"), schedule=schedule,
                          progress=progress, desc=f"QAT {tag}").fit()
        recipe = export_recipe(qat, "fmnist_resnet")
        save_recipe(recipe, os.path.join(out, "recipes", f"{prefix}{tag}.json"))
        float_model = export_float_model(qat)
        torch.save(float_model.state_dict(), os.path.join(ckpt_dir, f"{prefix}qat-{tag}-float.pt"))
        # accuracy of the exported (float model, recipe) pair: what the compiler gets
        accuracy = evaluate(apply_recipe(float_model, recipe), test_loader)
        record({"kind": "qat", "tag": tag, "label": label, "accuracy": accuracy,
                "gbops": bops(float_model, INPUT_SHAPE, recipe).total / 1e9, "wall_s": time.perf_counter() - t0,
                "history": history})
    plot(results, os.path.join(out, f"{prefix}accuracy_vs_bops.png"))
    summary = targets(results)
    for name, check in summary.items():
        print(f"target {name}: {'met' if check['met'] else 'MISSED'} ({check['value_pt']} vs {check['bound_pt']})")
    print(f"total wall time {time.perf_counter() - start_all:.0f} s; wrote {json_path}")
    return results


if __name__ == "__main__":
    main()

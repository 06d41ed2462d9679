"""Accuracy vs BOPs of fmnist_resnet on Fashion-MNIST: fp32, PTQ and QAT (UNIQ / NICE / LSQ).

    python benchmarks/accuracy.py                      # the six main rows, PTQ + QAT
    python benchmarks/accuracy.py --ptq-only           # fp32 + PTQ rows only (minutes)
    python benchmarks/accuracy.py --compare            # + k-quantile vs uniform vs LSQ at equal BOPs
    python benchmarks/accuracy.py --fast               # tiny smoke version (a few hundred images)
    python benchmarks/accuracy.py --merge --variants w2a2-kquantile --epochs-per-stage 2 --final-epochs 4
                                                       # re-run some rows, keep the others of the JSON

The fp32 model is ``train.baseline.load_baseline()``: the cached, config-keyed baseline (crop +
flip augmentation, cosine LR, weight decay; trained here, with a tqdm bar, when it is not cached).
QAT runs start from its BN-folded weights and are cached as resumable checkpoints
(``results/checkpoints/``), keyed by everything that changes them.

Each row reports two top-1 accuracies on the test set:

* ``accuracy`` -- the float contract: ``apply_recipe(exported float model, recipe)``, what the
  compiler's float kernels compute (to float rounding); k-quantile LUTs are exported on the
  int8 grid of the integer-only mode (``export_recipe(int8_lut=True)``) and uniform (NICE) weights
  are quantized to affine levels on that grid (``QuantConfig(int8_grid=True)``, affine as the
  bit-plane kernels need; ``--no-int8-lut``: neither), so both modes compute the same weights;
  LSQ LUTs keep their learned step (the integer-only mode rounds them);
* ``int_accuracy`` -- the integer-only arithmetic of ``fpga`` / ``cpu integer_only`` (int8 LUT,
  int32 bias, fixed-point requant), simulated in torch (``train.intsim``; its kernels equal
  ``reference.qconv2d_int`` bit for bit, the requant is matched up to the rounding of ``M``),
  and the top-1 agreement of the two.

Writes ``results/accuracy.json`` (rows, per-epoch QAT curves, targets met or missed, wall time)
and ``results/accuracy_vs_bops.png``. Every row records when it was measured (``measured``) and its
own wall time; a QAT row also records the schedule it was trained with (``schedule``). With
``--merge`` the rows of this run replace the rows of the same kind and tag in the existing JSON and
the other rows are kept -- only when that JSON was measured against the same fp32 baseline (key and
accuracy), so every row of the file shares one baseline; ``meta.runs`` lists each run (date, rows,
wall time), ``meta.qat`` keeps the schedule fields common to every QAT row and
``meta.qat_per_row`` the fields in which a row differs from them.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import time

import torch

from tvm_qnn import data
from tvm_qnn.bops import bops
from tvm_qnn.recipe import save as save_recipe
from tvm_qnn.train import (GradualSchedule, QuantConfig, TrainConfig, Trainer, apply_recipe, calibrate_clamps,
                           evaluate, export_float_model, export_recipe, fold_batchnorm, prepare_qat,
                           set_integer_sim)
from tvm_qnn.train.baseline import AugmentedLoader, BaselineConfig, load_baseline

VARIANTS = (  # (label, w_bits, a_bits, scheme)
    ("w8a8 UNIQ", 8, 8, "kquantile"),
    ("w4a8 UNIQ", 4, 8, "kquantile"),
    ("w4a4 UNIQ", 4, 4, "kquantile"),
    ("w3a3 NICE", 3, 3, "uniform"),
    ("w2a2 UNIQ", 2, 2, "kquantile"),
    ("w1a2 UNIQ", 1, 2, "kquantile"),
)
COMPARE = (  # equal BOPs, other weight quantizers
    ("w3a3 UNIQ", 3, 3, "kquantile"),
    ("w3a3 LSQ", 3, 3, "lsq"),
    ("w2a2 NICE", 2, 2, "uniform"),
    ("w2a2 LSQ", 2, 2, "lsq"),
)
INPUT_SHAPE = (1, 28, 28)
# targets: QAT - fp32 bounds (pt) per row; every QAT row at <= 3 bits >= PTQ + 5 pt
QAT_BOUNDS = {"w4a8-kquantile": 0.3, "w3a3-uniform": 0.5, "w2a2-kquantile": 1.0, "w1a2-kquantile": 3.0}
FLOOR_BOUNDS = {"w3a3-uniform": 1.0, "w2a2-kquantile": 2.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny smoke run (subset of the data, 1 epoch each)")
    parser.add_argument("--out", default="results", help="output directory")
    parser.add_argument("--baseline-epochs", type=int, default=BaselineConfig().epochs,
                        help="epochs of the cached fp32 baseline to use (its config key)")
    parser.add_argument("--ptq-only", action="store_true", help="fp32 and PTQ rows only")
    parser.add_argument("--compare", action="store_true", help="add k-quantile / uniform / LSQ rows at equal BOPs")
    parser.add_argument("--stages", type=int, default=2, help="gradual stages")
    parser.add_argument("--epochs-per-stage", type=int, default=1)
    parser.add_argument("--final-epochs", type=int, default=2)
    parser.add_argument("--active", default="quant", choices=("quant", "noise"),
                        help="the stage being quantized trains straight-through or with UNIQ/NICE noise")
    parser.add_argument("--later", default="fp32", choices=("fp32", "noise"),
                        help="layers of later stages: fp32 or noise (NICE)")
    parser.add_argument("--no-integer-final", action="store_true",
                        help="do not simulate the integer arithmetic in the last QAT epoch")
    parser.add_argument("--no-int8-lut", action="store_true",
                        help="export k-quantile LUTs as fitted and quantize uniform weights to symmetric levels, "
                             "not on the integer-only mode's int8 grid")
    parser.add_argument("--distill", type=float, default=0.5, help="distillation weight alpha (0: off)")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--qat-lr", type=float, default=0.003)
    parser.add_argument("--qat-train-limit", type=int, default=0, help="train QAT on the first N images only (0 = all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budget-min", type=float, default=90.0, help="skip remaining QAT runs after this")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: on a shared, oversubscribed machine OpenMP spinning "
                             "made 2 threads 5-10x slower than 1)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated subset of tags, e.g. w2a2-kquantile,w3a3-lsq (default: the main six)")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the rows run here in the existing JSON (same fp32 baseline required)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


KIND_ORDER = {"fp32": 0, "ptq": 1, "qat": 2}


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def load_previous(path, meta, fp32_accuracy):
    """Rows of the JSON at ``path`` to merge into (SystemExit unless it shares this run's baseline)."""
    if not os.path.exists(path):
        return {"meta": {}, "results": []}
    with open(path, encoding="utf-8") as handle:
        previous = json.load(handle)
    old_fp32 = next((r["accuracy"] for r in previous.get("results", []) if r["kind"] == "fp32"), None)
    old_key = previous.get("meta", {}).get("baseline", {}).get("key")
    if old_key != meta["baseline"]["key"] or old_fp32 != fp32_accuracy:
        raise SystemExit(f"--merge: {path} was measured against baseline {old_key} ({old_fp32}), this run against "
                         f"{meta['baseline']['key']} ({fp32_accuracy}): run every row instead of merging")
    for row in previous.get("results", []):
        if row["kind"] == "qat" and "schedule" not in row:
            row["schedule"] = previous["meta"].get("qat")  # written before rows carried their schedule
    return previous


def merged_rows(old_rows, new_rows):
    """``old_rows`` with each row of the same (kind, tag) as a new row replaced by it, new ones added
    (fp32, PTQ, QAT; each kind in the order of ``VARIANTS + COMPARE``)."""
    rows = {(r["kind"], r["tag"]): r for r in old_rows}
    rows.update({(r["kind"], r["tag"]): r for r in new_rows})
    order = {f"w{w}a{a}-{s}": i for i, (_, w, a, s) in enumerate(VARIANTS + COMPARE)}
    return sorted(rows.values(), key=lambda r: (KIND_ORDER.get(r["kind"], 3), order.get(r["tag"], len(order))))


def live_runs(runs):
    """``runs`` (oldest first) without those every row of which a later run measured again: the file
    holds none of their rows, so neither their entry nor their wall time belongs to it."""
    later, live = set(), []
    for run in reversed(runs):
        rows = set(run.get("rows") or [])
        if not rows or rows - later:
            live.append(run)
        later |= rows
    return live[::-1]


def schedule_meta(meta, rows):
    """``meta.qat``: the schedule fields shared by every QAT row; ``meta.qat_per_row``: each row's others."""
    schedules = {r["tag"]: r["schedule"] for r in rows if r["kind"] == "qat" and r.get("schedule")}
    if not schedules:
        return
    first = next(iter(schedules.values()))
    common = {k: v for k, v in first.items() if all(s.get(k) == v for s in schedules.values())}
    per_row = {tag: {k: v for k, v in s.items() if k not in common} for tag, s in schedules.items()}
    meta["qat"] = common
    per_row = {tag: fields for tag, fields in per_row.items() if fields}
    if per_row:
        meta["qat_per_row"] = per_row
    else:
        meta.pop("qat_per_row", None)


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
    by = {(r["kind"], r["tag"]): r for r in results if r.get("accuracy") is not None}
    fp32 = by.get(("fp32", "fp32"), {}).get("accuracy")
    checks = {}

    def check(name, value, bound):
        if value is not None and bound is not None:
            checks[name] = {"value_pt": round(100 * value, 2), "bound_pt": round(100 * bound, 2),
                            "met": value >= bound, "margin_pt": round(100 * (value - bound), 2)}

    if fp32 is not None:
        check("fp32 >= 93.5 (target)", fp32, 0.935)
        check("fp32 >= 93.0 (floor)", fp32, 0.930)
        for tag, points in QAT_BOUNDS.items():
            check(f"qat {tag} >= fp32 - {points}pt (target)", by.get(("qat", tag), {}).get("accuracy"),
                  fp32 - points / 100)
        for tag, points in FLOOR_BOUNDS.items():
            check(f"qat {tag} >= fp32 - {points}pt (floor)", by.get(("qat", tag), {}).get("accuracy"),
                  fp32 - points / 100)
    for (kind, tag), row in by.items():
        if kind == "qat" and row["w_bits"] <= 3 and row["a_bits"] <= 3 and ("ptq", tag) in by:
            check(f"qat {tag} >= ptq + 5pt", row["accuracy"], by[("ptq", tag)]["accuracy"] + 0.05)
        if row.get("int_accuracy") is not None:
            gap = abs(row["int_accuracy"] - row["accuracy"])
            checks[f"{kind} {tag}: |integer - float| <= 0.2pt (target; floor 0.5)"] = {
                "value_pt": round(100 * gap, 2), "bound_pt": 0.2, "met": gap <= 0.002, "floor_met": gap <= 0.005}
    return checks


@torch.no_grad()
def top1_pair(float_model, int_model, loader):
    """``(float top-1, integer-only top-1, agreement)`` over ``loader``."""
    float_model.eval(), int_model.eval()
    float_ok = int_ok = agree = total = 0
    for x, y in loader:
        a, b = float_model(x).argmax(1), int_model(x).argmax(1)
        float_ok += int((a == y).sum())
        int_ok += int((b == y).sum())
        agree += int((a == b).sum())
        total += len(y)
    return float_ok / total, int_ok / total, agree / total


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
        baseline = BaselineConfig(train_limit=2048, epochs=1)
        test_limit, qat_limit, prefix = 1000, 1024, "fast-"
    else:
        baseline = BaselineConfig(epochs=args.baseline_epochs)
        test_limit, qat_limit, prefix = None, (args.qat_train_limit or None), ""
    x_train, y_train = data.load_fashion_mnist(None, "train", baseline.train_limit)
    x_test, y_test = data.load_fashion_mnist(None, "test", test_limit)
    limit = qat_limit or len(y_train)
    qat_loader = AugmentedLoader(data.make_loader(x_train[:limit], y_train[:limit], args.batch_size, shuffle=True),
                                 baseline.crop_padding, baseline.hflip)
    test_loader = data.make_loader(x_test, y_test, 500)
    json_path = os.path.join(out, f"{prefix}accuracy.json")
    schedule_args = {"stages": args.stages, "epochs_per_stage": args.epochs_per_stage,
                     "final_epochs": args.final_epochs, "active": args.active, "later": args.later,
                     "integer_final": not args.no_integer_final}
    meta = {"model": baseline.model, "train_images": len(y_train), "test_images": len(y_test),
            "baseline": {"key": baseline.key, "epochs": baseline.epochs},
            "qat": {**schedule_args, "lr": args.qat_lr, "train_images": limit, "distill_alpha": args.distill,
                    "temperature": args.temperature, "augmentation": "crop+flip"},
            "per_channel": True, "torch_threads": torch.get_num_threads(),
            "integer_only": "torch simulation (train.intsim): int8 LUT, int32 bias, requant up to M rounding",
            "int8_lut_export": not args.no_int8_lut, "uniform_int8_grid": not args.no_int8_lut}
    try:
        from report import machine_info  # provenance (date, CPU, load) when run from benchmarks/

        meta["machine"] = machine_info()
    except Exception:  # noqa: BLE001 - provenance is optional
        pass
    results = []
    previous = None
    this_run = {"date": utc_now(), "rows": [], "wall_s": 0.0, "machine": meta.get("machine")}

    def record(row):
        nonlocal previous
        row["measured"] = utc_now()
        results.append(row)
        if args.merge and previous is None:  # the first row is the fp32 one: check the baseline
            previous = load_previous(json_path, meta, row["accuracy"])
        old = previous or {"meta": {}, "results": []}
        rows = merged_rows(old["results"], results) if args.merge else list(results)
        this_run["rows"] = [f"{r['kind']} {r['tag']}" for r in results]
        this_run["wall_s"] = time.perf_counter() - start_all
        runs = [run for run in old["meta"].get("runs", []) if args.merge] + [this_run]
        if args.merge and not old["meta"].get("runs") and old["results"]:
            runs.insert(0, {"date": old["meta"].get("machine", {}).get("date"), "wall_s": old.get("wall_s_total"),
                            "rows": [f"{r['kind']} {r['tag']}" for r in old["results"]],
                            "machine": old["meta"].get("machine")})
        run_meta = dict(meta, runs=live_runs(runs))
        ran = {r["tag"] for r in results if r["kind"] == "qat"}
        skipped = (set(old["meta"].get("skipped", [])) - ran) | set(meta.get("skipped", []))
        if skipped:
            run_meta["skipped"] = sorted(skipped)
        schedule_meta(run_meta, rows)
        # the wall time of the rows in the file: the sum over the runs that produced them
        write_json(json_path, {"meta": run_meta, "results": rows, "targets": targets(rows),
                               "wall_s_total": sum(run["wall_s"] or 0.0 for run in run_meta["runs"])})
        extra = f"  int {100 * row['int_accuracy']:6.2f}% (agree {100 * row['agreement']:.2f}%)" \
            if row.get("int_accuracy") is not None else ""
        print(f"[{row['kind']:>4}] {row['tag']:<16} acc {100 * row['accuracy']:6.2f}%{extra}  "
              f"{row['gbops']:8.4f} GBOPs  {row['wall_s']:7.1f} s", flush=True)

    # ---- fp32: the cached baseline (trained here when missing)
    t0 = time.perf_counter()
    model, info = load_baseline(baseline, progress=progress)
    folded = fold_batchnorm(model)
    # the baseline's own last-epoch test accuracy (BN folding is exact up to float rounding) unless
    # the test set is a subset of the one it was measured on
    fp32_acc = info["test_acc"] if test_limit is None and info["test_acc"] is not None else evaluate(folded, test_loader)
    record({"kind": "fp32", "tag": "fp32", "label": "fp32", "w_bits": 32, "a_bits": 32,
            "accuracy": fp32_acc, "gbops": bops(folded, INPUT_SHAPE).total / 1e9,
            "wall_s": time.perf_counter() - t0, "baseline_history": info["history"]})

    # calibration batches from their own seeded shuffle (not augmented)
    calibration = list(itertools.islice(data.make_loader(x_train, y_train, args.batch_size, shuffle=True, seed=1), 8))
    catalogue = VARIANTS + COMPARE
    variants = list(VARIANTS + (COMPARE if args.compare else ()))
    if args.variants:
        known = {f"w{w}a{a}-{s}": v for v in catalogue for _, w, a, s in [v]}
        unknown = sorted(set(args.variants.split(",")) - set(known))
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; known: {sorted(known)}")
        variants = [known[tag] for tag in args.variants.split(",")]

    def prepared(w_bits, a_bits, scheme):
        qat = prepare_qat(folded, QuantConfig(w_bits, a_bits, scheme, per_channel=True, int8_grid=not args.no_int8_lut))
        return calibrate_clamps(qat, calibration)

    def measure(kind, label, w_bits, a_bits, scheme, qat, t0, **extra):
        tag = f"w{w_bits}a{a_bits}-{scheme}"
        recipe = export_recipe(qat, "fmnist_resnet", int8_lut=not args.no_int8_lut)
        save_recipe(recipe, os.path.join(out, "recipes", f"{prefix}{kind}-{tag}.json"))
        float_model = apply_recipe(export_float_model(qat), recipe)
        set_integer_sim(qat, True)
        accuracy, int_accuracy, agreement = top1_pair(float_model, qat, test_loader)
        set_integer_sim(qat, False)
        record({"kind": kind, "tag": tag, "label": label, "w_bits": w_bits, "a_bits": a_bits, "scheme": scheme,
                "accuracy": accuracy, "int_accuracy": int_accuracy, "agreement": agreement,
                "gbops": bops(export_float_model(qat), INPUT_SHAPE, recipe).total / 1e9,
                "wall_s": time.perf_counter() - t0, **extra})

    for label, w_bits, a_bits, scheme in variants:
        t0 = time.perf_counter()
        measure("ptq", label, w_bits, a_bits, scheme, prepared(w_bits, a_bits, scheme), t0)

    for label, w_bits, a_bits, scheme in ([] if args.ptq_only else variants):
        tag = f"w{w_bits}a{a_bits}-{scheme}"
        elapsed_min = (time.perf_counter() - start_all) / 60
        if elapsed_min > args.budget_min:
            print(f"skipping QAT {tag}: wall-time budget of {args.budget_min} min used ({elapsed_min:.1f} min)")
            meta.setdefault("skipped", []).append(tag)
            continue
        t0 = time.perf_counter()
        qat = prepared(w_bits, a_bits, scheme)
        schedule = GradualSchedule.for_model(qat, args.stages, args.epochs_per_stage, args.final_epochs,
                                             active=args.active, later=args.later,
                                             integer_final=not args.no_integer_final)
        # the checkpoint name carries what the Trainer's config check cannot see (data, schedule, baseline)
        run_key = (f"{baseline.key}-n{limit}-s{args.stages}x{args.epochs_per_stage}+{args.final_epochs}"
                   f"-{args.active}-{args.later}-i{int(not args.no_integer_final)}-lr{args.qat_lr:g}"
                   f"-kd{args.distill:g}t{args.temperature:g}{'-int8' if not args.no_int8_lut else ''}")
        config = TrainConfig(lr=args.qat_lr, weight_decay=1e-4, distill_alpha=args.distill,
                             distill_temperature=args.temperature)
        history = Trainer(qat, qat_loader, test_loader, config, schedule=schedule, teacher=folded,
                          checkpoint=os.path.join(ckpt_dir, f"{prefix}qat-{tag}-{run_key}.pt"),
                          progress=progress, desc=f"QAT {tag}").fit()
        measure("qat", label, w_bits, a_bits, scheme, qat, t0, history=history, schedule=dict(meta["qat"]))
    with open(json_path, encoding="utf-8") as handle:
        results = json.load(handle)["results"]  # with --merge: every row of the file
    plot(results, os.path.join(out, f"{prefix}accuracy_vs_bops.png"))
    for name, check in targets(results).items():
        print(f"target {name}: {'met' if check['met'] else 'MISSED'} ({check['value_pt']} vs {check['bound_pt']})")
    print(f"total wall time {time.perf_counter() - start_all:.0f} s; wrote {json_path}")
    return results


if __name__ == "__main__":
    main()

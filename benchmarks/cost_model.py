"""Cost-model benchmark: does ``bops-xgb`` rank unseen layers / bit widths and find good schedules sooner?

Pools: for every workload, distinct random schedules of the bit-serial search space
(``codegen.tuning.space``, MetaSchedule postprocs applied) are built and timed in this run.
Training workloads: two layers at w1a1 and w2a2. Held out: a third layer (stride 2, other
channel counts) at w2a2, and the first layer at w3a3 (a bit width never seen in training).

For each cost model (``bops-xgb``, MetaSchedule's ``xgb``, ``random``), trained on the
training pools only:
* **rank correlation**: Spearman of predicted score vs measured throughput (1 / latency) over
  the held-out pool (>= 200 schedules);
* **trials to 95%**: a greedy search over the held-out pool, 8 candidates per round: the model
  picks the 8 best-predicted unmeasured schedules, they are "measured" (their pool latency is
  revealed) and fed back with ``update``; the count of measured schedules until one reaches 95%
  of the pool's best throughput (the best of the long random search). Several seeds.

Writes ``results/cost_model.json`` and ``results/cost_model.png``. Usage:
``python benchmarks/cost_model.py [--pool 200] [--train-pool 60] [--seeds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BATCH = 8  # candidates per simulated search round (MetaSchedule's trials per iteration)


def workloads():
    from codegen import ConvWorkload

    def conv(c, o, hw, stride, a_bits, w_bits):
        return ConvWorkload(kind="conv2d", batch=1, in_channels=c, height=hw, width=hw, out_channels=o,
                            kernel=(3, 3), stride=(stride, stride), padding=(1, 1, 1, 1), a_bits=a_bits, w_bits=w_bits)

    train = {f"L1_w{b}a{b}": conv(64, 64, 14, 1, b, b) for b in (1, 2)}
    train.update({f"L2_w{b}a{b}": conv(128, 128, 7, 1, b, b) for b in (1, 2)})
    held_out = {"held-out layer (L3 stride 2, w2a2)": conv(64, 128, 28, 2, 2, 2),
                "held-out bit width (L1 w3a3)": conv(64, 64, 14, 1, 3, 3)}
    return train, held_out


def _context(mod, wl, space, target):
    from tvm.s_tir import meta_schedule as ms

    from codegen.tuning.space import design_space
    from codegen.tuning.tuner import _without_tensor_intrinsics

    with _without_tensor_intrinsics():
        return ms.TuneContext(mod, target=target, space_generator=design_space(wl, space),
                              search_strategy="replay-trace", task_name=wl.key(), rand_state=1, num_threads=1)


def measure_pool(name, wl, space, target, size, seed, bar):
    """``size`` distinct random schedules of ``wl``: MeasureCandidates + measured seconds."""
    import tvm
    from tvm.s_tir.meta_schedule import MeasureCandidate
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from codegen.build import workload_module
    from codegen.tuning.space import sample_schedule
    from codegen.tuning.tuner import verification_args

    mod = workload_module(wl)
    context = _context(mod, wl, space, target)
    postprocs = context.space_generator.postprocs
    structures = space.structures(wl)
    args_info = ArgInfo.from_prim_func(mod["main"])
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in verification_args(args_info, seed)]
    rng = np.random.default_rng(seed)
    seen, candidates, seconds = set(), [], []
    attempts = 0
    while len(candidates) < size and attempts < 20 * size:
        attempts += 1
        structure = structures[int(rng.integers(len(structures)))]
        sch = sample_schedule(mod, wl, space, structure, int(rng.integers(1, 2**31 - 2)))
        key = (structure, tuple(str(sch.trace.decisions[inst]) for inst in sch.trace.insts if inst in sch.trace.decisions))
        if key in seen:
            continue
        seen.add(key)
        if not all(p.apply(sch) for p in postprocs):
            continue
        lib = tvm.compile(sch.mod, target=target)
        timer = lib.mod.time_evaluator("main", dev, number=3, repeat=5, min_repeat_ms=5)
        seconds.append(float(np.min(timer(*args).results)))  # min: robust to the shared machine's load
        candidates.append(MeasureCandidate(sch, args_info))
        bar.update(1)
    return {"name": name, "wl": wl, "context": context, "candidates": candidates, "seconds": np.array(seconds)}


def _results(seconds):
    from tvm.s_tir.meta_schedule.runner import RunnerResult

    return [RunnerResult([float(s)], None) for s in seconds]


def make_model(kind, peaks, seed):
    from codegen.tuning.cost_model import make_cost_model

    return make_cost_model(kind, peaks, seed=seed, num_threads=1)


def train(model, pools):
    for pool in pools:
        model.update(pool["context"], pool["candidates"], _results(pool["seconds"]))


def spearman(pred, seconds):
    from scipy.stats import spearmanr

    return float(spearmanr(pred, 1.0 / seconds).statistic)


def pool_features(pool):
    """Per-candidate feature rows, extracted once (both XGB models re-extract on every predict)."""
    from tvm.s_tir.meta_schedule.feature_extractor import PerStoreFeature

    if "per_store" not in pool:
        tensors = PerStoreFeature().extract_from(pool["context"], pool["candidates"])
        pool["per_store"] = [t.numpy().astype("float32") for t in tensors]
    return pool["per_store"]


def predict(model, pool, indices):
    """``model.predict`` on the pool candidates ``indices``, from cached features where possible."""
    from codegen.tuning.cost_model import BopsXGBModel
    from tvm.s_tir.meta_schedule.cost_model import XGBModel

    per_store = pool_features(pool)
    if isinstance(model, BopsXGBModel) and model.booster is not None:
        workload = model.workload_vector(pool["context"].mod).vector()
        rows = np.stack([np.concatenate([per_store[i].sum(axis=0), per_store[i].max(axis=0), workload]) for i in indices])
        return model.predict_rows(rows)
    if isinstance(model, XGBModel) and model.booster is not None and model.data_size >= model.num_warmup_samples:
        return model._predict(xs=[per_store[i] for i in indices])  # what XGBModel.predict computes
    return np.asarray(model.predict(pool["context"], [pool["candidates"][i] for i in indices]), dtype="float64")


def greedy_search(model, pool, rng):
    """Measured-count at which best-so-far reaches 95% of the pool's best; best-so-far curve."""
    seconds = pool["seconds"]
    target_s = seconds.min() / 0.95
    unmeasured = list(range(len(seconds)))
    best_curve, first_hit = [], None
    while unmeasured:
        scores = np.asarray(predict(model, pool, unmeasured), dtype="float64")
        order = np.lexsort((rng.random(len(scores)), -scores))  # ties broken at random
        picked = [unmeasured[i] for i in order[:BATCH]]
        model.update(pool["context"], [pool["candidates"][i] for i in picked], _results(seconds[picked]))
        for i in picked:
            best = min(best_curve[-1] if best_curve else np.inf, seconds[i])
            best_curve.append(best)
            if first_hit is None and best <= target_s:
                first_hit = len(best_curve)
        unmeasured = [i for i in unmeasured if i not in set(picked)]
        if first_hit is not None and len(best_curve) >= 64:
            break
    return first_hit, [float(seconds.min() / b) for b in best_curve]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=200, help="schedules per held-out workload")
    parser.add_argument("--train-pool", type=int, default=60, help="schedules per training workload")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="results")
    opts = parser.parse_args()

    from tqdm import tqdm

    from codegen.build import cpu_target
    from codegen.tuning.features import measure_peaks
    from codegen.tuning.space import BitserialSpace

    start = time.time()
    target = cpu_target()
    peaks = measure_peaks(target)
    space = BitserialSpace(max_vectors=8)
    train_wls, held_wls = workloads()
    total = opts.train_pool * len(train_wls) + opts.pool * len(held_wls)
    with tqdm(total=total, desc="measuring schedule pools") as bar:
        train_pools = [measure_pool(n, wl, space, target, opts.train_pool, 1 + i, bar) for i, (n, wl) in enumerate(train_wls.items())]
        held_pools = [measure_pool(n, wl, space, target, opts.pool, 100 + i, bar) for i, (n, wl) in enumerate(held_wls.items())]
    measured_s = time.time() - start

    report = {"peaks": {"popcounts_per_s": peaks.popcounts_per_s, "bytes_per_s": peaks.bytes_per_s},
              "train": {p["name"]: {"workload": p["wl"].key(), "schedules": len(p["seconds"])} for p in train_pools},
              "held_out": {}, "measure_wall_s": measured_s}
    curves = {}
    for pool in held_pools:
        entry = {"workload": pool["wl"].key(), "schedules": len(pool["seconds"]),
                 "best_ms": 1e3 * float(pool["seconds"].min()), "median_ms": 1e3 * float(np.median(pool["seconds"])),
                 "models": {}}
        for kind in ("bops-xgb", "xgb", "random"):
            rhos, hits = [], []
            for seed in range(opts.seeds):
                model = make_model(kind, peaks, seed)
                train(model, train_pools)
                rhos.append(spearman(predict(model, pool, list(range(len(pool["seconds"])))), pool["seconds"]))
                hit, curve = greedy_search(model, pool, np.random.default_rng(seed))
                hits.append(hit if hit is not None else len(pool["seconds"]))
                curves.setdefault(pool["name"], {}).setdefault(kind, []).append(curve)
            entry["models"][kind] = {"spearman": rhos, "spearman_mean": float(np.mean(rhos)),
                                     "trials_to_95": hits, "trials_to_95_mean": float(np.mean(hits))}
        report["held_out"][pool["name"]] = entry
        report["total_wall_s"] = time.time() - start
        os.makedirs(opts.out, exist_ok=True)
        with open(os.path.join(opts.out, "cost_model.json"), "w") as f:  # written as results arrive
            json.dump(report, f, indent=2)
    _print(report)
    _plot(report, curves, os.path.join(opts.out, "cost_model.png"))


def _print(report):
    print(f"\npeaks: {report['peaks']['popcounts_per_s'] / 1e9:.2f} G popcounts/s, "
          f"{report['peaks']['bytes_per_s'] / 1e9:.1f} GB/s; pools measured in {report['measure_wall_s']:.0f} s")
    for name, entry in report["held_out"].items():
        print(f"\n{name}: {entry['schedules']} schedules, best {entry['best_ms']:.4f} ms, median {entry['median_ms']:.4f} ms")
        print(f"{'model':>10} {'spearman':>9} {'trials to 95%':>14}  (per seed)")
        for kind, m in entry["models"].items():
            print(f"{kind:>10} {m['spearman_mean']:9.3f} {m['trials_to_95_mean']:14.1f}  {m['trials_to_95']}")
        xgb, bops = entry["models"]["xgb"]["trials_to_95_mean"], entry["models"]["bops-xgb"]["trials_to_95_mean"]
        print(f"trials ratio bops-xgb / xgb = {bops / xgb:.2f} (target <= 0.5)")


def _plot(report, curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["held_out"])
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(5 * (len(names) + 1), 4))
    kinds = ("bops-xgb", "xgb", "random")
    for k, kind in enumerate(kinds):
        values = [report["held_out"][n]["models"][kind]["spearman_mean"] for n in names]
        axes[0].bar(np.arange(len(names)) + 0.25 * k, values, width=0.25, label=kind)
    axes[0].set_xticks(np.arange(len(names)) + 0.25, [n.split("(")[0] for n in names])
    axes[0].set_ylabel("Spearman (predicted vs measured)")
    axes[0].axhline(0.8, color="k", lw=0.5, ls="--")
    axes[0].legend()
    for ax, name in zip(axes[1:], names):
        for kind in kinds:
            for i, curve in enumerate(curves[name][kind]):
                ax.plot(np.arange(1, len(curve) + 1), curve, color=f"C{kinds.index(kind)}", alpha=0.7,
                        label=kind if i == 0 else None)
        ax.axhline(0.95, color="k", lw=0.5, ls="--")
        ax.set_xlim(0, 64)
        ax.set_xlabel("measured schedules")
        ax.set_ylabel("best so far / pool best (throughput)")
        ax.set_title(name, fontsize=9)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

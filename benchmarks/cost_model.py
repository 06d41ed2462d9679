"""Cost-model benchmark: does ``bops-xgb`` rank unseen layers / bit widths and find good schedules sooner?

Pools: for every workload, distinct random schedules of the bit-serial search space
(``codegen.tuning.space``, MetaSchedule postprocs applied), built and timed on one thread, each
paired with the workload's hand schedule (``cost_model_pools``: the protocol, and why). Pools are
cached in ``results/cost_model_pools/`` (traces as JSON + measured ratios + load stamps) and
reused by later runs; ``--remeasure`` times them again. Training workloads: two layers at w1a1
and w2a2. Held out: a third layer (stride 2, other channel counts) at w2a2, and the first layer
at w3a3 (a bit width never seen in training).

For each cost model (``bops-xgb``, MetaSchedule's ``xgb``, ``random``), trained on the
training pools only:
* **rank correlation**: Spearman of predicted score vs measured throughput (1 / latency) over
  the held-out pool (>= 200 schedules), next to the pool's **noise ceiling**: the Spearman
  between two timing passes of the same schedules, and the ceiling it implies for the median of
  the passes that the models are scored against;
* **trials to 95% / 99%**: a greedy search over the held-out pool, 8 candidates per round: the
  model picks the 8 best-predicted unmeasured schedules, they are "measured" (their pool latency
  is revealed) and fed back with ``update``; the count of measured schedules until one reaches
  95% (99%) of the pool's best throughput (the best of the long random search). Several seeds.

Writes ``results/cost_model.json`` (with ``machine``: CPU, the date and the highest load average
seen while the pools were timed) and ``results/cost_model.png``. Usage:
``python benchmarks/cost_model.py [--pool 300] [--train-pool 100] [--seeds 3] [--remeasure] [--measure-only]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # report.machine_info, cost_model_pools

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

    if isinstance(model, BopsXGBModel) and model.booster is not None:
        key = ("bops_rows", model.per_store)
        if key not in pool:
            pool[key] = model.features(pool["context"], pool["candidates"])
        return model.predict_rows(pool[key][indices])
    per_store = pool_features(pool)
    if isinstance(model, XGBModel) and model.booster is not None and model.data_size >= model.num_warmup_samples:
        return model._predict(xs=[per_store[i] for i in indices])  # what XGBModel.predict computes
    return np.asarray(model.predict(pool["context"], [pool["candidates"][i] for i in indices]), dtype="float64")


def pool_summary(pool):
    """Size, best/median latency, the load while it was timed and its noise ceiling."""
    passes = pool["passes"]
    pairs = [(i, j) for i in range(passes.shape[1]) for j in range(i + 1, passes.shape[1])]
    pairwise = float(np.mean([spearman(1.0 / passes[:, i], passes[:, j]) for i, j in pairs])) if pairs else None
    # the pool's score is the median of k passes: Spearman-Brown gives its reliability from the
    # single-pass agreement, and no predictor can correlate with it better than sqrt(reliability)
    k = passes.shape[1]
    ceiling = float(np.sqrt(k * pairwise / (1 + (k - 1) * pairwise))) if pairs and pairwise > 0 else None
    return {"workload": pool["wl"].key(), "schedules": len(pool["seconds"]),
            "best_ms": 1e3 * float(pool["seconds"].min()), "median_ms": 1e3 * float(np.median(pool["seconds"])),
            "measured_at": pool["stamps"][0]["before"]["date"], "timing": pool["timing"],
            "load_average_during": [p["before"]["loadavg"] for p in pool["stamps"]] + [pool["stamps"][-1]["after_loadavg"]],
            # Spearman between two timing passes of the same schedules (mean over pass pairs)
            "noise_pass_to_pass_spearman": pairwise,
            "noise_ceiling_spearman": ceiling}


def measurement_machine(pools):
    """``machine_info`` of the pool measurement; ``load_average`` = the highest 1/5/15-min load seen while timing."""
    stamps = [p["stamps"] for p in pools]
    first = stamps[0][0]["before"]
    loads = [s["before"]["loadavg"] for st in stamps for s in st] + [st[-1]["after_loadavg"] for st in stamps]
    return {"date": first["date"], "cpu_model": first["cpu_model"], "cores": first["cores"],
            "load_average": [max(load[i] for load in loads) for i in range(3)],
            "load_average_min": [min(load[i] for load in loads) for i in range(3)]}


def greedy_search(model, pool, rng, fractions=(0.95, 0.99)):
    """Measured-count at which best-so-far first reaches each fraction of the pool's best; best-so-far curve."""
    seconds = pool["seconds"]
    targets_s = [seconds.min() / f for f in fractions]
    unmeasured = list(range(len(seconds)))
    best_curve, hits = [], [None] * len(fractions)
    while unmeasured:
        scores = np.asarray(predict(model, pool, unmeasured), dtype="float64")
        order = np.lexsort((rng.random(len(scores)), -scores))  # ties broken at random
        picked = [unmeasured[i] for i in order[:BATCH]]
        model.update(pool["context"], [pool["candidates"][i] for i in picked], _results(seconds[picked]))
        for i in picked:
            best = min(best_curve[-1] if best_curve else np.inf, seconds[i])
            best_curve.append(best)
            hits = [len(best_curve) if h is None and best <= t else h for h, t in zip(hits, targets_s)]
        unmeasured = [i for i in unmeasured if i not in set(picked)]
        if all(h is not None for h in hits) and len(best_curve) >= 64:
            break
    return hits, [float(seconds.min() / b) for b in best_curve]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=300, help="schedules per held-out workload")
    parser.add_argument("--train-pool", type=int, default=100, help="schedules per training workload")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="results")
    parser.add_argument("--remeasure", action="store_true", help="measure the pools again instead of reading the cache")
    parser.add_argument("--measure-only", action="store_true", help="measure/cache the pools and stop")
    opts = parser.parse_args()

    from tqdm import tqdm

    from cost_model_pools import TIMING, get_pools, set_single_thread

    from codegen.build import cpu_target
    from codegen.tuning.features import measure_peaks
    from codegen.tuning.space import BitserialSpace

    start = time.time()
    set_single_thread()
    target = cpu_target(1)
    peaks = measure_peaks(target)
    space = BitserialSpace(max_vectors=8)
    train_wls, held_wls = workloads()
    total = (1 + TIMING["passes"]) * (opts.train_pool * len(train_wls) + opts.pool * len(held_wls))
    with tqdm(total=total, desc="schedule pools (build + timing passes)") as bar:
        train_pools = get_pools(train_wls, space, target, opts.train_pool, 1, opts.out, opts.remeasure, bar)
        held_pools = get_pools(held_wls, space, target, opts.pool, 100, opts.out, opts.remeasure, bar)
    measured_s = time.time() - start
    if opts.measure_only:
        return

    report = {"machine": measurement_machine(train_pools + held_pools),
              "peaks": {"popcounts_per_s": peaks.popcounts_per_s, "bytes_per_s": peaks.bytes_per_s},
              "seeds": list(range(opts.seeds)),
              "pools": {p["name"]: pool_summary(p) for p in train_pools + held_pools},
              "train": {p["name"]: {"workload": p["wl"].key(), "schedules": len(p["seconds"])} for p in train_pools},
              "held_out": {}, "pools_wall_s": measured_s}
    curves = {}
    for pool in held_pools:
        entry = {**pool_summary(pool), "models": {}}
        for kind in ("bops-xgb", "xgb", "random"):
            rhos, hits, hits_99 = [], [], []
            for seed in range(opts.seeds):
                model = make_model(kind, peaks, seed)
                train(model, train_pools)
                rhos.append(spearman(predict(model, pool, list(range(len(pool["seconds"])))), pool["seconds"]))
                (hit, hit_99), curve = greedy_search(model, pool, np.random.default_rng(seed))
                hits.append(hit)
                hits_99.append(hit_99)
                curves.setdefault(pool["name"], {}).setdefault(kind, []).append(curve)
            entry["models"][kind] = {"spearman": rhos, "spearman_mean": float(np.mean(rhos)),
                                     "trials_to_95": hits, "trials_to_95_mean": float(np.mean(hits)),
                                     "trials_to_99": hits_99, "trials_to_99_mean": float(np.mean(hits_99))}
        report["held_out"][pool["name"]] = entry
        report["total_wall_s"] = time.time() - start
        os.makedirs(opts.out, exist_ok=True)
        with open(os.path.join(opts.out, "cost_model.json"), "w") as f:  # written as results arrive
            json.dump(report, f, indent=2)
    _print(report)
    _plot(report, curves, os.path.join(opts.out, "cost_model.png"))


def _print(report):
    machine = report["machine"]
    print(f"\npeaks: {report['peaks']['popcounts_per_s'] / 1e9:.2f} G popcounts/s, "
          f"{report['peaks']['bytes_per_s'] / 1e9:.1f} GB/s; pools ready in {report['pools_wall_s']:.0f} s; "
          f"load average while timing {machine['load_average_min']} .. {machine['load_average']}")
    for name, entry in report["held_out"].items():
        print(f"\n{name}: {entry['schedules']} schedules, best {entry['best_ms']:.4f} ms, median {entry['median_ms']:.4f} ms, "
              f"Spearman between timing passes {entry['noise_pass_to_pass_spearman']:.3f} -> ceiling for the "
              f"median of passes {entry['noise_ceiling_spearman']:.3f}")
        print(f"{'model':>10} {'spearman':>9} {'trials to 95%':>14} {'trials to 99%':>14}  (per seed: 95%, 99%)")
        for kind, m in entry["models"].items():
            print(f"{kind:>10} {m['spearman_mean']:9.3f} {m['trials_to_95_mean']:14.1f} {m['trials_to_99_mean']:14.1f}"
                  f"  {m['trials_to_95']} {m['trials_to_99']}")
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

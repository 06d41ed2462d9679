"""Streaming multi-FPGA planner tables: ResNet-18 and AlexNet on 1-4 devices, skip-connection cost.

For each device preset and device count the planner maximises throughput; every plan is replayed
by the row-level discrete-event simulation (``vta_ext.streaming.sim``), which derives each block's
II from its folding and stream widths on its own (``sim.block_cycles``): the simulated period is
printed next to the planned one, and the blocks whose derived II differs from the plan's are
counted ("sim vs plan"). Then:

* ResNet-18 vs AlexNet time per image on the same devices (the seed paper reports ResNet-18
  +17.5% over AlexNet: 16.1 ms vs 13.7 ms);
* ResNet-18 vs the same conv stack without skip connections (``plain18``): what the joins,
  downsample convs and skip FIFOs cost in time and resources;
* plans at the paper's throughput (62.1 fps ResNet-18, 73.0 fps AlexNet) with our resource
  estimate next to the paper's LUT/FF figures;
* a sweep of one skip FIFO's depth: deadlock below the dependency lag, stalls in between, the
  planned rate at and above the planned depth.

Writes ``results/fpga_streaming.json`` and ``results/fpga_streaming.png``.
Usage: ``python benchmarks/fpga_streaming.py [--quick]`` (quick: vu9p only, 1-2 devices).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tqdm import tqdm

from vta_ext import streaming
from vta_ext.resources import PUBLISHED  # noqa: E402
from vta_ext.streaming.sim import simulate
from report import machine_info  # noqa: E402 - provenance (date, CPU model, load) in the JSON

PAPER = {  # Baskin et al., streaming QNN architecture across FPGAs (the third seed paper)
    model: {"lut": PUBLISHED[key]["luts"], "ff": PUBLISHED[key]["ffs"], "time_ms": PUBLISHED[key]["latency_ms"]}
    for model, key in (("resnet18", "streaming ResNet-18"), ("alexnet", "streaming AlexNet"))
}
RESULTS = Path(__file__).resolve().parent.parent / "results"


def plan_row(model, devices, device, a_bits=2, w_bits=2, target_fps=None, images=5):
    try:
        plan = streaming.plan(model, devices=devices, device=device, target_fps=target_fps, a_bits=a_bits, w_bits=w_bits)
    except streaming.DeviceCountError as err:
        return {"model": model, "devices": devices, "device": device, "a_bits": a_bits, "w_bits": w_bits,
                "error": str(err), "needed": err.needed}
    started = time.perf_counter()
    sim = simulate(plan, images=images)
    util = plan.utilisation()
    return {
        "model": model, "devices": devices, "device": device, "a_bits": a_bits, "w_bits": w_bits,
        "target_fps": target_fps, "devices_used": plan.devices_used, "fps": plan.fps,
        "time_per_image_ms": plan.time_per_image_ms, "latency_ms": plan.latency_ms, "bottleneck": plan.bottleneck,
        "resources": plan.total_resources(), "max_util": max(max(u.values()) for u in util),
        "skip_fifo_resources": plan.skip_fifo_resources(),
        "sim_period_cycles": sim.period_cycles if sim.completed else None, "period_cycles": plan.period_cycles,
        "sim_error": sim.throughput_error if sim.completed else None, "sim_completed": sim.completed,
        "sim_seconds": time.perf_counter() - started, "cost_model": plan.cost_model,
        "sim_blocks_compared": len(sim.blocks),
        "sim_block_ii_differences": {name: list(diff) for name, diff in sim.ii_differences().items()},
        "sim_max_block_ii_rel_diff": max(abs(b["sim_ii"] / b["plan_ii"] - 1) for b in sim.blocks.values()),
        "read_bound_blocks": sorted(name for name, b in sim.blocks.items() if b["bound"] == "read" and b["read"] > b["compute"] and b["compute"]),
    }


def block_table(model="resnet18", devices=1, device="vu9p"):
    """Per block of one plan: folding, the plan's II and the simulator's derived II and its terms."""
    plan = streaming.plan(model, devices=devices, device=device)
    sim = simulate(plan, images=4)
    rows = []
    for block in plan.blocks:
        b = sim.blocks[block.name]
        rows.append({"block": block.name, "op": block.op, "fold": [block.pe, block.simd, block.mmv],
                     "plan_ii": block.ii_cycles, "sim_ii": b["sim_ii"], "compute": b["compute"], "read": b["read"],
                     "write": b["write"], "bound": b["bound"]})
    return {"model": model, "devices": devices, "device": device, "rows": rows}


def print_table(rows, title):
    print(f"\n### {title}\n")
    print("| model | device | n | used | fps | ms/image | latency ms | LUT | FF | BRAM36 | DSP | max util | sim vs plan |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            why = f"needs {r['needed']} devices" if r["needed"] else "a block exceeds one device"
            print(f"| {r['model']} w{r['w_bits']}a{r['a_bits']} | {r['device']} | {r['devices']} | - | {why} | | | | | | | | |")
            continue
        res = r["resources"]
        sim = (f"{r['sim_error']:+.2%}, II {len(r['sim_block_ii_differences'])}/{r['sim_blocks_compared']} differ"
               if r["sim_completed"] else "FAILED")
        print(f"| {r['model']} w{r['w_bits']}a{r['a_bits']} | {r['device']} | {r['devices']} | {r['devices_used']} | {r['fps']:,.0f} | "
              f"{r['time_per_image_ms']:.3f} | {r['latency_ms']:.3f} | {res['lut']:,} | {res['ff']:,} | {res['bram']:,} | "
              f"{res['dsp']:,} | {r['max_util']:.0%} | {sim} |")


def skip_depth_sweep(model="resnet18", device="vu9p"):
    plan = streaming.plan(model, devices=1, device=device)
    fifo = next(f for f in plan.fifos if f.is_join_input and f.lag_cycles > 0)
    rows = []
    for depth in range(1, fifo.depth_rows + 2):
        sim = simulate(plan, images=5, fifo_depths={(fifo.src, fifo.dst): depth})
        rows.append({"depth": depth, "deadlocked": sim.deadlocked, "completed": sim.completed,
                     "fps": plan.device.clock_mhz * 1e6 / sim.period_cycles if sim.completed else 0.0,
                     "report": sim.report.splitlines()[0] if sim.report else ""})
    return {"fifo": fifo.name, "planned_depth": fifo.depth_rows, "planned_fps": plan.fps, "rows": rows}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for device in sorted({r["device"] for r in results["max_throughput"]}):
        for model in ("resnet18", "alexnet"):
            pts = [(r["devices"], r["fps"]) for r in results["max_throughput"]
                   if r["device"] == device and r["model"] == model and "error" not in r]
            if pts:
                ax1.plot(*zip(*pts), marker="o", label=f"{model} on {device}")
    ax1.set_xlabel("devices")
    ax1.set_ylabel("planned fps (w2a2)")
    ax1.set_yscale("log")
    ax1.set_title("Max throughput vs device count")
    ax1.legend(fontsize=8)
    sweep = results["skip_depth_sweep"]
    depths = [r["depth"] for r in sweep["rows"]]
    ax2.bar(depths, [r["fps"] for r in sweep["rows"]],
            color=["tab:red" if r["deadlocked"] else "tab:blue" for r in sweep["rows"]])
    for r in sweep["rows"]:
        if r["deadlocked"]:
            ax2.text(r["depth"], sweep["planned_fps"] * 0.05, "deadlock", rotation=90, ha="center", color="tab:red")
    ax2.axhline(sweep["planned_fps"], color="k", ls="--", label="planned fps")
    ax2.axvline(sweep["planned_depth"], color="g", ls=":", label="planned depth")
    ax2.set_xlabel(f"depth of {sweep['fifo']} (rows); red = deadlock")
    ax2.set_ylabel("simulated fps")
    ax2.set_title("Skip FIFO depth (DES)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="vu9p only, 1-2 devices")
    args = parser.parse_args(argv)
    device_presets = ["vu9p"] if args.quick else ["vu9p", "zcu102"]
    counts = [1, 2] if args.quick else [1, 2, 3, 4]
    jobs = [(m, n, d) for d in device_presets for m in ("resnet18", "alexnet", "plain18") for n in counts]
    rows = [plan_row(m, n, d) for m, n, d in tqdm(jobs, desc="plans")]
    main_rows = [r for r in rows if r["model"] != "plain18"]
    print_table(main_rows, "Max-throughput plans (w2a2, each replayed by the DES)")

    print("\n### Skip connections: ResNet-18 vs AlexNet (paper: +17.5% time) and vs plain-18\n")
    print("| device | n | ResNet-18 ms | AlexNet ms | vs AlexNet | plain-18 ms | time vs plain | LUT vs plain | BRAM vs plain | skip FIFO BRAM36 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    overhead = []
    for d in device_presets:
        for n in counts:
            pick = {r["model"]: r for r in rows if r["device"] == d and r["devices"] == n}
            if any("error" in pick[m] for m in ("resnet18", "alexnet", "plain18")):
                continue
            res, alex, plain = pick["resnet18"], pick["alexnet"], pick["plain18"]
            entry = {"device": d, "devices": n,
                     "vs_alexnet_time": res["time_per_image_ms"] / alex["time_per_image_ms"] - 1,
                     "vs_plain_time": res["time_per_image_ms"] / plain["time_per_image_ms"] - 1,
                     "vs_plain_lut": res["resources"]["lut"] / plain["resources"]["lut"] - 1,
                     "vs_plain_bram": res["resources"]["bram"] / max(plain["resources"]["bram"], 1) - 1,
                     "skip_fifo_bram": res["skip_fifo_resources"]["bram"]}
            overhead.append(entry)
            print(f"| {d} | {n} | {res['time_per_image_ms']:.3f} | {alex['time_per_image_ms']:.3f} | "
                  f"{entry['vs_alexnet_time']:+.1%} | {plain['time_per_image_ms']:.3f} | {entry['vs_plain_time']:+.1%} | "
                  f"{entry['vs_plain_lut']:+.1%} | {entry['vs_plain_bram']:+.1%} | {entry['skip_fifo_bram']} |")

    paper_rows = []
    for model in ("resnet18", "alexnet"):
        fps = 1000.0 / PAPER[model]["time_ms"]
        for n in counts[:2]:
            paper_rows.append(plan_row(model, n, "vu9p", target_fps=fps))
    print_table(paper_rows, "Plans at the paper's throughput (ResNet-18 62.1 fps, AlexNet 73.0 fps)")
    print(f"\npaper: ResNet-18 {PAPER['resnet18']['lut']:,} LUT, {PAPER['resnet18']['ff']:,} FF, 16.1 ms; "
          f"AlexNet {PAPER['alexnet']['lut']:,} LUT, 13.7 ms. Our estimates use: {rows[0].get('cost_model')}")

    bits_rows = [plan_row("resnet18", 1, "vu9p", a_bits=a, w_bits=w) for a, w in tqdm([(1, 1), (2, 1), (2, 2), (4, 4)], desc="bits")]
    print_table(bits_rows, "ResNet-18 on one vu9p vs bits")

    sweep = skip_depth_sweep()
    print(f"\n### DES sweep of {sweep['fifo']} (planned depth {sweep['planned_depth']}, planned {sweep['planned_fps']:,.0f} fps)\n")
    for r in sweep["rows"]:
        state = "DEADLOCK" if r["deadlocked"] else f"{r['fps']:,.0f} fps"
        print(f"- depth {r['depth']}: {state}")

    blocks = block_table()
    print(f"\n### Per block: {blocks['model']} on {blocks['devices']} x {blocks['device']}, plan II vs derived II\n")
    for b in blocks["rows"]:
        print(f"- {b['block']} {b['fold']}: plan {b['plan_ii']:,.0f}, sim {b['sim_ii']:,.0f} ({b['bound']})")

    results = {"max_throughput": rows, "skip_overhead": overhead, "paper": PAPER, "at_paper_fps": paper_rows,
               "bits": bits_rows, "skip_depth_sweep": sweep, "block_iis": blocks, "machine": machine_info()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fpga_streaming.json").write_text(json.dumps(results, indent=1))
    plot(results, RESULTS / "fpga_streaming.png")
    print(f"\nwrote {RESULTS / 'fpga_streaming.json'} and {RESULTS / 'fpga_streaming.png'}")


if __name__ == "__main__":
    main()

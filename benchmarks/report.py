"""README results tables generated from the benchmark JSONs in ``results/``.

    python benchmarks/report.py                    # rewrite the README block from results/*.json
    python benchmarks/report.py --check            # exit 1 if the README block is stale
    python benchmarks/report.py --stdout           # print the block, touch nothing

Only the text between ``<!-- results:start -->`` and ``<!-- results:end -->`` in the README is
replaced; everything else is kept byte for byte. Every table states when it was measured, the CPU
model and the load average as recorded in its JSON ("not recorded" when the benchmark did not
write them; the file's modification time is shown instead of a missing date) and links its plot.
A missing JSON gives a "not measured yet" line naming the script that writes it.

Benchmarks should record their provenance with :func:`machine_info` under a top-level
``"machine"`` key (``date``, ``cpu_model``, ``load_average``, ``cores``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"

PLOT_NOTE = ("The JSON files behind these tables are committed in `results/`; the plots are not (run `make bench`, "
             "or the script named in each section, to draw them).")
# kernel speed targets: geometric mean over the ResNet-18 3x3 layers vs the baseline (minimum speedup)
KERNEL_TARGETS = {"vs_torch": {"w1a1": 24, "w2a2": 6, "w3a3": 2.7},
                  "vs_ort_int8": {"w1a1": 5, "w2a2": 1.3},
                  "vs_upstream": {"w1a1": 1.7, "w2a2": 1.7, "w3a3": 1.7, "w4a4": 1.7}}


class ReportError(Exception):
    """The README has no well-formed results block (or a JSON cannot be read)."""


def machine_info() -> dict:
    """Provenance for a benchmark JSON: UTC date, CPU model, load average, usable cores."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu_model": model, "load_average": [round(v, 2) for v in os.getloadavg()],
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


# ---------------------------------------------------------------- formatting helpers
def num(value, spec=".2f", suffix=""):
    return "–" if value is None else f"{format(value, spec)}{suffix}"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def against(value, bound, spec=".2f", unit="×"):
    """``12.17× (≥ 24×: missed)``: a measured value next to its target."""
    if value is None:
        return "–" if bound is None else f"– (target ≥ {bound:g}{unit})"
    text = f"{value:{spec}}{unit}"
    if bound is None:
        return text
    return f"{text} (≥ {bound:g}{unit}: {'**met**' if value >= bound else 'missed'})"


def _find(data, *keys):
    """First of ``keys`` at the top level or under ``machine``/``meta`` of a JSON object."""
    if not isinstance(data, dict):
        return None
    for scope in (data.get("machine"), data.get("meta"), data):
        if isinstance(scope, dict):
            for key in keys:
                if scope.get(key) is not None:
                    return scope[key]
    return None


def provenance(data, path: Path, plots=()):
    """One italic line: date, CPU model, load average, plot links."""
    date = _find(data, "date", "measured_at", "timestamp")
    if date is None:  # not the file's mtime: a fresh clone must render the same block (--check)
        date = "not recorded"
    cpu = _find(data, "cpu_model", "cpu")
    if cpu is None:
        target = _find(data, "target")
        mcpu = None
        if isinstance(target, str) and target.startswith("{"):
            try:
                mcpu = json.loads(target).get("mcpu")
            except json.JSONDecodeError:  # a target string, not a dict target: no mcpu to quote
                mcpu = None
        cpu = "not recorded" + (f" (TVM target mcpu={mcpu})" if mcpu else "")
    load = _find(data, "load_average")
    parts = [f"measured: {date}", f"CPU: {cpu}",
             "load average: " + (", ".join(f"{v:.1f}" for v in load) if load else "not recorded")]
    parts += [f"plot: [{p}](results/{p})" for p in plots]
    return "_" + " · ".join(parts) + "_"


# ---------------------------------------------------------------- sections
def render_accuracy(data, path):
    rows = [r for r in data.get("results", []) if r.get("accuracy") is not None]
    by = {(r["kind"], r["tag"]): r for r in rows}
    fp32 = by.get(("fp32", "fp32"))
    fp32_acc = fp32["accuracy"] if fp32 else None
    tags = list(dict.fromkeys(r["tag"] for r in rows if r["kind"] != "fp32"))
    checks_by_tag = {}
    for name, check in data.get("targets", {}).items():
        for tag in tags:
            if f" {tag} " in f" {name} ".replace(":", " "):
                mark = "**met**" if check["met"] else "missed"
                label = name.replace(f" {tag}", "").replace(":", "").replace("|", "\\|")  # no table cell break
                checks_by_tag.setdefault(tag, []).append(f"{label}: {check['value_pt']} ({mark})")
    out = []
    if path.name.startswith("fast-"):
        out.append("**FAST MODE (`--fast` smoke run on a data subset): not the real figures.**\n")
    meta = data.get("meta", {})
    qat = meta.get("qat_schedule") or meta.get("qat") or {}
    per_row = meta.get("qat_per_row") or {}
    own = "".join(f"; {tag} trained with {json.dumps(fields, sort_keys=True)}" for tag, fields in sorted(per_row.items()))
    runs = meta.get("runs") or []
    wall = (f"Total wall time {num(data.get('wall_s_total'), '.0f', ' s')}"
            + (f" over {len(runs)} runs (" + "; ".join(f"{r.get('date') or '?'}: {len(r.get('rows', []))} rows, "
                                                       f"{num(r.get('wall_s'), '.0f', ' s')}" for r in runs) + ")"
               if len(runs) > 1 else ""))
    out.append(f"Model `{meta.get('model', '?')}`, {meta.get('train_images', '?')} training / "
               f"{meta.get('test_images', '?')} test images, top-1 on the test set; BOPs in UNIQ's count "
               f"(accumulator term included). QAT{' (every row unless stated)' if per_row else ''}: "
               f"{json.dumps(qat, sort_keys=True)}{own}. "
               f"Integer-only: {meta.get('integer_only', 'not measured')}. {wall}.\n")
    body = []
    if fp32:
        body.append(["fp32", "fp32", num(fp32["gbops"], ".3f"), num(100 * fp32_acc), "", "", "", "",
                     "; ".join(f"{n}: {'**met**' if c['met'] else 'missed'}"
                               for n, c in data.get("targets", {}).items() if n.startswith("fp32"))])
    for tag in tags:
        ptq, qat_row = by.get(("ptq", tag)), by.get(("qat", tag))
        label = (qat_row or ptq).get("label", tag)

        def pair(row):
            if not row:
                return ""
            text = num(100 * row["accuracy"])
            if row.get("int_accuracy") is not None:
                text += f" / {100 * row['int_accuracy']:.2f}"
            return text

        skipped = tag in meta.get("skipped", [])
        body.append([label, tag, num((qat_row or ptq)["gbops"], ".3f"), "", pair(ptq),
                     pair(qat_row) + (" (skipped: budget)" if skipped else ""),
                     num(qat_row and fp32 and 100 * (qat_row["accuracy"] - fp32_acc), "+.2f"),
                     num(qat_row and qat_row.get("agreement") is not None and 100 * qat_row["agreement"]),
                     "; ".join(checks_by_tag.get(tag, []))])
    out.append(table(["variant", "bits", "GBOPs/image", "fp32 %", "PTQ % (float / int)", "QAT % (float / int)",
                      "QAT − fp32 (pt)", "QAT int/float agreement %", "checks"], body))
    return "\n".join(out), ["accuracy_vs_bops.png"]


def render_kernels(data, path, asm=None):
    summary = data.get("summary", {})
    rows = data.get("rows", [])
    configs = [c for c in ("w1a1", "w2a2", "w3a3", "w4a4", "w2a2-lut", "w3a3-lut") if c in summary]
    shapes = len({json.dumps(r.get("shape"), sort_keys=True) for r in rows})
    out = [f"Geometric means over {shapes} ResNet-18 3×3 conv shape{'s' if shapes != 1 else ''} at batch 1, thread CPU time at 1 thread "
           "(robust to the shared machine's load), activation quantization and packing included; "
           "ratio = baseline time / our time.\n"]
    body = []
    for c in configs:
        m = summary[c]
        t = lambda key: KERNEL_TARGETS.get(key, {}).get(c)  # noqa: E731
        lut = m.get("lut_slowdown_vs_uniform")
        body.append([c, against(m.get("vs_torch"), t("vs_torch")), against(m.get("vs_ort_int8"), t("vs_ort_int8")),
                     num(m.get("vs_ort_fp32"), ".2f", "×"), num(m.get("vs_tvm_fp32"), ".2f", "×"),
                     against(m.get("vs_upstream"), t("vs_upstream")),
                     against(None if m.get("roofline_fraction") is None else 100 * m["roofline_fraction"], 70,
                             ".1f", "%"),
                     num(m.get("tuned_vs_hand"), ".2f", "×"),
                     "" if lut is None else f"{lut:.2f}× slower (≤ 1.6×: {'**met**' if lut <= 1.6 else 'missed'})"])
    out.append(table(["config", "× PyTorch fp32", "× onnxruntime int8", "× onnxruntime fp32", "× TVM fp32",
                      "× TVM upstream bitserial", "% of popcount roofline", "tuned × hand", "LUT vs uniform"], body))
    notes = []
    peaks = data.get("peaks", {})
    if peaks:
        notes.append(f"measured peaks per core: popcount {peaks['popcount_bitmacs_per_s']['per_core'] / 1e9:.0f} "
                     f"Gbit-MAC/s, fp32 {peaks['fp32_flops_per_s']['per_core'] / 1e9:.0f} GFLOP/s "
                     f"(one fp32 FMA = {num(peaks.get('bitmacs_per_fp32_fma'), '.1f')} bit-MACs)")
    if summary.get("torch_fp32_roofline_fraction") is not None:
        notes.append(f"PyTorch fp32 reaches {100 * summary['torch_fp32_roofline_fraction']:.0f}% of the fp32 peak")
    absent = [label for key, label in (("vs_tvm_fp32", "TVM fp32"), ("tuned_vs_hand", "tuned kernels"))
              if configs and all(summary[c].get(key) is None for c in configs)]
    if absent:
        notes.append(f"{' and '.join(absent)} not measured in this run")
    upstream = [r["upstream"].get("exact") for r in rows if "upstream" in r]
    if upstream:
        notes.append(f"TVM upstream bitserial output exact in {sum(bool(e) for e in upstream)}/{len(upstream)} rows")
    tune_errors = [r["tuned_error"] for r in rows if r.get("tuned_error")]
    if tune_errors:
        notes.append(f"tuning failed in {len(tune_errors)}/{len(rows)} rows (first: `{tune_errors[0][-80:]}`)")
    if any("tvm_fp32_error" in r.get("baselines", {}) for r in rows):
        notes.append("TVM fp32 baseline failed on some shapes (see kernels.json)")
    if asm:
        per = {k: 1000 * v["uops_per_bitmac"] for k, v in asm.items() if v}
        notes.append("hot loop: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
                     + " instructions per 1000 bit-MACs (ideal AND+POPCNT+ADD on 512-bit words: 5.86)")
    if notes:
        out.append("\n" + "; ".join(notes) + ".")
    return "\n".join(out), ["kernels_speedup.png"]


def render_roofline(data, path):
    pc, fp = data["popcount_bitmacs_per_s"], data["fp32_flops_per_s"]
    threads = next((k for k in pc if k != "per_core"), None)
    body = [["popcount (AND + VPOPCNTQ + ADD)", f"{pc['per_core'] / 1e9:.0f} Gbit-MAC/s",
             num(threads and pc[threads] / 1e9, ".0f", " Gbit-MAC/s")],
            ["fp32 FMA", f"{fp['per_core'] / 1e9:.0f} GFLOP/s", num(threads and fp[threads] / 1e9, ".0f", " GFLOP/s")]]
    out = table(["peak", "per core (CPU time)", f"{threads or '2 threads'} (wall, shared machine)"], body)
    return out + (f"\n\nOne fp32 FMA costs as much as {data['bitmacs_per_fp32_fma']:.1f} 1-bit MACs "
                  "(the issue's expectation: ~21×)."), []


def render_kernels_vnni(data, path):
    body = []
    for name, summary in data.get("summary", {}).items():
        body.append([name, summary.get("instructions", "vnni"), num(summary.get("popcount"), ".2f", "×"),
                     num(summary.get("torch_fp32"), ".2f", "×"),
                     num(summary.get("ort_int8"), ".2f", "×"),
                     num(summary.get("pct_of_vnni_peak") if summary.get("instructions", "vnni") == "vnni" else None,
                         ".0f", "%"),
                     "yes" if summary.get("exact") else "**no**"])
    shapes = sorted({f"{r['shape']['in_channels']}→{r['shape']['out_channels']} {r['shape']['size']}²"
                     for r in data.get("rows", [])})
    return (f"Integer-only kernels, codes in and out, on {', '.join(shapes)} (batch 1, stride 1); geometric means of "
            "baseline time / int8 kernel time at 1 thread (CPU time); int8 kernel = its instructions (`vnni`: "
            "vpdpbusd; `avx2`: vpmaddubsw, CPUs without AVX-512 VNNI; `plain`: int32); % of 4× the measured fp32 "
            "FMA peak; exact = identical to `reference.qconv2d_int`.\n\n"
            + table(["config", "int8 kernel", "× popcount integer kernel", "× PyTorch fp32", "× onnxruntime int8",
                     "% VNNI peak", "exact"], body)), []


FLOORS = {("resnet18", "ours_w1a1"): 1.5, ("resnet18", "ours_w2a2"): 1.0}  # × onnxruntime int8, 2 threads
AIMS = {("resnet18", "ours_w1a1"): 2.5, ("resnet18", "ours_w2a2"): 1.3, ("resnet18", "ours_w4a4+f8"): 1.0,
        ("resnet18", "ours_w4a8+f8"): 1.0, ("mobilenet_v2", "ours_w8a8+f8"): 1.0, ("mobilenet_v2", "ours_w4a4+f8"): 1.0}


def _models_target(model, variant, t):
    """The floor / aim cell of a row (2-thread wall time against onnxruntime int8 in the same run)."""
    cells = []
    ratio = t.get("vs_ort_int8_2t")
    for label, table_ in (("floor", FLOORS), ("aim", AIMS)):
        bound = table_.get((model, variant))
        if bound is not None and ratio is not None:
            cells.append(f"{label} ≥ {bound}×: {'**met**' if ratio >= bound else 'missed'}")
    return "; ".join(cells)


def render_models(data, path):
    body = []
    rounds = max((t.get("rounds", 1) for result in data.get("results", {}).values() for t in result.values()
                  if isinstance(t, dict)), default=1)
    for model, result in data.get("results", {}).items():
        for variant, t in result.items():
            if not isinstance(t, dict) or "cpu_1t_s" not in t:
                continue
            if "vs_ort_int8_2t" not in t:  # a run from before the 2-thread ratios: the old columns only
                body.append([model, variant, f"{1e3 * t['cpu_1t_s']:.3f}", num(t.get("wall_s") and 1e3 * t["wall_s"], ".3f"),
                             "", num(t.get("vs_torch"), ".2f", "×"), num(t.get("vs_ort_int8"), ".2f", "×"), "", "", "",
                             "", ""])
                continue
            share = t.get("kernel_share")
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(t.get("layer_kernels", {}).items()))
            body.append([model, variant, f"{1e3 * t['cpu_1t_s']:.3f}", f"{1e3 * t['wall_s']:.3f}",
                         num(t.get("two_over_one_thread"), ".2f"), num(t.get("vs_torch"), ".2f", "×"),
                         num(t.get("vs_ort_int8"), ".2f", "×"), num(t.get("vs_ort_int8_2t"), ".2f", "×"),
                         num(t.get("vs_torch_int8_2t"), ".2f", "×"), "" if share is None else f"{100 * share:.0f}%",
                         kinds, _models_target(model, variant, t)])
    return ("Batch 1; `wXaY` keeps the first conv and last dense fp32 (NICE), `+f8` quantizes the first conv at 8 "
            "bits (`calibrate(first_layer_bits=8)`); ms of thread CPU time at 1 thread and wall time at 2 threads"
            + (f" (each the best of {rounds} rounds over all rows)" if rounds > 1 else "") + "; "
            "2t/1t = 2-thread over 1-thread wall time; × = baseline time / our time (1 thread: CPU time; 2 threads: "
            "wall, onnxruntime int8 QOperator per-channel and PyTorch x86 int8 measured in the same run); kernels = "
            "share of the quantized kernels in `cm.profile` at 1 thread (the rest: fp32 layers, pooling, adds, "
            "runtime); layers = kernel chosen per quantized layer.\n\n"
            + table(["model", "variant", "CPU ms (1 thread)", "wall ms (2 threads)", "2t/1t", "× PyTorch fp32 (1t)",
                     "× ort int8 (1t)", "× ort int8 (2t)", "× PyTorch int8 (2t)", "kernels", "layers", "target"], body)), []


def render_cost_model(data, path):
    body = []
    for name, entry in data.get("held_out", {}).items():
        models = entry.get("models", {})
        xgb = models.get("xgb", {}).get("trials_to_95_mean")
        for kind, m in models.items():
            target = ""
            if kind == "bops-xgb":
                checks = []
                if xgb:
                    ratio = m["trials_to_95_mean"] / xgb
                    checks.append(f"trials {ratio:.2f}× xgb (≤ 0.5: {'**met**' if ratio <= 0.5 else 'missed'})")
                if "bit width" in name:
                    rho = m["spearman_mean"]
                    checks.append(f"ρ ≥ 0.8: {'**met**' if rho >= 0.8 else 'missed'}")
                target = "; ".join(checks)
            body.append([name, entry.get("schedules", ""), kind, num(m.get("spearman_mean"), ".3f"),
                         num(m.get("trials_to_95_mean"), ".1f"), target])
    return ("Spearman ρ of predicted vs measured throughput over the held-out pool and measured schedules until one "
            "reaches 95% of the pool's best (mean over seeds).\n\n"
            + table(["held-out workload", "schedules", "cost model", "Spearman ρ", "trials to 95%",
                     "target"], body)), ["cost_model.png"]


def render_compile_time(data, path):
    body = [[phase, f"{s:.2f}"] for phase, s in data.get("seconds", {}).items()]
    total = data.get("total_s")
    body.append(["**import + quantize + compile**", f"**{total:.2f}** (< 60 s: "
                 f"{'**met**' if total is not None and total < 60 else 'missed'})"])
    return (f"`{data.get('model')}` {data.get('input')}, w{data.get('w_bits')}a{data.get('a_bits')}, target "
            f"`{data.get('target')}`, {data.get('cores', '?')} cores; quantized / float compile time "
            f"{num(data.get('quantized_over_float_compile'), '.2f', '×')}.\n\n" + table(["phase", "seconds"], body)), []


def render_fpga(data, path):
    out = [f"Accelerator simulator (timing model), ResNet-18 at {data.get('image_hw', 224)}×{data.get('image_hw', 224)}, "
           "batch 1, accelerator layers only (conv1 and fc stay fp32 on the CPU); bit widths up to each preset's "
           "maxima.\n"]
    body = []
    for preset, nets in data.get("presets", {}).items():
        for bits, e in nets.get("resnet18", {}).items():
            layers = e.get("layers", [])
            macs = sum(r["macs"] for r in layers)
            util = sum(r["utilisation"] * r["macs"] for r in layers) / macs if macs else None
            body.append([preset, bits, f"{e['cycles']:,}", f"{e['latency_ms']:.2f}", f"{e['fps']:.1f}",
                         f"{e['gops']:.1f}", num(util and 100 * util, ".0f", "%"), f"{e['dram_bytes'] / 2**20:.2f}"])
    out.append(table(["core", "bits", "cycles", "latency ms", "fps", "GOP/s", "MAC util", "DRAM MiB"], body))
    fits = data.get("bops_fit", {})
    if fits:
        out.append("\nCycles vs UNIQ BOPs, least squares over every layer and bit width: "
                   + "; ".join(f"{k} R² = {v['r2']:.3f}" for k, v in fits.items()) + ".")
    fit_rows = []
    for preset, fit in data.get("fit", {}).items():
        cells = [f"{fit[r]['need']:,} / {fit[r]['capacity']:,} ({100 * fit[r]['need'] / fit[r]['capacity']:.0f}%)"
                 if fit[r]["capacity"] else f"{fit[r]['need']:,} / 0" for r in ("lut", "ff", "bram", "dsp")]
        fit_rows.append([preset, fit["part"], fit.get("array", "–"), fit.get("bits", "–"), fit.get("lut_mode", "–"),
                         *cells, fit["source"]])
    if fit_rows:
        out.append("\nEach preset on the part it names (`vta_ext.fit.utilisation`; `HwConfig` refuses a core over "
                   "capacity). Model figures: the resource model fitted on whole synthesized cores (section "
                   "\"FPGA resource model on whole cores\"), block RAM counted from the RTL's memories; no power "
                   "column (its coefficients are hand-set, with no vendor source):\n")
        out.append(table(["preset", "part", "array", "bits", "LUT mode", "LUT", "FF", "BRAM", "DSP", "source"],
                         fit_rows))
    rows = [[f"published: {k}", f"{v.get('luts') or 0:,}" if v.get("luts") else "–",
             f"{v['ffs']:,}" if v.get("ffs") else "–", num(v.get("latency_ms"), ".1f")]
            for k, v in data.get("published", {}).items()]
    for preset, nets in data.get("presets", {}).items():
        fit = data.get("fit", {}).get(preset)
        for net, by_bits in nets.items():
            e = by_bits.get("w2a2")
            if e and fit:
                rows.append([f"ours: {preset} core, {net} w2a2", f"{fit['lut']['need']:,}", f"{fit['ff']['need']:,}",
                             f"{e['latency_ms']:.1f}"])
    out.append("\nNext to published figures (the streaming paper dedicates logic to every layer across FPGAs; our "
               "core is one array reused by all layers):\n")
    out.append(table(["design", "LUT", "FF", "latency ms"], rows))
    return "\n".join(out), ["fpga_latency_vs_bits.png", "fpga_cycles_vs_bops.png", "fpga_resnet18_layers.png"]


def _plan_rows(rows):
    body = []
    for r in rows:
        name = f"{r['model']} w{r['w_bits']}a{r['a_bits']}"
        if "error" in r:
            why = f"needs {r['needed']} devices" if r.get("needed") else "a block exceeds one device"
            body.append([name, r["device"], r["devices"], "–", why] + [""] * 7)
            continue
        res = r["resources"]
        des = f"{r['sim_error']:+.1%}" if r.get("sim_completed") else "FAILED"
        if r.get("sim_completed") and "sim_blocks_compared" in r:  # per-block II derived by the simulator
            des += f", II {len(r['sim_block_ii_differences'])}/{r['sim_blocks_compared']} differ"
        body.append([name, r["device"], r["devices"], r["devices_used"], f"{r['fps']:,.1f}",
                     f"{r['time_per_image_ms']:.3f}", f"{r['latency_ms']:.3f}", f"{res['lut']:,}", f"{res['ff']:,}",
                     f"{res['bram']:,}", f"{res['dsp']:,}", des])
    return table(["model", "device", "n", "used", "fps", "ms/image", "latency ms", "LUT", "FF", "BRAM36", "DSP",
                  "sim vs plan"], body)


def render_streaming(data, path):
    out = ["Multi-FPGA streaming plans (one block per layer, pipeline cut across devices), each replayed by the "
           "discrete-event simulation, which derives every block's II from its folding and stream widths on its own "
           "(sim vs plan: simulated period vs planned, and how many blocks' derived II differs from the plan's).\n",
           _plan_rows([r for r in data.get("max_throughput", []) if r["model"] != "plain18"])]
    cost = next((r.get("cost_model") for r in data.get("max_throughput", []) if r.get("cost_model")), None)
    if cost:
        out.append(f"\nBlock costs: `{cost}`.")
    fit_path = REPO / "vta_ext" / "rtl_fit" / "mvau_fit.json"
    if fit_path.is_file() and cost and "mvau_fit" in cost:
        fit = json.loads(fit_path.read_text())
        f = fit["fit"]
        n_fit = sum(r["role"] == "fit" for r in fit["rows"])
        out.append(f"\nBlock RTL fit ({fit['source']}, {fit['tools'].get('yosys', '')}, {fit['sweep_seconds']:.0f} s of "
                   f"synthesis): {n_fit} fitted points, max error LUT {f['lut_fit_max_rel_error']:.1%}, FF "
                   f"{f['ff_fit_max_rel_error']:.1%}; held-out points (larger PE, SIMD or bits than any fitted one):\n")
        out.append(table(["PE", "SIMD", "w/a/o bits", "LUT yosys", "LUT fit", "LUT error", "FF yosys", "FF fit",
                          "FF error"],
                         [[h["params"]["PE"], h["params"]["SIMD"],
                           f"{h['params']['W_BITS']}/{h['params']['A_BITS']}/{h['params']['O_BITS']}",
                           f"{h['measured_luts']:,}", f"{h['predicted_luts']:,.0f}", f"{h['lut_rel_error']:.1%}",
                           f"{h['measured_ffs']:,}", f"{h['predicted_ffs']:,.0f}", f"{h['ff_rel_error']:.1%}"]
                          for h in f["heldout"]]))
    over = data.get("skip_overhead", [])
    if over:
        out.append("\nSkip connections (paper: ResNet-18 +17.5% time vs AlexNet):\n")
        out.append(table(["device", "n", "ResNet-18 vs AlexNet time", "vs plain-18 time", "vs plain-18 LUT",
                          "vs plain-18 BRAM", "skip FIFO BRAM36"],
                         [[o["device"], o["devices"], f"{o['vs_alexnet_time']:+.1%}", f"{o['vs_plain_time']:+.1%}",
                           f"{o['vs_plain_lut']:+.1%}", f"{o['vs_plain_bram']:+.1%}", o["skip_fifo_bram"]]
                          for o in over]))
    if data.get("at_paper_fps"):
        paper = data.get("paper", {})
        figs = "; ".join(f"{m} {v.get('lut', 0):,} LUT" + (f", {v['ff']:,} FF" if v.get("ff") else "")
                         + f", {v['time_ms']} ms" for m, v in paper.items())
        out.append(f"\nPlans at the paper's throughput (paper: {figs}):\n")
        out.append(_plan_rows(data["at_paper_fps"]))
    if data.get("bits"):
        out.append("\nResNet-18 on one device vs bits:\n")
        out.append(_plan_rows(data["bits"]))
    blocks = data.get("block_iis")
    if blocks:
        out.append(f"\nPer block, {blocks['model']} on {blocks['devices']} × {blocks['device']}: the plan's II and the "
                   "simulator's (compute = H·⌈W/MMV⌉·⌈C_out/PE⌉·⌈fan-in/SIMD⌉·b_a; read/write = rows × "
                   "⌈row bits / stream bits per clock⌉):\n")
        out.append(table(["block", "PE × SIMD × MMV", "plan II", "sim II", "compute", "read", "write", "bound"],
                         [[b["block"], " × ".join(map(str, b["fold"])), f"{b['plan_ii']:,.0f}", f"{b['sim_ii']:,.0f}",
                           f"{b['compute']:,}", f"{b['read']:,}", f"{b['write']:,}", b["bound"]]
                          for b in blocks["rows"]]))
    sweep = data.get("skip_depth_sweep")
    if sweep:
        dead = [r["depth"] for r in sweep["rows"] if r["deadlocked"]]
        full = [r["depth"] for r in sweep["rows"] if r["completed"] and r["fps"] >= 0.999 * sweep["planned_fps"]]
        out.append(f"\nFIFO depth sweep of `{sweep['fifo']}` (planned depth {sweep['planned_depth']}): deadlock at "
                   f"depth {', '.join(map(str, dead)) or 'none'}; planned {sweep['planned_fps']:,.0f} fps reached from "
                   f"depth {min(full) if full else 'never'}.")
    return "\n".join(out), ["fpga_streaming.png"]


MODE_NAMES = {0: "bit-plane", 1: "one-hot level sums", 2: "per-lane decode"}


def render_rtl(sweep, fit, sweep_path):
    out = []
    if sweep is not None:
        done = [r for r in sweep if r.get("luts") is not None]
        key = lambda r: (r["top"], r["flow"], r["params"].get("WEIGHT_MODE", -1), r["params"].get("BLOCK_IN", 0)  # noqa: E731
                         * r["params"].get("BLOCK_OUT", 0), r["params"].get("W_BITS", 0), r["params"].get("A_BITS", 0))
        body = []
        for r in sorted(done, key=key):
            p = r["params"]
            unit = MODE_NAMES.get(p.get("WEIGHT_MODE"), r["top"]) if r["top"] == "gemm_unit" else r["top"]
            lanes = p.get("BATCH", 1) * p.get("BLOCK_IN", 1) * p.get("BLOCK_OUT", 1)
            body.append([unit, r["flow"], lanes, p.get("A_BITS", "–"), p.get("W_BITS", "–"), f"{r['luts']:,}",
                         f"{r['ffs']:,}", r.get("carry", "–"), r.get("bram", "–"), r.get("dsp", "–"),
                         num(r.get("wall_s"), ".0f"), r.get("role", "")])
        out.append(f"yosys resources of the generated GEMM unit (`synth_xilinx -flatten -noiopad`, `-nodsp` for "
                   f"LUT-only counts; `synth_ice40`), {len(done)} of {len(sweep)} configurations synthesized:\n")
        out.append(table(["unit", "flow", "lanes", "b_a", "b_w", "LUT", "FF", "carry", "BRAM", "DSP", "yosys s",
                          "role"], body))
        failed = [r for r in sweep if r.get("luts") is None]
        if failed:
            names = []
            for r in failed:
                p = r["params"]
                what = "skipped" if "skipped" in r else "failed"
                names.append(f"{MODE_NAMES.get(p.get('WEIGHT_MODE'), r['top'])} "
                             f"{p.get('BATCH', 1) * p.get('BLOCK_IN', 1) * p.get('BLOCK_OUT', 1)} lanes "
                             f"b_w={p.get('W_BITS', '–')} ({what})")
            out.append(f"\nNot synthesized within the sweep's time/memory bounds: {'; '.join(names)}.")
    r2 = (fit or {}).get("bops_r2")
    if r2:
        out.append("\nBOPs relation (from the fit JSON): " + "; ".join(
            f"{MODE_NAMES.get({'bitplane': 0, 'onehot': 1, 'decode': 2}.get(k), k)}: R² LUTs vs BOPs "
            f"{v['r2_luts_vs_bops']:.3f}, LUT×cycles vs BOPs {v['r2_lut_cycles_vs_bops']:.3f} (n={v['n']})"
            for k, v in r2.items()) + ".")

    if fit:
        fmax = fit.get("fmax")
        out.append("")
        if fmax:
            c = fmax.get("config") or {}
            what = (f"GEMM unit {c.get('BATCH', 1)}×{c.get('BLOCK_IN', '?')}×{c.get('BLOCK_OUT', '?')} "
                    f"{MODE_NAMES.get(c.get('WEIGHT_MODE'), '?')}, b_a={c.get('A_BITS', '?')}, b_w={c.get('W_BITS', '?')}")
            out.append(f"- Fmax (nextpnr-ice40, {fmax.get('device', 'ice40')}): **{fmax['fmax_mhz']:.1f} MHz** for the "
                       f"{what} ({fmax.get('logic_cells', '?')} logic cells).")
        else:
            out.append("- Fmax: place and route not measured.")
        bound = [k for k in fit.get("skipped", []) if str(k.get("reason", "")).startswith("lanes x 2^b_w")]
        if bound:
            out.append(f"- {len(bound)} configurations not attempted: {bound[0]['reason'].split(' = ')[0]} above the "
                       "sweep's bound (per-lane decode / one-hot logic grows as lanes × 2^b_w).")
        worst = fit.get("heldout_max_rel_error")
        if worst is not None:
            out.append(f"- Resource model vs yosys on held-out configurations: worst LUT error {100 * worst:.1f}% "
                       f"(≤ 10%: {'**met**' if worst <= 0.10 else 'missed'}).")
        if fit.get("tools"):
            out.append("- Tools: " + "; ".join(f"{v}" for v in fit["tools"].values()) + ".")
    else:
        out.append("\nFmax and held-out model error: not measured yet: run `python benchmarks/rtl.py` "
                   "(writes `vta_ext/rtl_fit/resources_fit.json`).")
    return "\n".join(out), ["rtl_luts_vs_bops.png", "rtl_lut_cycles_vs_bops.png"]


def _case_mark(case):
    if case is None:
        return "not run"
    return "✓" if case.get("status") == "ok" else "✗"


def _near_ties(case):
    """``, 1 near tie`` when a conformance case's disagreements are all within the twin's rounding."""
    ties = case.get("near_ties", 0)
    if not case.get("disagreements"):
        return ""
    return f", {ties}/{case['disagreements']} misses near ties"


def render_conformance(data, path):
    """One row per torchvision architecture from ``benchmarks/conformance.py``'s cases."""
    cases = data.get("cases", [])
    by_model = {}
    for case in cases:
        by_model.setdefault(case["model"], {})[(case["bits"], case["importer"])] = case
    body = []
    for model in sorted(by_model):
        runs = by_model[model]
        ok = [c for c in runs.values() if c.get("status") == "ok"]
        first = next(iter(sorted(ok, key=lambda c: (-c["bits"], c["importer"]))), None)
        imports = " / ".join(_case_mark(next((c for (b, i), c in sorted(runs.items()) if i == importer), None))
                             for importer in ("torch", "onnx"))
        cpu = "✓" if ok and all(c.get("cpu_vs_reference", 1) <= 1e-5 for c in ok) else ("✗" if runs else "not run")
        fpga_runs = [c["fpga"] for c in runs.values() if "fpga" in c]
        fpga = "not run" if not fpga_runs else ("✓" if all(f == "ok" for f in fpga_runs) else "✗")
        agreement = ", ".join(f"w{b}a{b} {i} {100 * c['agreement']:.1f}%"
                              + (f" ({c['classes']} cl.{_near_ties(c)})" if "classes" in c else "")
                              if c.get("status") == "ok"
                              else f"w{b}a{b} {i} error" for (b, i), c in sorted(runs.items(), key=lambda kv: (-kv[0][0], kv[0][1])))
        body.append([model, str(len(first["ops"])) if first else "–", str(first["quantized_layers"]) if first else "–",
                     imports, f"{cpu}, {fpga}", agreement, num(first and first.get("ms"), ".1f")])
    errors = [f"- {c['model']} w{c['bits']}a{c['bits']} via {c['importer']}: {c['error']}" for c in cases
              if c.get("status") != "ok"]
    resolution = sorted({c.get("resolution") for c in cases if c.get("resolution")})
    text = (f"torchvision architectures with random weights (BN statistics randomized, classifier bias centred on "
            f"random images, on the float model and again on the fake-quant model, so top-1 depends on the input: "
            f"cl. = distinct top-1 classes of the inputs; a miss is a "
            f"near tie when it vanishes on every one of 8 copies of the input perturbed by 1e-5, i.e. the input sits "
            f"on a rounding boundary), input "
            f"{'/'.join(str(r) for r in resolution) or '?'} px, uniform per-channel PTQ (first conv and last dense fp32); "
            f"top-1 agreement of compiled `cpu` with the torch fake-quant model (quantized layers summed in float64 and rounded once, as compiled) on {data.get('inputs', '?')} random "
            "images; `cpu` ✓ means `cpu` equals `cpu-reference` within 1e-5 of the output range in every case run; "
            "ops = distinct Relax ops of the imported float module; ms = `cpu` at batch 1 (w8a8, mean of 5).\n\n"
            + table(["model", "ops", "quantized layers", "imports via torch / ONNX", "compiles cpu, fpga",
                     "top-1 agreement", "ms"], body))
    if errors:
        text += "\n\nFailed cases:\n" + "\n".join(errors)
    return text, []


def render_pretrained(data, path):
    """EfficientNet-Lite1 w8a8 PTQ vs fp32 from ``benchmarks/pretrained.py``."""
    r = data["efficientnet_lite1"]
    labelled = [("torch twin, no bias correction", r["twin"]["plain"]),
                ("torch twin, bias correction", r["twin"]["bias_correction"])]
    labelled += [(f"compiled `{name}`, bias correction", scores) for name, scores in r["compiled"].items()]
    rows = [[label] + [f"{100 * scores[k]:.1f}%" for k in ("agreement", "agreement_first_24", "relative_logit_error")]
            for label, scores in labelled]
    notes = [f"{r['quantized_layers']} layers w8a8 uniform per-channel, fp32: {', '.join(f'`{n}`' for n in r['fp32_layers'])}; "
             f"calibrated on {r['calibration_crops']} crops, evaluated on {r['crops']} other crops of scikit-learn's "
             f"two sample photos (fp32 median top-1 probability {r['fp32_median_top1_probability']:.2f}; "
             f"{r['fp32_crops_with_top2_logit_margin_below_0.1']} crops have their two best logits within 0.1)."]
    if "cpu_vs_reference" in r:
        notes.append(f"`cpu` vs `cpu-reference`: max difference {r['cpu_vs_reference']:.1e} of the output range.")
    if "integer_cpu_equals_fpga" in r:
        notes.append(f"Integer-only `cpu` and `fpga` (simulator, preset `{r['fpga_preset']}`: 8-bit weights; depthwise "
                     f"convs on the host) outputs identical on {r['integer_checks']} crops: "
                     f"{'yes' if r['integer_cpu_equals_fpga'] else 'NO'}.")
    if "cpu_ms" in r:
        notes.append(f"`cpu` batch 1: {r['cpu_ms']:.1f} ms per crop.")
    body = table(["EfficientNet-Lite1 w8a8", "top-1 agreement with fp32", "first 24 crops", "mean relative logit error"],
                 rows)
    return " ".join(notes) + "\n\n" + body, []


# (title, JSON file names in order of preference, script, renderer)
def render_fpga_build(data, path):
    rows = []
    for name, c in sorted(data.get("cores", {}).items()):
        cap, need = c["capacity"], c.get("measured")
        if need is None:
            cells = ["not synthesized: " + c.get("skipped", "?")] + [""] * 3
        else:
            cells = [f"{need[r]:,} / {cap[r]:,} ({100 * need[r] / cap[r]:.0f}%)" if cap[r] else f"{need[r]:,} / 0"
                     for r in ("lut", "ff", "bram", "dsp")]
        fits = "–" if need is None else ("**yes**" if c.get("fits") else "no")
        rows.append([f"`{name}`", c["part"], c["flow"], c["array"], f"{c['bits'][0]}/{c['bits'][1]}", c["lut_mode"],
                     c["alu_lanes"], *cells, fits, num(c.get("wall_s"), ".0f")])
    out = ["Whole core (`qnn_core`: fetch, queues, DMA, buffers as block RAM, GEMM, ALU) synthesized by yosys with "
           "its part's flow (`vta_ext.rtl.core_synth`; recorded in `vta_ext/rtl_fit/whole_core.json`, which the "
           "fit check reads), measured / part capacity. On iCE40 parts LUT is logic cells as `nextpnr-ice40 "
           "--pack-only` packs the netlist (a flip-flop shares a cell with a LUT4 only when that LUT drives it "
           "alone), which is what the part's capacity counts:\n",
           table(["preset", "part", "flow", "array", "a/w", "LUT mode", "ALU lanes", "LUT", "FF", "BRAM", "DSP",
                  "fits", "yosys s"], rows),
           "\nThe resource model's figures for these cores are in the next section (held-out rows)."]
    for name, b in sorted(data.get("bitstreams", {}).items()):
        if "error" in b:
            out.append(f"\n- `{name}` bitstream: **failed** at {b['stage']}: {b['error']}")
            continue
        lc = b["utilisation"].get("ICESTORM_LC", {})
        ram = b["utilisation"].get("ICESTORM_RAM", {})
        out.append(f"\n- `{name}` bitstream (`tvm-qnn bitstream`, nextpnr-ice40 {b['device']} {b['package']}, seed "
                   f"{b['seed']}): Fmax **{b['fmax_mhz']:.2f} MHz** at a {b['clock_mhz']:g} MHz clock "
                   f"(timing {'met' if b['timing_met'] else 'missed'}); {lc.get('used', 0):,} / "
                   f"{lc.get('available', 0):,} logic cells, {ram.get('used', 0)} / {ram.get('available', 0)} "
                   f"block RAMs; {b['bitstream_bytes']:,}-byte `core.bin`.")
    if data.get("tools"):
        out.append("\n- Tools: " + "; ".join(data["tools"].values()) + ".")
    return "\n".join(out), []


def render_fpga_core_fit(data, path):
    fit = data.get("fit")
    if not fit:
        return "cores recorded, no fit yet: run `python benchmarks/fpga_core_fit.py --refit`", []
    hardware = {c["name"]: c["hardware"] for c in data.get("cores", [])}
    rows = []
    for t in fit["rows"]:
        hw = hardware.get(t["name"])
        shape = (f"{hw['batch']}x{hw['block_in']}x{hw['block_out']} a{hw['max_a_bits']}/w{hw['max_w_bits']} "
                 f"{hw['lut_mode']}" if hw else "preset")
        cells = [f"{t['measured'][r]:,} / {t['predicted'][r]:,} ({100 * t['rel_error'][r]:.1f}%)"
                 if t["rel_error"][r] is not None else f"{t['measured'][r]:,} / {t['predicted'][r]:,}"
                 for r in ("lut", "ff", "dsp", "bram")]
        rows.append([f"`{t['name']}`", shape, t["role"], *cells])
    worst = fit["heldout_max_rel_error"]
    coefficients = ", ".join(f"`{k}` {v:,.4g}" for k, v in fit["coefficients"].items())
    out = [f"The resource model (`vta_ext.resources.estimate`) refitted on whole cores: {len(data['cores'])} "
           f"`qnn_core`s synthesized by yosys for the {data.get('part', 'xc7z020')} (`synth_xilinx`, DSPs on), "
           "plus the measured Xilinx presets (previous section) as held-out cores. LUT, FF and DSP coefficients are "
           "non-negative least squares of relative error over the `fit` cores (`vta_ext.rtl.core_fit`, written to "
           "`vta_ext/rtl_fit/core_fit.json`, which the model loads over the GEMM-unit fit); block RAM is not "
           "fitted but counted from the RTL's memories (`vta_ext.resources.memories`). Measured / model "
           "(relative error):\n",
           table(["core", "array, bits, LUT mode", "role", "LUT", "FF", "DSP", "BRAM"], rows),
           "\nHeld-out maximum relative error (target ≤ " + f"{100 * fit['target']:.0f}%): "
           + ", ".join(f"{k.upper()} {100 * v:.1f}%" for k, v in worst.items() if v is not None) + ".",
           "\nFitted coefficients: " + coefficients + "."]
    return "\n".join(out), ["fpga_core_fit.png"]


SECTIONS = [
    ("Accuracy vs BOPs (Fashion-MNIST)", ("accuracy.json", "fast-accuracy.json"), "accuracy.py", render_accuracy),
    ("Bit-serial kernels vs baselines (ResNet-18 3×3 layers)", ("kernels.json",), "kernels.py", render_kernels),
    ("Measured CPU peaks (roofline)", ("roofline.json",), "roofline.py", render_roofline),
    ("int8 VNNI kernels vs popcount and baselines (integer-only)", ("kernels_vnni.json",), "kernels_vnni.py",
     render_kernels_vnni),
    ("End-to-end model latency", ("models.json",), "models.py", render_models),
    ("BOPs-aware cost model", ("cost_model.json",), "cost_model.py", render_cost_model),
    ("Compile time", ("compile_time.json",), "compile_time.py", render_compile_time),
    ("FPGA accelerator: cycles, fps, GOP/s, resources", ("fpga.json",), "fpga.py", render_fpga),
    ("FPGA whole-core synthesis and bitstream", ("fpga_build.json",), "fpga_build.py", render_fpga_build),
    ("FPGA resource model on whole cores", ("fpga_core_fit.json",), "fpga_core_fit.py", render_fpga_core_fit),
    ("Multi-FPGA streaming plans", ("fpga_streaming.json",), "fpga_streaming.py", render_streaming),
    ("Model-zoo conformance (torchvision)", ("conformance.json",), "conformance.py", render_conformance),
    ("Pretrained EfficientNet-Lite1 w8a8 PTQ vs fp32", ("pretrained.json",), "pretrained.py", render_pretrained),
]


# renderers whose script can write extra named runs (``<stem>_<name>.json``), minus files that are not runs
# (a listed run's own variants, ``kernels_vnni_<name>.json``, are not variants of ``kernels.json`` either)
VARIANT_RUNS = {render_kernels: {"kernels_asm.json", "kernels_vnni.json"}, render_kernels_vnni: set(),
                render_models: set()}


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read benchmark JSON: {err}") from None


def render(results: Path, fit_path: Path) -> str:
    """The markdown between the README markers (deterministic for unchanged JSONs)."""
    results = Path(results)
    parts = ["## Results", "", "Generated by `python benchmarks/report.py` from the benchmark JSONs in `results/`; "
             "`python benchmarks/report.py --check` fails when this block is stale. " + PLOT_NOTE]
    for title, names, script, fn in SECTIONS:
        parts += ["", f"### {title}", ""]
        path = next((results / n for n in names if (results / n).is_file()), None)
        if path is None:
            parts.append(f"not measured yet: run `python benchmarks/{script}`")
            continue
        data = _load(path)
        extra = {}
        if fn is render_kernels and (results / "kernels_asm.json").is_file():
            extra["asm"] = _load(results / "kernels_asm.json")
        body, plots = fn(data, path, **extra)
        parts += [provenance(data, path, plots), "", body]
        if fn in VARIANT_RUNS:  # e.g. kernels.py --name kernels_tuned_1shape, models.py --name models_uniform
            for variant in sorted(results.glob(f"{path.stem}_*.json")):
                if variant.name in VARIANT_RUNS[fn] or any(variant.name.startswith(Path(other).stem + "_")
                                                           for other in VARIANT_RUNS[fn]):
                    continue
                data = _load(variant)
                body, _ = fn(data, variant)
                scheme = f" (weights: {data['scheme']})" if isinstance(data, dict) and data.get("scheme") else ""
                parts += ["", f"#### Other run: `{variant.name}`{scheme}", "", provenance(data, variant), "", body]
    parts += ["", "### RTL resources vs bits and lanes (yosys)", ""]
    sweep_path = results / "rtl_sweep.json"
    fit_path = Path(fit_path)
    sweep = _load(sweep_path) if sweep_path.is_file() else None
    fit = _load(fit_path) if fit_path.is_file() else None
    if sweep is None and fit is None:
        parts.append("not measured yet: run `python benchmarks/rtl.py`")
    else:
        source = fit_path if fit is not None else sweep_path
        body, plots = render_rtl(sweep, fit, sweep_path)
        parts += [provenance(fit or {}, source, plots), "", body]
    return "\n".join(parts)


def split_readme(text: str):
    """``(before, block, after)`` around the markers; ``ReportError`` unless each occurs once, in order."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ReportError(f"README must contain exactly one {START} followed by one {END}")
    head, rest = text.split(START)
    block, tail = rest.split(END)
    return head + START, block, END + tail


def updated_readme(text: str, block: str) -> str:
    before, _, after = split_readme(text)
    return f"{before}\n{block}\n{after}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(REPO / "results"), help="directory of the benchmark JSONs")
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--rtl-fit", default=str(REPO / "vta_ext" / "rtl_fit" / "resources_fit.json"),
                        help="calibration JSON written by benchmarks/rtl.py")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README block differs from the JSONs")
    parser.add_argument("--stdout", action="store_true", help="print the block instead of writing the README")
    args = parser.parse_args(argv)
    try:
        block = render(Path(args.results), Path(args.rtl_fit))
        if args.stdout:
            print(block)
            return 0
        readme = Path(args.readme)
        text = readme.read_text(encoding="utf-8")
        new = updated_readme(text, block)
    except (ReportError, OSError) as err:
        print(f"report: {err}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"report: the results block of {readme} is stale: run `python benchmarks/report.py`",
                  file=sys.stderr)
            return 1
        print(f"report: {readme} results block is up to date")
        return 0
    if new != text:
        tmp = readme.with_name(readme.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, readme)
    print(f"report: wrote the results block of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

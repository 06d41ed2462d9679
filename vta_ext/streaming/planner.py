"""Streaming multi-FPGA planner (the third seed paper's architecture, FINN-style folding).

Every layer is a dedicated block; blocks are connected by row streams through FIFOs. The plan:

1. **Balance.** For a target initiation interval ``P`` (cycles per image), each block gets the
   cheapest folding (``pe x simd x mmv`` lanes, bit-serial over input bits; see
   ``streaming.blocks``) whose ``II <= P``; the slowest block (or device link, or the host input
   link) then sets the throughput ``clock / max II``.
2. **Cut.** The blocks, in topological order, are cut into consecutive segments, one per
   device, minimising the highest utilisation of any resource on any device (dynamic
   programming); a cut is allowed only if the streams crossing it fit the link
   (``bits/image / link_bits_per_cycle <= P``), and every device stays under
   ``max_utilization``. With ``target_fps=None`` the smallest ``P`` that fits on ``devices`` is
   found by bisection over the achievable IIs.
3. **FIFOs.** Row 0 of each stream is scheduled through the DAG (a block emits its row 0
   ``need(0)`` input-row intervals plus one compute row after its input's row 0). The two
   inputs of a join (ResNet ``add``) arrive with a latency difference; the earlier (skip)
   FIFO holds that difference in rows plus 2 (one being read, one being written). Other FIFOs
   hold 2 rows. The row-level simulation finds this safe with margin (ResNet-18's first skip:
   planned 6 rows, full rate from 4, stalls at 2-3, deadlock at 1).

A block's II is its compute II, or the time its input streams take to deliver an image when
they are narrower (that never exceeds the producer's II, so it moves no period, only the
block's stated II). ``streaming.sim.simulate(plan)`` derives every block's II again from its
folding and stream widths (its own formula), replays the plan row by row with those times, and
checks the throughput, the per-block IIs and the absence of deadlock. Too few devices raises ``DeviceCountError`` with the number needed.
"""

from __future__ import annotations

import math

from tvm_qnn.errors import QnnError, ShapeError

from vta_ext.streaming.netdefs import get_network
from vta_ext.streaming.blocks import block_specs, source_row_cycles
from vta_ext.streaming.cost import COST_MODEL_NAME, RESOURCES, fifo_resources, get_device
from vta_ext.streaming.graph import LayerGraph, from_qnn_layers
from vta_ext.streaming.plan import BlockPlan, FifoPlan, LinkPlan, StreamingPlan

MAX_DEVICES = 64   # the search for "how many devices would be needed" stops here
FOLDS_TRIED = 6    # cheapest-lanes foldings compared by resources at each target
MIN_FIFO_ROWS = 2


class DeviceCountError(QnnError, ValueError):
    """The model does not fit on the given number of devices; ``needed`` says how many would
    (None when even a device per layer is not enough)."""

    def __init__(self, message, needed=None, given=None):
        super().__init__(message)
        self.needed = needed
        self.given = given


class _Evaluator:
    """Foldings, costs and partitions at one target II (cached per block and folding)."""

    def __init__(self, graph, specs, device):
        self.graph, self.specs, self.device = graph, specs, device
        self.order = [layer.name for layer in graph.layers]
        self.position = {name: i for i, name in enumerate(self.order)}
        self.cap = device.capacity()
        self._cost_cache = {}
        self._foldings = {name: specs[name].foldings() for name in self.order}
        src = specs[self.order[0]]
        self.source_row_cycles = source_row_cycles(src, device)

    def cost(self, name, fold):
        key = (name, fold)
        if key not in self._cost_cache:
            spec = self.specs[name]
            self._cost_cache[key] = {r: 0 for r in RESOURCES} if spec.op == "input" else spec.resources(*fold)
        return self._cost_cache[key]

    def stream_width(self, name, folds):
        """Bits per clock of ``name``'s output stream: ``pe * mmv`` outputs of ``out_bits`` per clock
        (the image source: the host link)."""
        spec = self.specs[name]
        if spec.op == "input":
            return self.device.link_bits_per_cycle
        pe, _, mmv = folds[name]
        return pe * mmv * spec.out_bits

    def block_ii(self, name, folds):
        """Cycles per image of block ``name`` in the pipeline: its compute II, or the time its
        input streams take to deliver an image when they are narrower (a block cannot run ahead
        of its input; that time never exceeds the producer's own II, so the period is unchanged,
        but the block's II and the row-0 schedule are)."""
        spec = self.specs[name]
        if spec.op == "input":
            return self.source_row_cycles * spec.rows_out
        read = max(self.specs[src].rows_out * math.ceil(self.specs[src].row_bits_out / self.stream_width(src, folds))
                   for src in spec.inputs)
        return max(spec.ii(*folds[name]), read)

    def candidate_iis(self):
        values = {self.source_row_cycles * self.specs[self.order[0]].rows_out}
        for name in self.order[1:]:
            spec = self.specs[name]
            values.update(spec.ii(*fold) for fold in self._foldings[name])
        return sorted(values)

    def fastest_ii(self):
        """The II of the fully unrolled pipeline: its slowest block at its most lanes."""
        source = self.source_row_cycles * self.specs[self.order[0]].rows_out
        return max([source] + [self.specs[n].ii(*self._foldings[n][-1]) for n in self.order[1:]])

    def folds_at(self, target_ii):
        """{name: (pe, simd, mmv)}: the cheapest folding meeting ``target_ii`` (None if none can)."""
        if self.source_row_cycles * self.specs[self.order[0]].rows_out > target_ii:
            return None  # the host link cannot stream images in that fast
        folds = {self.order[0]: (1, 1, 1)}
        for name in self.order[1:]:
            spec = self.specs[name]
            feasible = [f for f in self._foldings[name] if spec.ii(*f) <= target_ii][:FOLDS_TRIED]
            if not feasible:
                return None
            folds[name] = min(feasible, key=lambda f: sum(self.cost(name, f)[r] / max(self.cap[r], 1) for r in RESOURCES))
        return folds

    # ------------------------------------------------------------------ FIFO depths
    def fifo_depths(self, folds, period, cuts=()):
        """{(src, dst): (depth_rows, lag_cycles)} from the row-0 schedule of the DAG."""
        arrival = {}
        depths = {}
        link_delay = self.device.link_latency_cycles
        for name in self.order:
            spec = self.specs[name]
            if spec.op == "input":
                arrival[name] = self.source_row_cycles
                continue
            in_times = {}
            for src in spec.inputs:
                crossing = any(self.position[src] < cut <= self.position[name] for cut in cuts)
                extra = 0.0
                if crossing:
                    hops = sum(self.position[src] < cut <= self.position[name] for cut in cuts)
                    row_transfer = self.specs[src].row_bits_out / self.device.link_bits_per_cycle
                    extra = hops * (link_delay + row_transfer)
                in_times[src] = arrival[src] + extra
            latest = max(in_times.values())
            for src, t in in_times.items():
                row_interval = period / self.specs[src].rows_out
                lag = latest - t
                depths[(src, name)] = (MIN_FIFO_ROWS + math.ceil(lag / row_interval - 1e-9), lag)
            row_in = period / spec.rows_in
            compute = spec.ii(*folds[name]) / spec.rows_out  # reading overlaps the input rows' arrival
            arrival[name] = latest + spec.need(0) * row_in + compute
        return depths, arrival

    def fifo_cost(self, folds, depths):
        """Resources of each FIFO, charged to the consumer's block (it sits on its device)."""
        per_block = {name: {r: 0 for r in RESOURCES} for name in self.order}
        for (src, dst), (depth, _) in depths.items():
            spec = self.specs[src]
            width = folds[src][0] * folds[src][2] * spec.out_bits if spec.op != "input" else spec.row_bits_out // max(1, self.graph.shapes[src][2])
            cost = fifo_resources(depth, spec.row_bits_out, width)
            for r in RESOURCES:
                per_block[dst][r] += cost[r]
        return per_block

    # ------------------------------------------------------------------ partition
    def cut_bits(self, cut):
        return sum(self.specs[src].row_bits_out * self.specs[src].rows_out
                   for src, dst in self.graph.edges if self.position[src] < cut <= self.position[dst])

    def partition(self, totals, target_ii, max_parts):
        """Min over <= max_parts consecutive segments of the worst utilisation: (util, cuts)."""
        n = len(self.order)
        prefix = [{r: 0 for r in RESOURCES}]
        for name in self.order:
            prefix.append({r: prefix[-1][r] + totals[name][r] for r in RESOURCES})

        def util(i, j):
            return max((prefix[j][r] - prefix[i][r]) / self.cap[r] if self.cap[r] else
                       (math.inf if prefix[j][r] - prefix[i][r] else 0.0) for r in RESOURCES)

        link_ok = [True] + [self.cut_bits(c) / self.device.link_bits_per_cycle <= target_ii for c in range(1, n)]
        limit = self.device.max_utilization
        best = {0: (0.0, ())}  # segment end -> (worst util, cuts), for the current part count
        answer = None
        for _ in range(max_parts):
            nxt = {}
            for i, (worst, cuts) in best.items():
                if i == n or (i and not link_ok[i]):
                    continue
                for j in range(i + 1, n + 1):
                    u = util(i, j)
                    if u > limit:
                        break
                    candidate = (max(worst, u), cuts + ((i,) if i else ()))
                    if j not in nxt or candidate[0] < nxt[j][0]:
                        nxt[j] = candidate
            if n in nxt and (answer is None or nxt[n][0] < answer[0]):
                answer = nxt[n]
            best = nxt
            if not best:
                break
        return answer

    def oversized(self, totals):
        """Blocks that alone exceed one device (with the resource and how much)."""
        limit = self.device.max_utilization
        found = []
        for name in self.order:
            for r in RESOURCES:
                if totals[name][r] > limit * self.cap[r]:
                    found.append(f"{name!r} needs {totals[name][r]:,} {r.upper()} of {self.cap[r]:,}")
                    break
        return found

    def min_devices(self, totals, target_ii):
        for count in range(1, MAX_DEVICES + 1):
            if self.partition(totals, target_ii, count) is not None:
                return count
        return None

    def totals_at(self, target_ii):
        folds = self.folds_at(target_ii)
        if folds is None:
            return None, None
        period = max(self.block_ii(n, folds) for n in self.order[1:])
        depths, _ = self.fifo_depths(folds, period)
        fifo = self.fifo_cost(folds, depths)
        totals = {n: {r: self.cost(n, folds[n])[r] + fifo[n][r] for r in RESOURCES} for n in self.order}
        return folds, totals


def _resolve_graph(model_graph):
    """A LayerGraph, a ``netdefs`` name, a quantized Relax IRModule or a chain of QnnLayers."""
    if isinstance(model_graph, LayerGraph):
        return model_graph
    if isinstance(model_graph, str):
        return get_network(model_graph)
    if type(model_graph).__name__ == "IRModule":
        from vta_ext.streaming.from_relax import graph_from_relax  # imports TVM only when given a module

        return graph_from_relax(model_graph)
    if isinstance(model_graph, (list, tuple)) and model_graph and all(hasattr(x, "weight_idx") for x in model_graph):
        return from_qnn_layers("qnn_layers", model_graph)
    raise ShapeError(f"model_graph={type(model_graph).__name__}; expected a LayerGraph, a network name, "
                     f"a quantized Relax IRModule or a list of QnnLayer")


def plan(model_graph, devices=1, device="vu9p", target_fps=None, a_bits=2, w_bits=2):
    """Plan ``model_graph`` (a ``LayerGraph`` or a ``netdefs`` name) onto ``devices`` devices.

    ``target_fps=None`` maximises throughput on ``devices`` (spreading the blocks over all of
    them); a number plans the cheapest pipeline reaching it on as few devices as it needs. Raises ``DeviceCountError`` (with ``.needed``) when it does not fit.
    """
    graph = _resolve_graph(model_graph)
    spec_device = get_device(device)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise DeviceCountError(f"devices={devices!r}; expected an int >= 1", given=devices)
    specs = block_specs(graph, a_bits, w_bits)
    ev = _Evaluator(graph, specs, spec_device)
    candidates = ev.candidate_iis()
    clock_hz = spec_device.clock_mhz * 1e6
    where = f"model {graph.name!r} at w{w_bits}a{a_bits} on {spec_device.name!r} ({spec_device.part})"

    def need_at(target):
        folds, totals = ev.totals_at(target)
        return (None, None, None) if folds is None else (folds, totals, ev.min_devices(totals, target))

    def too_few(goal, totals, needed):
        if needed is not None:
            return f"{where}: needs {needed} devices for {goal}, got {devices}; plan with devices={needed} or a larger device"
        blocks = ev.oversized(totals) or ["the link bandwidth between every pair of segments"]
        return (f"{where}: does not fit at {goal} on any number of devices: a block cannot be split across "
                f"devices and {'; '.join(blocks)} (at {spec_device.max_utilization:.0%} max utilisation)")

    if target_fps is not None:
        if isinstance(target_fps, bool) or not isinstance(target_fps, (int, float)) or not 0 < target_fps < math.inf:
            raise ShapeError(f"target_fps={target_fps!r}; expected a finite number > 0 or None")
        target = clock_hz / target_fps
        folds, totals, needed = need_at(target)
        if folds is None:
            best = clock_hz / ev.fastest_ii()
            raise DeviceCountError(f"{where}: no folding reaches {target_fps:g} fps at {spec_device.clock_mhz:g} MHz "
                                   f"(a block cannot be split across devices; at most {best:.4g} fps)", None, devices)
        if needed is None or needed > devices:
            raise DeviceCountError(too_few(f"{target_fps:g} fps", totals, needed), needed, devices)
    else:
        slowest = candidates[-1]
        folds, totals, needed = need_at(slowest)
        if needed is None or needed > devices:
            raise DeviceCountError(too_few("its slowest (fewest-lanes) folding", totals, needed), needed, devices)
        lo, hi = 0, len(candidates) - 1  # invariant: candidates[hi] fits
        while lo < hi:
            mid = (lo + hi) // 2
            f, t, n = need_at(candidates[mid])
            if f is not None and n is not None and n <= devices:
                hi = mid
            else:
                lo = mid + 1
        target = candidates[hi]
        folds, totals, needed = need_at(target)
    return _build_plan(graph, ev, folds, target, devices, a_bits, w_bits, target_fps)


def _build_plan(graph, ev, folds, target, devices, a_bits, w_bits, target_fps):
    specs, device = ev.specs, ev.device
    order = ev.order
    period_blocks = max(ev.block_ii(n, folds) for n in order[1:])
    _, totals = ev.totals_at(target)
    # a throughput target is met on as few devices as possible; a throughput maximum spreads
    # the blocks over every device given, balancing their utilisation
    parts = ev.min_devices(totals, target) if target_fps is not None else devices
    worst, cuts = ev.partition(totals, target, parts)
    depths, arrival = ev.fifo_depths(folds, period_blocks, cuts)
    fifo = ev.fifo_cost(folds, depths)
    bounds = [0, *cuts, len(order)]
    device_of = {}
    for index in range(len(bounds) - 1):
        for name in order[bounds[index]:bounds[index + 1]]:
            device_of[name] = index
    links = []
    for cut in cuts:
        bits = ev.cut_bits(cut)
        ii = bits / device.link_bits_per_cycle
        crossing = tuple(f"{s}->{d}" for s, d in graph.edges if ev.position[s] < cut <= ev.position[d])
        links.append(LinkPlan(device_of[order[cut - 1]], device_of[order[cut]], crossing, bits, ii))
    src_spec = specs[order[0]]
    source_ii = ev.source_row_cycles * src_spec.rows_out
    period = max([period_blocks, source_ii] + [link.ii_cycles for link in links])
    blocks = []
    for name in order:
        spec = specs[name]
        pe, simd, mmv = folds[name]
        ii = source_ii if spec.op == "input" else ev.block_ii(name, folds)
        blocks.append(BlockPlan(name, spec.op, device_of[name], pe, simd, mmv, ii, ii / spec.rows_out, spec.rows_out,
                                spec.in_bits, spec.w_bits, arrival[name], ev.cost(name, folds[name])))
    fifos = []
    for (src, dst), (depth, lag) in depths.items():
        fifos.append(FifoPlan(src, dst, depth, lag, specs[src].row_bits_out, graph[dst].op == "add",
                              device_of[src] != device_of[dst], dict(fifo_resources(
                                  depth, specs[src].row_bits_out,
                                  folds[src][0] * folds[src][2] * specs[src].out_bits if specs[src].op != "input"
                                  else specs[src].row_bits_out // graph.shapes[src][2]))))
    last = order[-1]
    latency = arrival[last] + (specs[last].rows_out - 1) * period_blocks / specs[last].rows_out
    per_device = []
    for index in range(len(bounds) - 1):
        used = {r: 0 for r in RESOURCES}
        for name in order[bounds[index]:bounds[index + 1]]:
            for r in RESOURCES:
                used[r] += ev.cost(name, folds[name])[r] + fifo[name][r]
        per_device.append(used)
    return StreamingPlan(
        model=graph.name, device=device, devices_given=devices, a_bits=a_bits, w_bits=w_bits,
        target_fps=target_fps, target_ii_cycles=target, period_cycles=period, latency_cycles=latency,
        blocks=tuple(blocks), fifos=tuple(fifos), links=tuple(links), device_resources=tuple(per_device),
        cost_model=COST_MODEL_NAME, graph=graph)


def plan_cli(model_name_or_path, devices, config="vu9p", target_fps=None, a_bits=2, w_bits=2, as_json=False):
    """Text behind ``tvm-qnn plan MODEL --devices N --config DEVICE``: the plan as Markdown.

    ``model_name_or_path``: a ``netdefs`` network name or a ``tvm-qnn-streamgraph/1`` JSON file;
    ``config``: a device preset name (``configs/devices.json``) or a device JSON file.
    """
    from vta_ext.streaming.plan import load_graph  # only the CLI reads graph files

    graph = load_graph(model_name_or_path)
    result = plan(graph, devices=devices, device=config, target_fps=target_fps, a_bits=a_bits, w_bits=w_bits)
    return result.to_json() if as_json else result.to_markdown()

"""Discrete-event simulation of a streaming plan, one feature-map row per event.

Every block of the plan becomes a *stage*; every stream a bounded FIFO of rows. A stage

* absorbs input rows from its FIFOs into its line buffer while the buffer has room
  (``linebuf_rows`` rows from the first row its current output row still needs);
* starts output row ``r`` when every input has delivered row ``need(r)`` and it is idle,
  computes for ``row_cycles`` (derived below, not the plan's), then holds the row until **every** output FIFO
  has room (a stream fork writes all its consumers at once) and pushes it;
* moves on to the next image when all rows are out and all input rows consumed; its line
  buffer keeps absorbing across the image boundary (rows are counted over all images).

Device links of a multi-device plan are pass-through stages that time-share the link: each
crossing stream gets bandwidth in proportion to its bits, so the link stage's II equals the
plan's link II (the link's fixed latency is not simulated; it only delays).

The simulation stops when all images are out, when no event is pending although work remains
(a **deadlock**: reported with what every stuck stage waits for), or after ``max_steps``
(reported as a stall; the simulation never hangs).

Block timing (derived here, not taken from the plan)
---------------------------------------------------
Each stage's time per row comes from ``block_cycles``, written from the layer's own shape and
folding and not from the planner's cost code, so "simulation vs plan" is a real check. A block
is a FINN-style matrix-vector-activation unit (MVAU, ``vta_ext/rtl/verilog/mvau_stream.v``):
``PE`` output channels x ``SIMD`` fan-in lanes x ``MMV`` output pixels, bit-serial over the
``b_a`` activation bits of its input stream (one bit plane per clock, MSB first; a lane multiplies
a ``b_w``-bit weight by one activation bit, so ``b_w`` costs area, not time). Per image::

    compute = H_out * ceil(W_out / MMV) * ceil(C_out / PE) * ceil(C_in/groups * K_h * K_w / SIMD) * b_a
              (dense: K = H_in x W_in, one "row"; the RTL's fold is NF * SF * b_a clocks)
    pool    = H_out * ceil(W_out / MMV) * ceil(C / PE) * K_h * K_w   (global pool: ceil(C/PE) * H_in * W_in)
    add     = H * ceil(W / MMV) * ceil(C / PE)
    read    = H_in  * ceil(W_in * C_in * b_in / width_in)     per input stream
    write   = H_out * ceil(W_out * C_out * b_out / width_out)
    II      = max(compute, read, write)

A stream is as wide as its producer's output port: ``PE * MMV * b_out`` bits per clock for a
block, the device link's bits per clock for the image source (``width_in`` of a consumer is its
producer's ``width_out``). A row of ``C x W x b`` bits takes ``ceil(bits / width)`` clocks to
cross. ``SimResult.blocks`` lists, per block, this II next to the plan's. In the event loop a
stage spends ``max(compute, write) / H_out`` per row; the read bound is enforced by the rows'
arrival (a stream's read time is its producer's write time), so it is not charged twice.

What the comparison found: the compute terms agree with the planner on every plan tried; the
planner stated blocks fed by a narrower stream (a global pool or maxpool after a lightly folded
producer) at their compute II. The derived II is the right one (a block cannot run ahead of its
input), so the planner now charges the input stream as well; the period never moved (the read
time is within the producer's II). The measured period can still exceed the plan's by a row or
two per image (<= 0.25 % on AlexNet): a conv whose first window reaches into the top padding
needs more fresh rows for row 0 of the next image than its ``window + stride`` line buffer can
prefetch during the last row of the current one.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from tvm_qnn.errors import QnnError

from vta_ext.streaming.blocks import block_specs


class StreamDeadlockError(QnnError):
    """The streams of a plan deadlock or stall; the message names the stuck FIFOs and stages."""


@dataclass
class _Fifo:
    name: str
    depth: int
    src: int
    dst: int
    count: int = 0
    max_count: int = 0


@dataclass
class _Stage:
    name: str
    rows_in: int
    rows_out: int
    window: int
    stride: int
    pad: int
    linebuf: int
    row_cycles: float
    inputs: list = field(default_factory=list)   # fifo indices
    outputs: list = field(default_factory=list)  # fifo indices
    image: int = 0
    next_row: int = 0
    busy_row: int | None = None
    holding: bool = False
    absorbed: list = field(default_factory=list)

    def need(self, row):
        return min(self.rows_in - 1, row * self.stride - self.pad + self.window - 1)

    def first_needed(self, row):
        return self.rows_in if row >= self.rows_out else max(0, row * self.stride - self.pad)


@dataclass(frozen=True)
class SimResult:
    images: int
    done_cycles: tuple        # when each image's last output row left the pipeline
    start_cycles: tuple       # when each image's first input row was emitted
    predicted_period_cycles: float
    deadlocked: bool
    stalled: bool
    report: str               # what the stuck stages wait for ('' when all images completed)
    steps: int
    fifo_max_rows: dict       # FIFO name -> highest occupancy seen
    blocks: dict = field(default_factory=dict)  # block -> {"plan_ii", "sim_ii", "compute", "read", "write", "bound"}

    def ii_differences(self, rel=1e-9):
        """Blocks whose derived II differs from the plan's: {name: (plan_ii, sim_ii, bound)}."""
        return {name: (b["plan_ii"], b["sim_ii"], b["bound"]) for name, b in self.blocks.items()
                if abs(b["sim_ii"] - b["plan_ii"]) > rel * max(1.0, b["plan_ii"])}

    @property
    def completed(self):
        return not (self.deadlocked or self.stalled)

    @property
    def period_cycles(self):
        """Steady-state cycles per image, measured over the second half of the images."""
        done = self.done_cycles
        if len(done) < 3:
            return float("nan")
        first = len(done) // 2
        return (done[-1] - done[first - 1]) / (len(done) - first)

    @property
    def throughput_error(self):
        return self.period_cycles / self.predicted_period_cycles - 1.0

    @property
    def latency_cycles(self):
        return self.done_cycles[0] - self.start_cycles[0] if self.done_cycles else float("nan")

    def raise_if_failed(self):
        if not self.completed:
            raise StreamDeadlockError(self.report)
        return self


def block_cycles(layer, in_shape, out_shape, in_bits, out_bits, fold, in_widths, out_width):
    """Cycles per image of one streaming block from its own parameters (see the module docstring).

    ``layer``: the ``StreamLayer``; ``in_shape``/``out_shape``: (C, H, W); ``fold``: (pe, simd, mmv);
    ``in_widths``: (bits per clock, bits per value) of each input stream; ``out_width``: bits per
    clock of its output stream; ``in_bits``: the bit-serial depth (the widest input's bits).
    Returns {"compute", "read", "write", "ii", "bound"} (``bound``: which term sets the II).
    """
    pe, simd, mmv = fold
    c_in, h_in, w_in = in_shape
    c_out, h_out, w_out = out_shape
    op = layer.op
    if op == "conv2d":
        kh, kw = layer.kernel
        lanes_in = c_in // layer.groups * kh * kw
        compute = h_out * math.ceil(w_out / mmv) * math.ceil(c_out / pe) * math.ceil(lanes_in / simd) * in_bits
    elif op == "dense":
        compute = math.ceil(c_out / pe) * math.ceil(c_in * h_in * w_in / simd) * in_bits
    elif op == "add":
        compute = h_out * math.ceil(w_out / mmv) * math.ceil(c_out / pe)
    elif layer.kernel is None:  # global average pool: one element per channel lane per clock
        compute = math.ceil(c_in / pe) * h_in * w_in
    else:  # max / average pool with a window
        kh, kw = layer.kernel
        compute = h_out * math.ceil(w_out / mmv) * math.ceil(c_out / pe) * kh * kw
    read = max(h_in * math.ceil(w_in * c_in * bits / width) for width, bits in in_widths)
    write = h_out * math.ceil(w_out * c_out * out_bits / out_width)
    terms = {"compute": compute, "read": read, "write": write}
    bound = max(terms, key=lambda k: (terms[k], k == "compute"))
    return {**terms, "ii": terms[bound], "bound": bound}


def derive_block_iis(plan, graph, specs):
    """{block: derived timing} of every block of ``plan`` (the source: its rows over the link)."""
    widths, bits_of, derived = {}, {}, {}
    link = plan.device.link_bits_per_cycle
    for block in plan.blocks:
        layer = graph[block.name]
        spec = specs[block.name]
        bits_of[block.name] = spec.out_bits
        if layer.op == "input":
            c, h, w = graph.shapes[block.name]
            widths[block.name] = link
            cycles = h * math.ceil(w * c * spec.out_bits / link)
            derived[block.name] = {"compute": 0, "read": cycles, "write": cycles, "ii": cycles, "bound": "read"}
            continue
        widths[block.name] = block.pe * block.mmv * spec.out_bits
        in_shape = graph.shapes[layer.inputs[0]]
        in_bits = max(bits_of[src] for src in layer.inputs)
        derived[block.name] = block_cycles(layer, in_shape, graph.shapes[block.name], in_bits, spec.out_bits,
                                           (block.pe, block.simd, block.mmv),
                                           [(widths[s], bits_of[s]) for s in layer.inputs],
                                           widths[block.name])
    return derived


def _build(plan, fifo_depths):
    graph = plan.graph
    if graph is None:
        raise StreamDeadlockError(f"plan of {plan.model!r} carries no layer graph; make it with streaming.plan")
    specs = block_specs(graph, plan.a_bits, plan.w_bits)
    derived = derive_block_iis(plan, graph, specs)
    stages, index = [], {}
    for block in plan.blocks:
        spec = specs[block.name]
        index[block.name] = len(stages)
        # a stage's row time is its compute or its output port, whichever is slower; its input
        # port's bound arrives with the rows (a stream's read time is its producer's write time)
        timing = derived[block.name]
        row_cycles = max(timing["compute"], timing["write"]) / spec.rows_out
        stages.append(_Stage(block.name, spec.rows_in if spec.op != "input" else 0, spec.rows_out,
                             spec.window_rows, spec.stride_rows, spec.pad_top, spec.linebuf_rows, row_cycles))
    fifos = []

    def connect(src, dst, depth, name):
        fifos.append(_Fifo(name, depth, src, dst))
        stages[src].outputs.append(len(fifos) - 1)
        stages[dst].inputs.append(len(fifos) - 1)

    position = {block.name: i for i, block in enumerate(plan.blocks)}
    cuts = [i for i in range(1, len(plan.blocks)) if plan.blocks[i].device != plan.blocks[i - 1].device]
    bits_per_cycle = plan.device.link_bits_per_cycle
    depth_of = {(f.src, f.dst): f.depth_rows for f in plan.fifos}
    depth_of.update(fifo_depths or {})
    for layer in graph.layers:  # inputs in the order of the layer's inputs (main path first)
        for src in layer.inputs:
            depth = int(depth_of[(src, layer.name)])
            previous = index[src]
            rows = specs[src].rows_out
            for hop, cut in enumerate(c for c in cuts if position[src] < c <= position[layer.name]):
                link = plan.links[cuts.index(cut)]
                row_cycles = link.bits_per_image / bits_per_cycle / rows
                stages.append(_Stage(f"link{link.from_device}->{link.to_device}[{src}]", rows, rows, 1, 1, 0, 2,
                                     row_cycles))
                connect(previous, len(stages) - 1, 2, f"{src}->link{link.from_device}->{link.to_device}")
                previous = len(stages) - 1
            connect(previous, index[layer.name], depth, f"{src}->{layer.name}")
    for stage in stages:
        stage.absorbed = [0] * len(stage.inputs)
    blocks = {b.name: {"plan_ii": b.ii_cycles, "sim_ii": derived[b.name]["ii"],
                       **{k: derived[b.name][k] for k in ("compute", "read", "write", "bound")}} for b in plan.blocks}
    return stages, fifos, blocks


def simulate(plan, images=6, fifo_depths=None, max_steps=None):
    """Run ``images`` images through ``plan``; ``fifo_depths`` overrides {(src, dst): rows}."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise StreamDeadlockError(f"images={images!r}; expected an int >= 1")
    stages, fifos, blocks = _build(plan, fifo_depths)
    for fifo in fifos:
        if isinstance(fifo.depth, bool) or fifo.depth < 1:
            raise StreamDeadlockError(f"FIFO {fifo.name!r}: depth={fifo.depth!r}; expected an int >= 1")
    rows_total = sum(stage.rows_out for stage in stages)
    max_steps = max_steps or 40 * rows_total * images + 10_000
    heap, seq, now, steps = [], 0, 0.0, 0
    done, started = [], []
    sinks = [i for i, stage in enumerate(stages) if not stage.outputs]

    def progress(i, wake):
        nonlocal seq
        st = stages[i]
        while True:
            moved = False
            if st.holding and all(fifos[f].count < fifos[f].depth for f in st.outputs):
                for f in st.outputs:
                    fifos[f].count += 1
                    fifos[f].max_count = max(fifos[f].max_count, fifos[f].count)
                    wake.add(fifos[f].dst)
                st.holding = False
                moved = True
                if i in sinks and st.next_row == st.rows_out and i == sinks[0]:
                    done.append(now)
            # rows are counted across images: the line buffer keeps streaming over image
            # boundaries, as a sliding-window generator does
            base = st.image * st.rows_in + st.first_needed(st.busy_row if st.busy_row is not None else st.next_row)
            for k, f in enumerate(st.inputs):
                while fifos[f].count and st.absorbed[k] - base < st.linebuf:
                    fifos[f].count -= 1
                    st.absorbed[k] += 1
                    wake.add(fifos[f].src)
                    moved = True
            if (st.busy_row is None and not st.holding and st.image < images and st.next_row < st.rows_out
                    and all(a > st.image * st.rows_in + st.need(st.next_row) for a in st.absorbed)):
                if not st.inputs and st.next_row == 0:
                    started.append(now)
                st.busy_row = st.next_row
                st.next_row += 1
                seq += 1
                heapq.heappush(heap, (now + st.row_cycles, seq, i))
                moved = True
            if (st.busy_row is None and not st.holding and st.image < images and st.next_row == st.rows_out
                    and all(a >= (st.image + 1) * st.rows_in for a in st.absorbed)):
                st.image += 1
                st.next_row = 0
                moved = True
            if not moved:
                return

    def settle(first):
        nonlocal steps
        work = {first}
        while work:
            i = work.pop()
            steps += 1
            wake = set()
            progress(i, wake)
            work |= wake

    for i in range(len(stages)):
        settle(i)
    while heap and len(done) < images and steps < max_steps:
        now, _, i = heapq.heappop(heap)
        stages[i].busy_row = None
        stages[i].holding = True
        settle(i)
    deadlocked = len(done) < images and not heap
    stalled = len(done) < images and not deadlocked
    report = ""
    if deadlocked or stalled:
        report = _report(plan, stages, fifos, now, deadlocked, steps, len(done), images)
    return SimResult(images, tuple(done), tuple(started[:len(done)]), plan.period_cycles, deadlocked, stalled,
                     report, steps, {f.name: f.max_count for f in fifos}, blocks)


def _report(plan, stages, fifos, now, deadlocked, steps, done, images, max_lines=12):
    """What blocks progress: stages holding a row for a full FIFO, and joins missing an input."""
    what = "deadlock" if deadlocked else f"stall: no completion within {steps} steps"
    lines = []
    for st in stages:
        if st.image >= images:
            continue
        if st.holding:
            full = [f"{fifos[f].name!r} (full, {fifos[f].count}/{fifos[f].depth} rows)"
                    for f in st.outputs if fifos[f].count >= fifos[f].depth]
            lines.append(f"  {st.name!r} holds output row {st.next_row - 1} of image {st.image}; blocked by {', '.join(full)}")
        elif st.busy_row is None and st.next_row < st.rows_out and len(st.inputs) > 1:
            needed = st.image * st.rows_in + st.need(st.next_row)
            waiting = [f"{fifos[f].name!r} (has {fifos[f].count}/{fifos[f].depth})"
                       for k, f in enumerate(st.inputs) if st.absorbed[k] <= needed]
            ready = [k for k, f in enumerate(st.inputs) if st.absorbed[k] > needed or fifos[f].count]
            if ready:  # a join with one input in hand and the other missing (not merely downstream)
                lines.append(f"  join {st.name!r} waits for row {st.need(st.next_row)} of image {st.image} from {', '.join(waiting)}")
    more = len(lines) - max_lines
    lines = lines[:max_lines] + ([f"  ... and {more} more"] if more > 0 else [])
    head = f"{plan.model}: {what} at cycle {now:,.0f} after {done} of {images} images"
    hint = "; a FIFO into a join is shallower than the latency difference of its two paths" if deadlocked else ""
    return "\n".join([head + hint + ":"] + lines)

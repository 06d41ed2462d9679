"""Discrete-event simulation of a streaming plan, one feature-map row per event.

Every block of the plan becomes a *stage*; every stream a bounded FIFO of rows. A stage

* absorbs input rows from its FIFOs into its line buffer while the buffer has room
  (``linebuf_rows`` rows from the first row its current output row still needs);
* starts output row ``r`` when every input has delivered row ``need(r)`` and it is idle,
  computes for ``row_cycles`` (its II / rows), then holds the row until **every** output FIFO
  has room (a stream fork writes all its consumers at once) and pushes it;
* moves on to the next image when all rows are out and all input rows consumed; its line
  buffer keeps absorbing across the image boundary (rows are counted over all images).

Device links of a multi-device plan are pass-through stages that time-share the link: each
crossing stream gets bandwidth in proportion to its bits, so the link stage's II equals the
plan's link II (the link's fixed latency is not simulated; it only delays).

The simulation stops when all images are out, when no event is pending although work remains
(a **deadlock**: reported with what every stuck stage waits for), or after ``max_steps``
(reported as a stall; the simulation never hangs).
"""

from __future__ import annotations

import heapq
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


def _build(plan, fifo_depths):
    graph = plan.graph
    if graph is None:
        raise StreamDeadlockError(f"plan of {plan.model!r} carries no layer graph; make it with streaming.plan")
    specs = block_specs(graph, plan.a_bits, plan.w_bits)
    stages, index = [], {}
    for block in plan.blocks:
        spec = specs[block.name]
        index[block.name] = len(stages)
        stages.append(_Stage(block.name, spec.rows_in if spec.op != "input" else 0, spec.rows_out,
                             spec.window_rows, spec.stride_rows, spec.pad_top, spec.linebuf_rows, block.row_cycles))
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
    return stages, fifos


def simulate(plan, images=6, fifo_depths=None, max_steps=None):
    """Run ``images`` images through ``plan``; ``fifo_depths`` overrides {(src, dst): rows}."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise StreamDeadlockError(f"images={images!r}; expected an int >= 1")
    stages, fifos = _build(plan, fifo_depths)
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
                     report, steps, {f.name: f.max_count for f in fifos})


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

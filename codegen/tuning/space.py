"""The MetaSchedule search space of the bit-serial kernels, as data.

``BitserialSpace`` lists the knobs; ``design_space(wl, space)`` turns them into a MetaSchedule
``ScheduleFn`` space generator for ``codegen.make_primfunc(wl)``. The schedule has the shape of
the hand schedule (``codegen.schedules``): output pixels x output channels tiled, the tile's
popcount accumulators (``popcount_acc``) and plane combination (``combine``) computed at the
channel tile, reduction loops outside the register tile, output channels as vector lanes, and
activation packing scheduled as the hand schedule does. What the tuner turns:

* **output-pixel tile** and **output-channel tile** (vectors of ``lanes`` channels): MetaSchedule
  ``sample_perfect_tile`` decisions, mutated by the evolutionary search;
* **words per vector** (``lanes``: uint64 words of as many output channels in one vector
  popcount), **reduction order** (kernel window or packed words outermost) and **parallel axis**
  (output rows, or rows x pixel tiles): these change the loop *structure*, and a trace cannot
  branch, so each combination is its own design space;
* **unroll**: ``sample_categorical`` over ``unroll_steps`` on the reduction loops
  (``meta_schedule.unroll_explicit``, MetaSchedule's unroll mutator changes it).

Every split/compute_at keeps unit loops, so a trace replays with any decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm_qnn.errors import TuningError

REDUCTION_ORDERS = {"window-first": ("rh", "rw", "rc"), "words-first": ("rc", "rh", "rw")}
PARALLEL_AXES = ("rows", "rows+pixel-tiles")
VECTOR_BITS = 512  # AVX-512: 8 uint64 lanes; LLVM splits wider vectors on smaller machines


@dataclass(frozen=True)
class BitserialSpace:
    """Knobs of the bit-serial search space (see the module docstring)."""

    max_inner_pixels: int = 8
    max_vectors: int = 4
    lanes: tuple = (8, 4)
    reduction_orders: tuple = tuple(REDUCTION_ORDERS)
    parallel_axes: tuple = PARALLEL_AXES
    unroll_steps: tuple = (0, 16, 64, 512)

    def __post_init__(self):
        for name in ("lanes", "reduction_orders", "parallel_axes", "unroll_steps"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.max_inner_pixels < 1 or self.max_vectors < 1:
            raise TuningError(f"BitserialSpace: max_inner_pixels={self.max_inner_pixels}, "
                              f"max_vectors={self.max_vectors}; expected >= 1")
        if any(int(lanes) < 1 for lanes in self.lanes) or any(int(s) < 0 for s in self.unroll_steps):
            raise TuningError(f"BitserialSpace: lanes={self.lanes} must be >= 1 and unroll_steps={self.unroll_steps} >= 0")
        _check_known("reduction_orders", self.reduction_orders, REDUCTION_ORDERS)
        _check_known("parallel_axes", self.parallel_axes, PARALLEL_AXES)

    def structures(self, wl):
        """The (lanes, reduction order, parallel axis) combinations valid for workload ``wl``."""
        max_lanes = max(1, VECTOR_BITS // wl.word_bits)
        lanes = [lane for lane in self.lanes if lane <= max_lanes and wl.out_channels % lane == 0]
        parallel = [p for p in self.parallel_axes if p == "rows" or wl.kind == "conv2d"]
        return [(lane, order, axis) for lane in lanes for order in self.reduction_orders for axis in parallel]


def _check_known(field, values, known):
    unknown = [v for v in values if v not in known]
    if unknown:
        raise TuningError(f"BitserialSpace.{field} has {unknown}; known: {list(known)}")


def check_space(wl, space):
    """Raise ``TuningError`` naming the workload when ``space`` has no candidate for it."""
    if wl.output != "float":
        raise TuningError(f"workload {wl.key()}: output={wl.output!r} has no tuning space (only float output)")
    if not space.structures(wl) or not space.unroll_steps:
        raise TuningError(
            f"workload {wl.key()}: the search space has no valid candidate (lanes={space.lanes} must divide "
            f"out_channels={wl.out_channels} and fit {VECTOR_BITS // wl.word_bits} words; "
            f"parallel_axes={space.parallel_axes}; unroll_steps={space.unroll_steps})"
        )


# --------------------------------------------------------------------------- one structure
def _output_tiles(sch, wl, space, lanes, parallel):
    """Tile the epilogue; return (row anchor, channel-tile anchor, x-tile loop or None)."""
    epilogue = sch.get_sblock("epilogue")
    if wl.kind == "dense":
        n, o = sch.get_loops(epilogue)
        rest, lane = sch.split(o, [None, lanes], preserve_unit_iters=True)
        oo, ov = sch.split(rest, sch.sample_perfect_tile(rest, n=2, max_innermost_factor=space.max_vectors),
                           preserve_unit_iters=True)
        fused = sch.fuse(n, oo)
        sch.parallel(fused)
        sch.vectorize(lane)
        return fused, fused
    n, o, y, x = sch.get_loops(epilogue)
    xo, xi = sch.split(x, sch.sample_perfect_tile(x, n=2, max_innermost_factor=space.max_inner_pixels),
                       preserve_unit_iters=True)
    rest, lane = sch.split(o, [None, lanes], preserve_unit_iters=True)
    oo, ov = sch.split(rest, sch.sample_perfect_tile(rest, n=2, max_innermost_factor=space.max_vectors),
                       preserve_unit_iters=True)
    sch.reorder(n, y, xo, oo, xi, ov, lane)
    if parallel == "rows":
        sch.parallel(sch.fuse(n, y))
        row_anchor = xo
    else:
        row_anchor = sch.fuse(n, y, xo)
        sch.parallel(row_anchor)
    sch.vectorize(lane)
    return row_anchor, oo


def _register_tile(sch, block, anchor, spatial_names, reduction_names, order, lanes):
    """Under ``anchor``: reduction loops outermost (in ``order``), the register tile unrolled inside."""
    loops = sch.get_loops(block)
    anchor_stmt = sch.get(anchor)
    start = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(anchor_stmt)) + 1
    names = spatial_names + reduction_names
    inner = dict(zip(names, loops[start:]))
    if len(loops) - start != len(names):
        raise TuningError(f"unexpected loop nest under the tile of {sch.get(block).name_hint}: "
                          f"{len(loops) - start} loops, expected {names}")
    vector, lane = sch.split(inner["o"], [None, lanes], preserve_unit_iters=True)
    reduction = [inner[name] for name in order if name in inner]
    spatial = [inner[name] for name in spatial_names if name != "o"] + [vector, lane]
    sch.reorder(*reduction, *spatial)
    for loop in spatial[:-1]:
        sch.unroll(loop)
    sch.vectorize(lane)
    init = sch.decompose_reduction(block, reduction[0])
    init_loops = sch.get_loops(init)[-len(spatial):]
    for loop in init_loops[:-1]:
        sch.unroll(loop)
    sch.vectorize(init_loops[-1])


def schedule_structure(sch, wl, space, lanes, order, parallel):
    """Apply one structure of the space to ``sch`` (a schedule of ``make_primfunc(wl)``)."""
    from codegen.schedules import schedule_packing  # noqa: PLC0415 - packing is not tuned; reuse the hand schedule's

    schedule_packing(sch, "act_codes", "pack")
    row_anchor, anchor = _output_tiles(sch, wl, space, lanes, parallel)
    combine = sch.get_sblock("combine")
    acc = sch.get_sblock("popcount_acc")
    total = sch.get_sblock("window_total")
    sch.compute_at(combine, anchor, preserve_unit_loops=True)
    sch.compute_at(acc, anchor, preserve_unit_loops=True)
    sch.compute_at(total, row_anchor, preserve_unit_loops=True)
    reduction_order = REDUCTION_ORDERS[order]
    _register_tile(sch, acc, anchor, ["n", "y", "x", "j", "p", "o"], ["rh", "rw", "rc"], reduction_order, lanes)
    sch.set_scope(acc, 0, "local")
    _register_tile(sch, combine, anchor, ["n", "y", "x", "o"], ["rj"], ("rj",), lanes)
    sch.set_scope(combine, 0, "local")
    step = sch.sample_categorical(candidates=list(space.unroll_steps),
                                  probs=[1.0 / len(space.unroll_steps)] * len(space.unroll_steps))
    sch.annotate(sch.get_sblock("root"), "meta_schedule.unroll_explicit", step)


def design_space(wl, space: BitserialSpace | None = None):
    """MetaSchedule ``ScheduleFn`` space generator of ``make_primfunc(wl)``: one design space per structure."""
    from tvm.s_tir.meta_schedule.mutator import Mutator  # noqa: PLC0415
    from tvm.s_tir.meta_schedule.postproc import Postproc  # noqa: PLC0415
    from tvm.s_tir.meta_schedule.space_generator import ScheduleFn  # noqa: PLC0415

    space = space or BitserialSpace()
    check_space(wl, space)
    structures = space.structures(wl)

    def schedule_fn(sch):
        variants = []
        for lanes, order, parallel in structures:
            variant = sch.copy()
            variant.seed(sch.fork_seed())
            schedule_structure(variant, wl, space, lanes, order, parallel)
            variants.append(variant)
        return variants

    # explicit LLVM postprocs/mutators and no rules: "from-target" would also build the default
    # x86 schedule rules, whose VNNI/AVX-512 rules need TVM's tensor-intrinsic library loaded
    return ScheduleFn(schedule_fn, sch_rules=[], postprocs=Postproc.create("llvm"), mutator_probs=Mutator.create("llvm"))


def sample_schedule(mod, wl, space: BitserialSpace, structure, seed: int):
    """One random schedule of ``mod`` (= ``make_primfunc(wl)``) with the given structure."""
    from tvm import s_tir  # noqa: PLC0415

    sch = s_tir.Schedule(mod, seed=int(seed) % 2147483646 + 1)
    schedule_structure(sch, wl, space, *structure)
    return sch

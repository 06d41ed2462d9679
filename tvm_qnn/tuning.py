"""``tvm_qnn.tune``: MetaSchedule tuning of a quantized module's bit-serial kernels.

The tasks are the kernels the ``cpu`` lowering would emit (``relay_passes.lower_bitserial``):
one per distinct ``codegen.ConvWorkload`` among the module's ``qnn.conv2d`` / ``qnn.dense``
composites. Each is tuned with the ``codegen.tuning`` search space and cost model, its winner
checked bit-exactly against the hand-scheduled kernel, and recorded in ``work_dir``, which
``tvm_qnn.compile(qmod, target="cpu", tuning=work_dir)`` then uses (hand schedule where no record).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

from .errors import QnnError, RemoteError, TuningError

COST_MODEL_FILE = "cost_model_bops_xgb.npz"  # kept between tunes: records of one run inform the next


@dataclass(frozen=True)
class TuneReport:
    """What ``tune`` did: one ``codegen.tuning.tuner.TuneResult`` per kernel workload."""

    work_dir: str
    results: tuple

    def table(self) -> str:
        lines = [f"{'workload':<70} {'hand ms':>9} {'tuned ms':>9} {'speedup':>8}  recorded"]
        for r in self.results:
            tuned = f"{r.best_ms:9.4f}" if r.best_ms is not None else f"{'-':>9}"
            speedup = f"{r.hand_ms / r.best_ms:7.2f}x" if r.best_ms else f"{'-':>8}"
            recorded = "yes" if r.recorded else "no (hand schedule kept)"
            lines.append(f"{r.workload:<70} {r.hand_ms:9.4f} {tuned} {speedup}  {recorded}")
        return "\n".join(lines)


def _target(target):
    import tvm

    from .targets import host_target

    if target in (None, "cpu"):
        return tvm.target.Target(host_target())
    if isinstance(target, tvm.target.Target):
        config = dict(target.export())
    elif isinstance(target, dict):
        config = dict(target)
    else:
        raise TuningError(f"tune: target={target!r}; expected 'cpu', an LLVM target dict or a tvm Target")
    if config.get("kind") != "llvm":
        raise TuningError(f"tune: target kind {config.get('kind')!r}; the bit-serial kernels tune for 'llvm' targets")
    config.setdefault("num-cores", host_target()["num-cores"])  # MetaSchedule needs it
    return tvm.target.Target(config)


def kernel_workloads(qmod, word="uint64", read_layer=None):
    """``{workload key: (ConvWorkload, [layer names])}``: the float-output kernel of every qnn layer.

    A layer whose kernel the lowering fuses into a packed chain (``pass_packed``) emits packed
    codes instead; that variant has no tuning space yet and keeps the hand schedule.
    ``read_layer``: composite -> QnnLayer (default ``relay_passes.composite.read_qnn_layer``).
    """
    from codegen.plan import layer_workload
    from relay_passes.lower_bitserial import qnn_composites

    if read_layer is None:
        from relay_passes.composite import read_qnn_layer as read_layer

    workloads = {}
    for func in qnn_composites(qmod).values():
        layer = read_layer(func)
        wl = layer_workload(layer, word)
        workloads.setdefault(wl.key(), (wl, []))[1].append(layer.name)
    return workloads


def _rpc_runner(rpc, builder):
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, RPCConfig, RPCRunner

    try:
        tracker, key = rpc
        host, port = str(tracker).rsplit(":", 1)
        port = int(port)
    except (TypeError, ValueError) as err:
        raise RemoteError(f"tune: rpc={rpc!r}; expected ('tracker_host:port', key)") from err
    config = RPCConfig(tracker_host=host, tracker_port=port, tracker_key=str(key), session_timeout_sec=120)
    return RPCRunner(rpc_config=config, evaluator_config=EvaluatorConfig(number=3, repeat=3, min_repeat_ms=10),
                     max_workers=1)


def _cost_model(name, target, work_dir, seed):
    from codegen.tuning.cost_model import load_bops_xgb, make_cost_model
    from codegen.tuning.features import measure_peaks

    path = os.path.join(work_dir, COST_MODEL_FILE)
    if name == "bops-xgb":
        if os.path.exists(path):
            return load_bops_xgb(path), path  # with the peaks its stored targets were normalised by
        return make_cost_model(name, measure_peaks(target), seed=seed), path
    return make_cost_model(name, seed=seed), None


def tune(qmod, target="cpu", trials=64, cost_model="bops-xgb", work_dir="tune_db/", rpc=None, seed=0,
         space=None, word="uint64", read_layer=None) -> TuneReport:
    """Tune every bit-serial kernel of ``qmod``; records go to ``work_dir``.

    ``trials``: measured schedules per kernel workload. ``cost_model``: ``"bops-xgb"`` (default),
    ``"xgb"`` (MetaSchedule's) or ``"random"``. ``rpc=("tracker_host:port", key)`` measures on an
    RPC device through MetaSchedule's ``RPCRunner``. ``space``: a ``codegen.tuning.BitserialSpace``.
    Raises ``TuningError`` naming the workload when its space has no valid candidate.
    """
    from tqdm import tqdm

    from codegen.tuning.cost_model import COST_MODELS
    from codegen.tuning.measure import InProcessBuilder
    from codegen.tuning.space import BitserialSpace, check_space
    from codegen.tuning.tuner import tune_workload

    if cost_model not in COST_MODELS:
        raise TuningError(f"tune: unknown cost model {cost_model!r}; known: {sorted(COST_MODELS)}")
    if isinstance(trials, bool) or not isinstance(trials, numbers.Integral) or trials < 1:
        raise TuningError(f"tune: trials={trials!r}; expected an integer >= 1")
    space = space or BitserialSpace()
    tvm_target = _target(target)
    from .checks import check_module

    check_module(qmod, "tune")
    work_dir = os.fspath(work_dir)
    if os.path.exists(work_dir) and not os.path.isdir(work_dir):
        raise TuningError(f"tune: work_dir {work_dir!r} is a file; name a directory for the tuning database")
    try:
        os.makedirs(work_dir, exist_ok=True)
    except OSError as err:
        raise TuningError(f"tune: cannot create work_dir {work_dir!r}: {err.strerror or err}") from None
    workloads = kernel_workloads(qmod, word, read_layer)
    if not workloads:
        raise TuningError("tune: the module has no qnn.conv2d / qnn.dense composite to tune (was it quantized?)")
    for wl, layers in workloads.values():  # fail before any measurement when a space is empty
        try:
            check_space(wl, space)
        except TuningError as err:
            raise TuningError(f"{err} (layers {layers})") from err
    model, model_path = _cost_model(cost_model, tvm_target, work_dir, seed)
    results = []
    with tqdm(total=int(trials) * len(workloads), desc="tuning bit-serial kernels", unit="trial") as bar:
        for wl, layers in workloads.values():
            bar.set_description(f"tuning {layers[0]}")
            builder = runner = None
            if rpc is not None:
                builder = InProcessBuilder(export=True)
                runner = _rpc_runner(rpc, builder)
            try:
                results.append(tune_workload(wl, tvm_target, int(trials), model, work_dir, builder=builder, runner=runner,
                                             seed=seed, space=space, bar=bar))
            except QnnError:
                raise
            except Exception as err:  # noqa: BLE001 - TVM errors stop at our boundary, named
                raise TuningError(f"tuning workload {wl.key()} (layers {layers}) failed: {err}") from err
            if model_path is not None:
                model.save(model_path)
    return TuneReport(work_dir, tuple(results))

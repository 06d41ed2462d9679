"""build hook: a MetaSchedule database record for a workload replaces the hand schedule."""

import numpy as np
import pytest
import tvm
from codegen_layers import random_input, random_layer
from tvm.s_tir import meta_schedule as ms

from codegen.build import build_kernel, cpu_target, scheduled_primfunc, workload_module
from codegen.plan import kernel_args, layer_workload
from codegen.schedules import TileConfig, default_tile, hand_schedule


def _record_database(wl, target, tile):
    mod = workload_module(wl)
    sch = hand_schedule(wl, mod["main"], tile)
    database = ms.database.MemoryDatabase()
    workload = database.commit_workload(mod)
    database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, [1e-3], target))
    return database, sch.mod["main"]


def test_database_record_replaces_hand_schedule():
    layer = random_layer(np.random.default_rng(4), channels=70, out_channels=16, size=8, w_bits=2, a_bits=2)
    wl, target = layer_workload(layer), cpu_target()
    other_tile = TileConfig(x_tile=1, o_tile=8, lanes=8)
    assert other_tile != default_tile(wl)
    database, tuned = _record_database(wl, target, other_tile)
    chosen = scheduled_primfunc(wl, target, database)
    tvm.ir.assert_structural_equal(chosen.body, tuned.body)
    hand = scheduled_primfunc(wl, target, None)
    with pytest.raises(ValueError):  # the default tile differs from the recorded one
        tvm.ir.assert_structural_equal(hand.body, tuned.body)
    # and the tuned kernel still computes the layer
    kernel = build_kernel(wl, target, database)
    x = random_input(np.random.default_rng(5), layer)
    out = tvm.runtime.empty(wl.output_shape, "float32")
    kernel["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in kernel_args(layer, wl).as_list()], out)
    expected = layer.reference(x)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))


def test_database_without_record_falls_back_to_hand_schedule():
    layer = random_layer(np.random.default_rng(6), channels=8, out_channels=8, size=5)
    wl, target = layer_workload(layer), cpu_target()
    empty = ms.database.MemoryDatabase()
    tvm.ir.assert_structural_equal(scheduled_primfunc(wl, target, empty).body,
                                   scheduled_primfunc(wl, target, None).body)

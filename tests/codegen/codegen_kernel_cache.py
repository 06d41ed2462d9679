"""Built-kernel cache shared by the codegen tests (a TVM build takes ~0.1-1 s per workload)."""

from __future__ import annotations

import functools

import tvm

from codegen.bitserial_conv2d import integer_sums_primfunc, make_primfunc
from codegen.build import build_kernel, cpu_target, generic_x86_target

TARGETS = {"native": cpu_target, "generic": generic_x86_target}


@functools.lru_cache(maxsize=None)
def hand_kernel(wl, target_name="native"):
    assert target_name in TARGETS, f"unknown test target {target_name!r}; known: {sorted(TARGETS)}"
    return build_kernel(wl, TARGETS[target_name]())


@functools.lru_cache(maxsize=None)
def sums_kernel(wl):
    """Unscheduled integer-sums kernel (checks the compute itself, independent of the schedule)."""
    return tvm.compile(tvm.IRModule({"main": integer_sums_primfunc(wl)}), target=generic_x86_target())


@functools.lru_cache(maxsize=None)
def plain_kernel(wl):
    """Unscheduled float kernel."""
    return tvm.compile(tvm.IRModule({"main": make_primfunc(wl)}), target=generic_x86_target())

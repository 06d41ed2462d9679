"""Demo step: compile a trained model for target ``cpu`` (bit-serial kernels), run it, and compare
its latency with PyTorch fp32 on the same input, thread count and machine.

``latency_vs_torch(model, example_input, recipe)`` returns a small dict and ``format_latency``
prints it. Timing: the best of ``repeat`` runs, both as thread CPU time at one thread (robust on a
shared machine: time descheduled is not counted) and as wall-clock time at ``threads`` threads.
"""

from __future__ import annotations

import time

import numpy as np


def measure(fn, threads_fn=None, threads=2, repeat=7, number=None, min_seconds=0.02):
    """``{"cpu_1t_s", "wall_1t_s", "wall_s", "number"}``: per-call thread CPU time and wall time at 1
    thread and wall time at ``threads``, the best of ``repeat`` rounds of ``number`` calls (``None``:
    enough calls for ``min_seconds``). ``threads_fn(n)`` switches the library under test to ``n``
    threads. (The benchmarks time with this too.)
    """
    if threads_fn:
        threads_fn(1)
    fn()
    if number is None:
        start = time.perf_counter()
        fn()
        number = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-7)))
    cpu, wall_1t = [], []
    for _ in range(repeat):
        start, start_wall = time.thread_time(), time.perf_counter()
        for _ in range(number):
            fn()
        cpu.append((time.thread_time() - start) / number)
        wall_1t.append((time.perf_counter() - start_wall) / number)
    wall = []
    if threads_fn:
        threads_fn(threads)
        fn()
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        wall.append((time.perf_counter() - start) / number)
    return {"cpu_1t_s": min(cpu), "wall_1t_s": min(wall_1t), "wall_s": min(wall), "number": number}


def _best_times(call, set_threads, threads, repeat):
    """(best 1-thread CPU ms, best wall ms at ``threads``) of single calls."""
    best = measure(call, set_threads, threads, repeat=repeat, number=1)
    return best["cpu_1t_s"] * 1e3, best["wall_s"] * 1e3


def latency_vs_torch(model, example_input, recipe, target="cpu", threads=2, repeat=20, tuning=None):
    """Latency of ``model`` quantized by ``recipe`` and compiled for ``target`` vs PyTorch fp32.

    Returns ``{"target", "ours_ms_1t", "torch_ms_1t", "speedup_1t", "ours_ms_wall", "torch_ms_wall",
    "speedup_wall", "threads", "top1_agree"}`` (top-1 agreement of ours with the float model on the
    example input's batch).
    """
    import torch
    import tvm

    from tvm_qnn.compiler import compile as compile_model
    from tvm_qnn.frontend import from_torch
    from tvm_qnn.quantize import quantize

    model = model.eval()
    x = np.asarray(example_input.detach().cpu().numpy() if hasattr(example_input, "detach") else example_input,
                   dtype=np.float32)
    mod, params = from_torch(model, x)
    compiled = compile_model(quantize(mod, params, recipe), target=target, tuning=tuning)
    ours_out = compiled.run(x)
    inputs = [tvm.runtime.tensor(x)]
    vm_main = compiled.vm["main"]
    pool = tvm.get_global_func("runtime.config_threadpool")
    ours_1t, ours_wall = _best_times(lambda: vm_main(*inputs), lambda n: pool(1, n), threads, repeat)
    xt = torch.from_numpy(x)

    def torch_call():
        with torch.inference_mode():
            return model(xt)

    previous = torch.get_num_threads()
    torch_1t, torch_wall = _best_times(torch_call, torch.set_num_threads, threads, repeat)
    torch.set_num_threads(previous)
    float_out = torch_call().numpy()
    return {
        "target": target, "threads": threads,
        "ours_ms_1t": ours_1t, "torch_ms_1t": torch_1t, "speedup_1t": torch_1t / ours_1t,
        "ours_ms_wall": ours_wall, "torch_ms_wall": torch_wall, "speedup_wall": torch_wall / ours_wall,
        "top1_agree": float(np.mean(np.asarray(ours_out).argmax(-1) == float_out.argmax(-1))),
        "layer_kernels": _kernel_counts(compiled),
    }


def _kernel_counts(compiled):
    """``{kernel kind: quantized layers}`` of a compiled model (``info["layer_kernels"]``)."""
    counts = {}
    for kind in compiled.artifact.info.get("layer_kernels", {}).values():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def format_latency(result):
    """One human-readable paragraph of :func:`latency_vs_torch`'s result."""
    kernels = ", ".join(f"{n} {kind}" for kind, n in sorted(result["layer_kernels"].items())) or "no quantized layer"
    return (f"target {result['target']} (kernels per layer: {kernels}): "
            f"{result['ours_ms_1t']:.3f} ms vs PyTorch fp32 {result['torch_ms_1t']:.3f} ms at 1 thread "
            f"({result['speedup_1t']:.2f}x); wall at {result['threads']} threads {result['ours_ms_wall']:.3f} ms vs "
            f"{result['torch_ms_wall']:.3f} ms ({result['speedup_wall']:.2f}x); top-1 agreement with the float "
            f"model {100 * result['top1_agree']:.0f}%")

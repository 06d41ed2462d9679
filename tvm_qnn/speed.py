"""Demo step: compile a trained model for target ``cpu`` (bit-serial kernels), run it, and compare
its latency with PyTorch fp32 on the same input, thread count and machine.

``latency_vs_torch(model, example_input, recipe)`` returns a small dict and ``format_latency``
prints it. Timing: the best of ``repeat`` runs, both as thread CPU time at one thread (robust on a
shared machine: time descheduled is not counted) and as wall-clock time at ``threads`` threads.
"""

from __future__ import annotations

import time

import numpy as np


def _best_times(call, set_threads, threads, repeat):
    set_threads(1)
    call()
    cpu = []
    for _ in range(repeat):
        start = time.thread_time()
        call()
        cpu.append(time.thread_time() - start)
    set_threads(threads)
    call()
    wall = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        wall.append(time.perf_counter() - start)
    return min(cpu) * 1e3, min(wall) * 1e3


def latency_vs_torch(model, example_input, recipe, target="cpu", threads=2, repeat=20, tuning=None):
    """Latency of ``model`` quantized by ``recipe`` and compiled for ``target`` vs PyTorch fp32.

    Returns ``{"target", "ours_ms_1t", "torch_ms_1t", "speedup_1t", "ours_ms_wall", "torch_ms_wall",
    "speedup_wall", "threads", "top1_agree"}`` (top-1 agreement of ours with the float model on the
    example input's batch).
    """
    import torch
    import tvm

    from . import lower_cpu  # noqa: F401 - registers target "cpu"
    from .compiler import compile as compile_model
    from .frontend import from_torch
    from .quantize import quantize

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
        "bitserial_kernels": len(compiled.artifact.info.get("bitserial_kernels", [])),
    }


def format_latency(result):
    """One human-readable paragraph of :func:`latency_vs_torch`'s result."""
    return (f"target {result['target']} ({result['bitserial_kernels']} bit-serial kernels): "
            f"{result['ours_ms_1t']:.3f} ms vs PyTorch fp32 {result['torch_ms_1t']:.3f} ms at 1 thread "
            f"({result['speedup_1t']:.2f}x); wall at {result['threads']} threads {result['ours_ms_wall']:.3f} ms vs "
            f"{result['torch_ms_wall']:.3f} ms ({result['speedup_wall']:.2f}x); top-1 agreement with the float "
            f"model {100 * result['top1_agree']:.0f}%")

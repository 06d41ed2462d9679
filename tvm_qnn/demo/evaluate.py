"""Accuracy of a compiled quantized model next to its torch fake-quant twin (the demo step).

``compare_compiled_to_torch(float_model, recipe, images, labels)`` imports the BN-folded float
model, quantizes it with the recipe, compiles it, runs both the compiled model and the torch
fake-quant model (``tvm_qnn.train.fakequant.apply_recipe``) on the same images in batches, and
reports both top-1 accuracies, their top-1 agreement, the largest output difference and the share
of images whose outputs agree to 1e-4 (max |diff| / max |ref|). On real images a few inputs of a
quantized layer sit within one float32 ulp of an activation rounding boundary; the conv sums of TVM
and torch differ in their last bit (summation order), so such a code can flip and that image's
logits move by ~s_a * weight: expected, rare, and visible in ``images_within_1e-4``.
For a QAT checkpoint: ``float_model = export_float_model(qat)``, ``recipe = export_recipe(qat)``.
"""

from __future__ import annotations

import time

import numpy as np


def compare_compiled_to_torch(float_model, recipe, images, labels, target="cpu", batch_size=100, progress=True):
    """``{"n", "compiled_top1", "torch_top1", "agreement", "max_rel_diff", "images_within_1e-4",
    "compile_s", "target"}``."""
    import torch
    from tqdm import tqdm

    import tvm_qnn

    from tvm_qnn.train.fakequant import apply_recipe

    images = torch.as_tensor(images, dtype=torch.float32)
    labels = np.asarray(labels)
    batch_size = int(min(batch_size, len(images)))
    start = time.perf_counter()
    mod, params = tvm_qnn.from_torch(float_model, images[:batch_size])
    compiled = tvm_qnn.compile(mod, target=target, recipe=recipe, params=params)
    compile_s = time.perf_counter() - start
    fake_quant = apply_recipe(float_model, recipe)
    compiled_logits, torch_logits = [], []
    for begin in tqdm(range(0, len(images), batch_size), desc="compiled vs torch", unit="batch", disable=not progress):
        batch = images[begin:begin + batch_size]
        count = len(batch)
        if count < batch_size:  # the compiled model has a fixed batch: pad, then drop the padding
            batch = torch.cat([batch, torch.zeros((batch_size - count,) + tuple(batch.shape[1:]))])
        compiled_logits.append(compiled.run(batch.numpy())[:count])
        with torch.no_grad():
            torch_logits.append(fake_quant(batch[:count]).numpy())
    compiled_logits, torch_logits = np.concatenate(compiled_logits), np.concatenate(torch_logits)
    compiled_pred, torch_pred = compiled_logits.argmax(1), torch_logits.argmax(1)
    scale = max(float(np.abs(torch_logits).max()), 1e-12)
    per_image = np.abs(compiled_logits - torch_logits).max(axis=1) / scale
    return {
        "n": int(len(labels)),
        "compiled_top1": float((compiled_pred == labels).mean()),
        "torch_top1": float((torch_pred == labels).mean()),
        "agreement": float((compiled_pred == torch_pred).mean()),
        "max_rel_diff": float(per_image.max()),
        "images_within_1e-4": float((per_image <= 1e-4).mean()),
        "compile_s": float(compile_s),
        "target": compiled.target,
    }


def format_comparison(result):
    """One line for the demo output."""
    return (f"compiled ({result['target']}) top-1 {100 * result['compiled_top1']:.2f}% vs torch fake-quant "
            f"{100 * result['torch_top1']:.2f}% on {result['n']} images; top-1 agreement "
            f"{100 * result['agreement']:.2f}%, max |diff|/max|ref| {result['max_rel_diff']:.1e} "
            f"({100 * result['images_within_1e-4']:.2f}% of images within 1e-4), "
            f"import+quantize+compile {result['compile_s']:.1f} s")

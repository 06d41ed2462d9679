"""Whole models compiled for target ``cpu`` (bit-serial lowering) agree with ``cpu-reference``."""

import functools

import numpy as np
import pytest
import torch

import tvm_qnn

from tvm_qnn import data, models

BATCH = 64


@functools.lru_cache(maxsize=None)
def _compiled(w_bits, a_bits, scheme):
    torch.manual_seed(0)
    model = models.fmnist_resnet().eval()
    images, _ = data.load_fashion_mnist(split="train", limit=256)
    mod, params = tvm_qnn.from_torch(model, images[:BATCH])
    recipe = tvm_qnn.calibrate(mod, params, np.asarray(images), w_bits=w_bits, a_bits=a_bits, w_scheme=scheme,
                               progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    return tvm_qnn.compile(qmod, target="cpu"), tvm_qnn.compile(qmod, target="cpu-reference")


def _agreement(w_bits, a_bits, scheme, limit):
    ours, ref = _compiled(w_bits, a_bits, scheme)
    assert ours.artifact.info.get("bitserial_kernels"), "target cpu did not lower to bit-serial kernels"
    images, _ = data.load_fashion_mnist(split="test", limit=limit)
    images = np.asarray(images, dtype=np.float32)
    worst, same = 0.0, 0
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH]
        count = len(batch)
        if count < BATCH:  # the module's batch is static: zero-pad the last chunk, compare only the real images
            batch = np.concatenate([batch, np.zeros((BATCH - count,) + batch.shape[1:], np.float32)])
        y_ours, y_ref = ours.run(batch)[:count], ref.run(batch)[:count]
        worst = max(worst, float(np.max(np.abs(y_ours - y_ref)) / max(1.0, np.abs(y_ref).max())))
        same += int(np.sum(y_ours.argmax(1) == y_ref.argmax(1)))
    return worst, same / len(images)


def test_fmnist_net_cpu_matches_cpu_reference():
    worst, top1 = _agreement(2, 2, "kquantile", limit=256)
    assert top1 == 1.0
    assert worst <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("bits,scheme", [((1, 1), "uniform"), ((3, 3), "uniform"), ((4, 4), "kquantile")])
def test_fmnist_net_other_bits(bits, scheme):
    worst, top1 = _agreement(*bits, scheme, limit=256)
    assert top1 == 1.0
    assert worst <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("bits,scheme", [((2, 2), "kquantile"), ((3, 3), "uniform")])
def test_fmnist_net_full_test_set(bits, scheme):
    worst, top1 = _agreement(*bits, scheme, limit=10000)
    assert top1 == 1.0
    assert worst <= 1e-4

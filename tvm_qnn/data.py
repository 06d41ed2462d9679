"""Data sets as torch tensors: Fashion-MNIST from its idx.gz files, and sklearn digits at 28x28.

Nothing is downloaded. Fashion-MNIST is read from the four idx files of the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist`` by default)::

    {train,t10k}-images-idx3-ubyte.gz   uint8 (N, 28, 28), magic 0x00000803
    {train,t10k}-labels-idx1-ubyte.gz   uint8 (N,),        magic 0x00000801

Images come back as normalized float32 NCHW ``(N, 1, 28, 28)``: ``(pixel / 255 - MEAN) / STD``
with the training-set statistics below; labels as int64. The first conv of every zoo model sees
these (signed) values and stays fp32 by default; quantized layers only see post-ReLU activations.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .errors import DatasetError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist` (or pass root=<dir with the idx .gz files>)"
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}


def _read_idx(path, ndim, limit):
    """Read an idx file (big-endian header: magic, then ``ndim`` int32 sizes, then uint8 data)."""
    try:
        with gzip.open(path, "rb") as handle:
            header = np.frombuffer(handle.read(4 * (1 + ndim)), dtype=">i4")
            if header.size != 1 + ndim or header[0] != _IDX_MAGIC[ndim]:
                raise DatasetError(f"{path}: not an idx{ndim} uint8 file (header {header.tolist()})")
            shape = tuple(int(v) for v in header[1:])
            count = shape[0] if limit is None else min(int(limit), shape[0])
            record = int(np.prod(shape[1:], dtype=np.int64))
            data = np.frombuffer(handle.read(count * record), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"Fashion-MNIST file {path} is missing; {INSTALL_HINT}") from None
    except (OSError, EOFError) as err:
        raise DatasetError(f"cannot read Fashion-MNIST file {path}: {err}; {INSTALL_HINT}") from None
    if data.size != count * record:
        raise DatasetError(f"{path} is truncated: expected {count} records of {record} bytes")
    return data.reshape((count,) + shape[1:])


def load_fashion_mnist(root=None, split="train", limit=None):
    """``(images float32 (N,1,28,28) normalized, labels int64 (N,))`` of one split.

    ``split`` is "train" (60k) or "test" (10k); ``limit`` reads only the first records.
    Raises DatasetError naming the path (and how to install the data) when files are absent.
    """
    if split not in _FILES:
        raise DatasetError(f"split={split!r}; expected one of {sorted(_FILES)}")
    if limit is not None and int(limit) <= 0:
        raise DatasetError(f"limit={limit!r} must be a positive number of records")
    root = os.fspath(root) if root is not None else DEFAULT_ROOT
    if not os.path.isdir(root):
        raise DatasetError(f"Fashion-MNIST directory {root} does not exist; {INSTALL_HINT}")
    image_file, label_file = (os.path.join(root, name) for name in _FILES[split])
    images = _read_idx(image_file, 3, limit)
    labels = _read_idx(label_file, 1, limit)
    if len(images) != len(labels):
        raise DatasetError(f"{root}: {len(images)} images but {len(labels)} labels in split {split!r}")
    x = (torch.from_numpy(images.astype(np.float32) / 255.0) - FMNIST_MEAN) / FMNIST_STD
    return x.unsqueeze(1).contiguous(), torch.from_numpy(labels.astype(np.int64))


def load_digits28(split="train", limit=None, test_fraction=0.25, seed=0):
    """sklearn's bundled 8x8 digits (1797 images, no download) upsampled to normalized 1x28x28.

    A small, learnable stand-in for Fashion-MNIST in fast tests. Returns ``(images, labels)``.
    """
    from sklearn.datasets import load_digits

    if split not in ("train", "test"):
        raise DatasetError(f"split={split!r}; expected 'train' or 'test'")
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    n_test = int(len(order) * test_fraction)
    chosen = order[n_test:] if split == "train" else order[:n_test]
    if limit is not None:
        chosen = chosen[: int(limit)]
    small = torch.from_numpy(digits.images[chosen].astype(np.float32) / 16.0).unsqueeze(1)
    images = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    images = (images - images.mean()) / images.std()
    return images.contiguous(), torch.from_numpy(digits.target[chosen].astype(np.int64))


def make_loader(images, labels, batch_size=128, shuffle=False, seed=0):
    """A DataLoader over tensors (seeded shuffling, no worker processes: the machine is shared)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=shuffle, generator=generator)


def fashion_mnist_loader(root=None, split="train", batch_size=128, shuffle=None, limit=None, seed=0):
    """DataLoader of Fashion-MNIST ``split`` (shuffled by default for "train")."""
    images, labels = load_fashion_mnist(root, split, limit)
    return make_loader(images, labels, batch_size, split == "train" if shuffle is None else shuffle, seed)

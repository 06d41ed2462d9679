"""Fashion-MNIST loader: missing path error, a handful of records, and the digits stand-in."""

import os

import pytest
import torch

from tvm_qnn import data
from tvm_qnn.errors import DatasetError, QnnError


def test_missing_dataset_path_raises_dataset_error(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(DatasetError) as err:
        data.load_fashion_mnist(missing)
    assert str(missing) in str(err.value) and "apt-get install dataset-fashion-mnist" in str(err.value)
    assert isinstance(err.value, QnnError)
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz"):
        data.load_fashion_mnist(tmp_path, split="test")  # directory exists, files do not


def test_bad_split_and_corrupt_file(tmp_path):
    with pytest.raises(DatasetError, match="split='val'"):
        data.load_fashion_mnist(tmp_path, split="val")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        data.load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not os.path.isdir(data.DEFAULT_ROOT), reason="dataset-fashion-mnist not installed")
def test_reads_a_handful_of_records():
    images, labels = data.load_fashion_mnist(split="test", limit=16)
    assert images.shape == (16, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (16,) and labels.dtype == torch.int64
    # the first t10k labels of Fashion-MNIST are known: ankle boot, pullover, trouser, trouser
    assert labels[:4].tolist() == [9, 2, 1, 1]
    raw = images * data.FMNIST_STD + data.FMNIST_MEAN
    assert float(raw.min()) >= -1e-6 and float(raw.max()) <= 1 + 1e-6


def test_digits28_is_a_28x28_stand_in():
    images, labels = data.load_digits28("train", limit=50)
    assert images.shape == (50, 1, 28, 28) and set(labels.tolist()) <= set(range(10))
    loader = data.make_loader(images, labels, batch_size=16, shuffle=True)
    x, y = next(iter(loader))
    assert x.shape == (16, 1, 28, 28)

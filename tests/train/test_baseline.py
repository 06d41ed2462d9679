"""fp32 baseline: augmentation, config-keyed cache, loader that trains or says what is missing."""

import json
import os

import pytest
import torch
import torch.nn.functional as F

from tvm_qnn.train.baseline import (AugmentedLoader, BaselineConfig, BaselineMissingError, augment_batch,
                                    cached_baselines, checkpoint_path, load_baseline)
from tvm_qnn import data


def _candidates(image, padding):
    """Every crop of ``image`` (C, H, W) padded with its minimum, and the flip of each."""
    c, h, w = image.shape
    padded = F.pad(image, (padding,) * 4, value=float(image.min()))
    crops = [padded[:, i:i + h, j:j + w] for i in range(2 * padding + 1) for j in range(2 * padding + 1)]
    return crops + [crop.flip(2) for crop in crops]


def test_augment_batch_is_a_padded_crop_or_its_flip():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 9, 7)
    out = augment_batch(x, 2, True, generator)
    assert out.shape == x.shape
    flipped = shifted = 0
    for image, augmented in zip(x, out):
        matches = [k for k, crop in enumerate(_candidates(image, 2)) if torch.equal(crop, augmented)]
        assert matches, "augmented image is no padded crop of its input"
        flipped += matches[0] >= 25
        shifted += matches[0] % 25 != 12
    assert 0 < flipped < 16 and shifted > 8  # both transforms actually happen
    assert torch.equal(augment_batch(x, 0, False, generator), x)


def test_augmented_loader_is_reproducible_per_epoch_seed():
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40)
    loader = AugmentedLoader(data.make_loader(x, y, 8, shuffle=True), padding=1)
    loader.generator.manual_seed(5)
    first = [b for b, _ in loader]
    loader.generator.manual_seed(5)
    again = [b for b, _ in loader]
    loader.generator.manual_seed(6)
    other = [b for b, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_config_key_changes_with_every_field():
    base = BaselineConfig()
    assert base.key == BaselineConfig().key and base.key.startswith("fmnist_resnet-fp32-")
    for change in ({"epochs": 41}, {"lr": 0.2}, {"weight_decay": 1e-4}, {"crop_padding": 4}, {"hflip": False},
                   {"seed": 1}, {"train_limit": 100}, {"model_kwargs": (("blocks", (2, 2, 2)),)}):
        assert BaselineConfig(**change).key != base.key, change


def test_load_baseline_says_what_is_missing_then_trains_and_reuses(tmp_path, capsys):
    config = BaselineConfig(model="tiny_cnn", dataset="digits", train_limit=96, epochs=1, lr=0.05, batch_size=32)
    with pytest.raises(BaselineMissingError, match="no trained fp32 baseline .*tiny_cnn-fp32-.*train it with"):
        load_baseline(config, tmp_path, train=False)
    model, info = load_baseline(config, tmp_path, train=True, progress=False)
    assert "training it now" in capsys.readouterr().out
    assert info["path"] == checkpoint_path(config, tmp_path) and os.path.exists(info["path"])
    curve = json.load(open(info["path"][:-3] + ".curve.json"))
    assert curve["key"] == config.key and [h["epoch"] for h in curve["history"]] == [1]
    assert 0.0 <= info["test_acc"] <= 1.0
    again, info2 = load_baseline(config, tmp_path, train=False)
    assert info2["history"] == info["history"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    found = cached_baselines("tiny_cnn", tmp_path, dataset="digits", full_data=False)
    assert [info["config"].key for _, info in found] == [config.key]
    assert cached_baselines("tiny_cnn", tmp_path, dataset="digits") == []  # trained on a subset only
    assert cached_baselines("fmnist_resnet", tmp_path, dataset="digits", full_data=False) == []

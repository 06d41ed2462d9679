"""The trained fp32 baseline every QAT run, benchmark and demo starts from, cached by its config.

``BaselineConfig`` is the whole training recipe (model, epochs, SGD + cosine schedule, weight
decay, augmentation, batch size, seed, training-set size). Its hash names the checkpoint in the
cache directory (``cache_dir()``: ``$TVM_QNN_CACHE``, else ``.cache/`` of a source checkout --
git-ignored --, else ``~/.cache/tvm_qnn``), so a changed recipe never reuses a stale model::

    model, info = load_baseline()                 # trains it (tqdm bar) when not cached yet
    model, info = load_baseline(train=False)      # DatasetError-like QnnError when not cached

The training is a resumable :class:`~tvm_qnn.train.trainer.Trainer` run (a killed run resumes
after its last finished epoch) on :class:`AugmentedLoader` batches: random crop of the image
padded by ``crop_padding`` pixels of background and a random horizontal flip (the standard
CIFAR/Fashion-MNIST augmentation), drawn from a generator reseeded per epoch (resume-safe).
The per-epoch test accuracy is written as JSON beside the checkpoint (``<key>.curve.json``).

Run it as a script to (re)train in the background::

    nice -n 10 python -m tvm_qnn.train.baseline --epochs 30 --threads 2 --curve results/fmnist_resnet_fp32_curve.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from .. import data, models
from ..errors import QnnError
from .trainer import TrainConfig, Trainer


class BaselineMissingError(QnnError, FileNotFoundError):
    """No cached fp32 baseline for this config (and training was not allowed)."""


@dataclass(frozen=True)
class BaselineConfig:
    """How the fp32 baseline is trained; its :attr:`key` names the cached checkpoint."""

    model: str = "fmnist_resnet"
    model_kwargs: tuple = ()  # ((name, value), ...) passed to models.get_model
    dataset: str = "fashion-mnist"
    train_limit: int | None = None  # None: the whole training split
    epochs: int = 30  # 93.49 % test top-1 (results/fmnist_resnet_fp32_curve.json)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    crop_padding: int = 2  # 28x28 images: 2 pixels (4 on 32x32 CIFAR)
    hflip: bool = True
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "model_kwargs", tuple(tuple(kv) for kv in self.model_kwargs))
        if self.crop_padding < 0 or self.batch_size <= 0 or self.epochs <= 0:
            raise QnnError(f"BaselineConfig: crop_padding={self.crop_padding} must be >= 0, "
                           f"batch_size={self.batch_size} and epochs={self.epochs} > 0")
        if self.dataset not in DATASETS:
            raise QnnError(f"BaselineConfig: dataset={self.dataset!r}; expected one of {sorted(DATASETS)}")

    @property
    def key(self):
        """``<model>-fp32-<12 hex digits of sha256 of the config>``."""
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.model}-fp32-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def train_config(self):
        return TrainConfig(epochs=self.epochs, lr=self.lr, momentum=self.momentum,
                           weight_decay=self.weight_decay, seed=self.seed, max_grad_norm=float("inf"))


def _fmnist(split, limit):
    return data.load_fashion_mnist(None, split, limit)


def _digits(split, limit):
    return data.load_digits28(split, limit)


DATASETS = {"fashion-mnist": _fmnist, "digits": _digits}


def cache_dir():
    """Where baselines are cached: ``$TVM_QNN_CACHE``, a source checkout's ``.cache/``, or ``~/.cache/tvm_qnn``."""
    env = os.environ.get("TVM_QNN_CACHE")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.exists(os.path.join(root, "pyproject.toml")) and os.access(root, os.W_OK):
        return os.path.join(root, ".cache")
    return os.path.join(os.path.expanduser("~"), ".cache", "tvm_qnn")


def checkpoint_path(config=BaselineConfig(), directory=None):
    return os.path.join(directory or cache_dir(), f"{config.key}.pt")


# --------------------------------------------------------------------------- augmentation
def augment_batch(x, padding, hflip, generator):
    """Random crop of ``x`` (N, C, H, W) padded by ``padding`` pixels of background, random h-flip.

    The background is each image's minimum (the normalized 0 pixel of Fashion-MNIST / digits).
    """
    n, c, h, w = x.shape
    if padding:
        background = x.reshape(n, -1).min(dim=1).values.reshape(n, 1, 1, 1)
        padded = background.expand(n, c, h + 2 * padding, w + 2 * padding).clone()
        padded[:, :, padding:padding + h, padding:padding + w] = x
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()


class AugmentedLoader:
    """Wraps a shuffling DataLoader of (x, y) and augments each batch (see :func:`augment_batch`).

    ``generator`` is the wrapped loader's: the Trainer reseeds it per epoch, and the augmentation
    generator is derived from its seed, so an epoch's batches are reproducible after a resume.
    """

    def __init__(self, loader, padding=2, hflip=True):
        self.loader, self.padding, self.hflip = loader, int(padding), bool(hflip)
        self.dataset = loader.dataset

    @property
    def generator(self):
        return self.loader.generator

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        seed = self.generator.initial_seed() if self.generator is not None else 0
        generator = torch.Generator().manual_seed(seed * 7919 + 17)
        for x, y in self.loader:
            yield augment_batch(x, self.padding, self.hflip, generator), y


# --------------------------------------------------------------------------- train / load
def _model(config):
    return models.get_model(config.model, **dict(config.model_kwargs))


def loaders(config, test_batch=500):
    """``(augmented train loader, test loader)`` of the config's data set."""
    x_train, y_train = DATASETS[config.dataset]("train", config.train_limit)
    x_test, y_test = DATASETS[config.dataset]("test", None)
    train = data.make_loader(x_train, y_train, config.batch_size, shuffle=True, seed=config.seed)
    return (AugmentedLoader(train, config.crop_padding, config.hflip),
            data.make_loader(x_test, y_test, test_batch))


def write_curve(path, config, history):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"key": config.key, "config": asdict(config), "history": history}, handle, indent=1)
    os.replace(tmp, path)


def train_baseline(config=BaselineConfig(), directory=None, progress=True, curve=None):
    """Train (or resume) the baseline; returns ``(model in eval mode, history)``.

    Writes the per-epoch curve to ``<checkpoint>.curve.json`` (and to ``curve`` if given)
    after every epoch.
    """
    path = checkpoint_path(config, directory)
    train_loader, test_loader = loaders(config)
    torch.manual_seed(config.seed)
    model = _model(config)
    trainer = Trainer(model, train_loader, test_loader, config.train_config(), checkpoint=path,
                      progress=progress, desc=f"fp32 {config.model}")
    curves = [path[: -len(".pt")] + ".curve.json"] + ([curve] if curve else [])
    while not trainer.finished:
        record = trainer.train_epoch()
        for target in curves:
            write_curve(target, config, trainer.history)
        line = (f"fp32 {config.model} epoch {record['epoch']}/{trainer.epochs}: loss "
                f"{record['train_loss']:.4f}, test acc {record['test_acc']:.4f} ({record['seconds']:.0f} s)")
        tqdm.write(line) if progress else print(line, flush=True)
    return model.eval(), trainer.history


def load_baseline(config=BaselineConfig(), directory=None, train=True, progress=True):
    """The cached, fully trained fp32 baseline of ``config``: ``(model in eval mode, info)``.

    ``info``: ``{"key", "path", "history", "test_acc"}``. When no finished checkpoint exists,
    says so and trains it (``train=True``, with a tqdm bar; a partial checkpoint is resumed) or
    raises :class:`BaselineMissingError` naming the path and the command that trains it.
    """
    path = checkpoint_path(config, directory)
    state = torch.load(path, weights_only=False) if os.path.exists(path) else None
    done = state is not None and state.get("epoch", 0) >= config.epochs
    if done:
        model = _model(config)
        model.load_state_dict(state["model"])
        history = state["history"]
    else:
        where = f"{path} ({state['epoch']}/{config.epochs} epochs done)" if state else path
        if not train:
            raise BaselineMissingError(
                f"no trained fp32 baseline {config.key} at {where}; train it with "
                f"`python -m tvm_qnn.train.baseline --epochs {config.epochs}` or call load_baseline(train=True)")
        print(f"no cached fp32 baseline {config.key} at {where}: training it now "
              f"({config.epochs} epochs of {config.model} on {config.dataset})", flush=True)
        model, history = train_baseline(config, directory, progress)
    info = {"key": config.key, "path": path, "history": history,
            "test_acc": history[-1].get("test_acc") if history else None}
    return model.eval(), info


def cached_baselines(model_name=None, directory=None, dataset="fashion-mnist", full_data=True):
    """Every finished cached baseline (``[(model in eval mode, info)]``), best test accuracy first.

    Only baselines of ``dataset`` trained on its whole training split (``full_data``; smoke runs
    such as ``benchmarks/accuracy.py --fast`` train on a subset). ``info`` as
    :func:`load_baseline`'s plus ``"config"``; unreadable files are skipped.
    """
    directory = directory or cache_dir()
    found = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if not name.endswith(".curve.json") or (model_name and not name.startswith(f"{model_name}-fp32-")):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                fields = json.load(handle)["config"]
            config = BaselineConfig(**fields)
            if config.dataset != dataset or (full_data and config.train_limit is not None):
                continue
            model, info = load_baseline(config, directory, train=False)
        except (OSError, ValueError, KeyError, TypeError, QnnError, RuntimeError):
            continue
        found.append((model, dict(info, config=config)))
    return sorted(found, key=lambda item: -(item[1]["test_acc"] or 0.0))


def main(argv=None):
    defaults = BaselineConfig()
    parser = argparse.ArgumentParser(description="train (or resume) the cached fp32 baseline")
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--dataset", default=defaults.dataset, choices=sorted(DATASETS))
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=None, help="cache directory (default: cache_dir())")
    parser.add_argument("--curve", default=None, help="also write the per-epoch curve JSON here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = BaselineConfig(model=args.model, dataset=args.dataset, epochs=args.epochs, lr=args.lr,
                            weight_decay=args.weight_decay, batch_size=args.batch_size,
                            train_limit=args.train_limit, seed=args.seed)
    print(f"baseline {config.key} -> {checkpoint_path(config, args.cache)}", flush=True)
    start = time.perf_counter()
    model, history = train_baseline(config, args.cache, not args.no_progress, args.curve)
    folded_acc = history[-1]["test_acc"] if history else None
    print(f"done: test acc {folded_acc} in {time.perf_counter() - start:.0f} s", flush=True)
    return history


if __name__ == "__main__":
    main()

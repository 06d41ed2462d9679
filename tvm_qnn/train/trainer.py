"""A small, seeded training loop with tqdm, per-epoch checkpoints and resume.

``Trainer(model, train_loader, test_loader, config, checkpoint=path, schedule=None).fit()``
trains ``config.epochs`` epochs (or ``schedule.total_epochs`` for gradual QAT, applying the
schedule at the start of each epoch), evaluates after each epoch, and writes the checkpoint
atomically after each epoch (model, optimizer, LR scheduler, epoch, history). Calling ``fit``
again with the same checkpoint path resumes after the last finished epoch; a finished run
returns at once, which is how the demo and the benchmark reuse trained models.

QAT steps are bounded: the global gradient norm is clipped to ``max_grad_norm``
(:data:`QAT_MAX_GRAD_NORM` by default for a model with quantized layers). QAT trains the
BN-folded network, which has no normalisation to absorb a large step, and a low-bit model starts
far from a minimum (w2a2 on digits: loss 4-7, weight gradient norms 10-40 against weight norms
4-7). Unbounded SGD steps there made the loss explode within ~10 steps (0.27 -> 10.8 even at
w4a8 with plain straight-through) and, in a UNIQ noise stage, ended in a dead network (the share
of zero activation codes rose from 0.6 to 0.9, logits constant, loss ln 10), which the
straight-through gradient (zero below 0) cannot leave.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import QnnError


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"  # "sgd" | "adam"
    seed: int = 0
    clamp_lr_scale: float = 1.0  # learned clamps: lr multiplier, no weight decay
    # bound on the global gradient norm: None = automatic (QAT_MAX_GRAD_NORM for a model with
    # quantized layers, no bound for a float model), math.inf = no bound
    max_grad_norm: float | None = None

    def __post_init__(self):
        if self.epochs < 0 or self.lr <= 0:
            raise QnnError(f"TrainConfig: epochs={self.epochs} must be >= 0 and lr={self.lr} > 0")
        if self.max_grad_norm is not None and not float(self.max_grad_norm) > 0:
            raise QnnError(f"TrainConfig: max_grad_norm={self.max_grad_norm!r} must be > 0 (math.inf: no bound)")
        if self.optimizer not in OPTIMIZERS:
            raise QnnError(f"TrainConfig: optimizer={self.optimizer!r}; expected one of {sorted(OPTIMIZERS)}")


# measured on the digits QAT test (w2a2, lr 5e-3, two noise stages; three seeds): bounds of 2, 5
# and 10 all prevent the collapse (QAT 86-93% against 9-75% unbounded); 5 did best
QAT_MAX_GRAD_NORM = 5.0

OPTIMIZERS = {
    "sgd": lambda groups, c: torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=True),
    "adam": lambda groups, c: torch.optim.Adam(groups, lr=c.lr),
}


def seed_everything(seed):
    torch.manual_seed(seed)
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)


@torch.no_grad()
def evaluate(model, loader, progress=False, desc="eval"):
    """Top-1 accuracy (0..1) of ``model`` in eval mode on ``loader`` of (x, y) batches."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += int(y.numel())
    model.train(was_training)
    return correct / max(total, 1)


def _param_groups(model, config):
    clamps, decay, no_decay = [], [], []
    for name, parameter in model.named_parameters():
        if name.endswith("act_quant.clamp"):
            clamps.append(parameter)
        elif parameter.ndim <= 1:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if clamps:
        groups.append({"params": clamps, "weight_decay": 0.0, "lr": config.lr * config.clamp_lr_scale})
    return groups


def resolve_max_grad_norm(model, config):
    """The gradient-norm bound the Trainer applies (``math.inf``: none); see the module doc."""
    if config.max_grad_norm is not None:
        return float(config.max_grad_norm)
    from .qmodel import quant_layers  # the Trainer also trains float models: import only here

    return QAT_MAX_GRAD_NORM if quant_layers(model) else math.inf


def _comparable_config(config):
    """A saved config with fields added after it was written set to their defaults (same behaviour)."""
    return {**asdict(TrainConfig()), **config} if isinstance(config, dict) else config


def save_atomic(state, path):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


class Trainer:
    def __init__(self, model, train_loader, test_loader=None, config=TrainConfig(), checkpoint=None,
                 schedule=None, progress=True, desc="train"):
        self.model, self.train_loader, self.test_loader = model, train_loader, test_loader
        self.config, self.checkpoint, self.schedule = config, checkpoint, schedule
        self.progress, self.desc = progress, desc
        self.epochs = schedule.total_epochs if schedule is not None else config.epochs
        seed_everything(config.seed)
        self.optimizer = OPTIMIZERS[config.optimizer](_param_groups(model, config), config)
        self.max_grad_norm = resolve_max_grad_norm(model, config)
        steps = max(self.epochs * len(train_loader), 1)
        self.lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, steps)
        self.epoch, self.history = 0, []
        if checkpoint and os.path.exists(checkpoint):
            self._resume()

    def _resume(self):
        state = torch.load(self.checkpoint, weights_only=False)
        if _comparable_config(state.get("config")) != asdict(self.config) or state.get("epochs") != self.epochs:
            raise QnnError(f"checkpoint {self.checkpoint} was written with another training config "
                           f"({state.get('config')}, {state.get('epochs')} epochs); delete it or change the path")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.epoch, self.history = state["epoch"], state["history"]
        torch.set_rng_state(state["rng"])

    def _save(self):
        if self.checkpoint:
            save_atomic({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "lr_schedule": self.lr_schedule.state_dict(), "epoch": self.epoch,
                         "history": self.history, "config": asdict(self.config), "epochs": self.epochs,
                         "rng": torch.get_rng_state()}, self.checkpoint)

    @property
    def finished(self):
        return self.epoch >= self.epochs

    def train_epoch(self):
        phase = self.schedule.apply(self.model, self.epoch) if self.schedule is not None else "fp32"
        generator = getattr(self.train_loader, "generator", None)
        if generator is not None:  # reshuffle deterministically per epoch (resume-safe)
            generator.manual_seed(self.config.seed * 1000 + self.epoch)
        self.model.train()
        start, total_loss, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(self.train_loader, desc=f"{self.desc} {self.epoch + 1}/{self.epochs} [{phase}]",
                   leave=False, disable=not self.progress)
        for x, y in bar:
            loss = F.cross_entropy(self.model(x), y)
            if not torch.isfinite(loss):
                raise QnnError(f"{self.desc}: loss became {float(loss)} in epoch {self.epoch + 1}; lower the lr")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if math.isfinite(self.max_grad_norm):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            self.lr_schedule.step()
            total_loss += float(loss.detach()) * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        record = {"epoch": self.epoch + 1, "phase": phase, "train_loss": total_loss / max(seen, 1),
                  "seconds": time.perf_counter() - start}
        if self.test_loader is not None:
            record["test_acc"] = evaluate(self.model, self.test_loader)
        self.history.append(record)
        self.epoch += 1
        self._save()
        return record

    def fit(self):
        """Train the remaining epochs; returns the history (one dict per epoch)."""
        while not self.finished:
            record = self.train_epoch()
            if self.progress:
                acc = f", test acc {record['test_acc']:.4f}" if "test_acc" in record else ""
                tqdm.write(f"{self.desc} epoch {record['epoch']}/{self.epochs} [{record['phase']}]: "
                           f"loss {record['train_loss']:.4f}{acc} ({record['seconds']:.0f} s)")
        return self.history

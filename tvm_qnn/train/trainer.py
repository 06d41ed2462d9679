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

Knowledge distillation (``TrainConfig.distill_alpha > 0`` with ``teacher=`` the fp32 model):
the loss is ``(1 - alpha) CE(student, y) + alpha T^2 KL(softmax(teacher/T) || softmax(student/T))``
(Hinton et al.; :func:`distillation_loss`).

Devices and processes: the Trainer runs on CUDA when a GPU is present (``device=`` overrides)
and, under ``torchrun --nproc_per_node N``, as N DistributedDataParallel processes
(:func:`init_distributed`: ``gloo`` on CPU, ``nccl`` on CUDA). Every process draws the same
shuffled, augmented *global* batch (the loader's generator is reseeded per epoch, identically on
all ranks) and trains on its slice ``batch[rank::N]``; DDP averages the gradients, so an update
is the single-process update of the same global batch, the LR schedule counts the same steps,
and the gradient bound applies to the averaged gradient. Evaluation shards the test batches and
sums the counts. Only rank 0 writes the checkpoint; it holds the unwrapped model's state, so a
run resumes under any world size, and the exported recipe does not depend on it.
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
    distill_alpha: float = 0.0  # weight of the distillation term (0: off; needs Trainer(teacher=...))
    distill_temperature: float = 4.0

    def __post_init__(self):
        if self.epochs < 0 or self.lr <= 0:
            raise QnnError(f"TrainConfig: epochs={self.epochs} must be >= 0 and lr={self.lr} > 0")
        if self.max_grad_norm is not None and not float(self.max_grad_norm) > 0:
            raise QnnError(f"TrainConfig: max_grad_norm={self.max_grad_norm!r} must be > 0 (math.inf: no bound)")
        if self.optimizer not in OPTIMIZERS:
            raise QnnError(f"TrainConfig: optimizer={self.optimizer!r}; expected one of {sorted(OPTIMIZERS)}")
        if not 0.0 <= self.distill_alpha <= 1.0 or not self.distill_temperature > 0:
            raise QnnError(f"TrainConfig: distill_alpha={self.distill_alpha} must be in [0, 1] and "
                           f"distill_temperature={self.distill_temperature} > 0")


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


def distillation_loss(student_logits, teacher_logits, temperature=4.0):
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch (0 for equal logits)."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits.detach() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


# --------------------------------------------------------------------------- processes / devices
def dist_info():
    """``(rank, world size)``: ``(0, 1)`` without an initialised process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def default_device():
    """``cuda:<LOCAL_RANK>`` when a GPU is present, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(backend=None):
    """Join the process group ``torchrun`` describes (``RANK``/``WORLD_SIZE`` in the environment).

    ``backend``: ``nccl`` on CUDA, ``gloo`` on CPU by default. Without torchrun's environment
    (a plain ``python`` run) nothing happens. Returns ``(rank, world size)``.
    """
    if "WORLD_SIZE" not in os.environ or torch.distributed.is_initialized():
        return dist_info()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(default_device())
    torch.distributed.init_process_group(backend)
    return dist_info()


def _all_reduce(values, op=None):
    """Sum (or ``op``) of a list of numbers over the process group (the numbers themselves alone)."""
    rank, world = dist_info()
    if world == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64,
                          device="cuda" if torch.distributed.get_backend() == "nccl" else "cpu")
    torch.distributed.all_reduce(tensor, op or torch.distributed.ReduceOp.SUM)
    return tensor.tolist()


@torch.no_grad()
def evaluate(model, loader, progress=False, desc="eval", device=None):
    """Top-1 accuracy (0..1) of ``model`` in eval mode on ``loader`` of (x, y) batches.

    Under a process group, each rank evaluates every N-th batch and the counts are summed.
    """
    was_training = model.training
    model.eval()
    rank, world = dist_info()
    device = device or next(model.parameters()).device
    correct = total = 0
    for i, (x, y) in enumerate(tqdm(loader, desc=desc, leave=False, disable=not progress or rank != 0)):
        if i % world != rank:
            continue
        x, y = x.to(device), y.to(device)
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += int(y.numel())
    model.train(was_training)
    correct, total = _all_reduce([correct, total])
    return correct / max(total, 1)


LEARNED_QUANT_PARAMS = ("act_quant.clamp", "act_quant.lower", "weight_quant.step")


def _param_groups(model, config):
    clamps, decay, no_decay = [], [], []
    for name, parameter in model.named_parameters():
        if name.endswith(LEARNED_QUANT_PARAMS):
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
    """See the module doc. ``teacher``: the fp32 model for distillation; ``device``: default CUDA if present."""

    def __init__(self, model, train_loader, test_loader=None, config=TrainConfig(), checkpoint=None,
                 schedule=None, progress=True, desc="train", teacher=None, device=None):
        self.train_loader, self.test_loader = train_loader, test_loader
        self.config, self.checkpoint, self.schedule = config, checkpoint, schedule
        self.rank, self.world = dist_info()
        self.progress, self.desc = progress and self.rank == 0, desc
        self.device = torch.device(device) if device is not None else default_device()
        self.epochs = schedule.total_epochs if schedule is not None else config.epochs
        if config.distill_alpha > 0 and teacher is None:
            raise QnnError(f"{desc}: distill_alpha={config.distill_alpha} needs Trainer(teacher=<fp32 model>)")
        seed_everything(config.seed)
        self.model = model.to(self.device)
        self.teacher = None
        if teacher is not None and config.distill_alpha > 0:
            self.teacher = teacher.to(self.device).eval()
            for parameter in self.teacher.parameters():
                parameter.requires_grad_(False)
        self.optimizer = OPTIMIZERS[config.optimizer](_param_groups(model, config), config)
        self.max_grad_norm = resolve_max_grad_norm(model, config)
        steps = max(self.epochs * len(train_loader), 1)
        self.lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, steps)
        self.epoch, self.history = 0, []
        if checkpoint and os.path.exists(checkpoint):
            self._resume()

    def _resume(self):
        state = torch.load(self.checkpoint, weights_only=False, map_location=self.device)
        if _comparable_config(state.get("config")) != asdict(self.config) or state.get("epochs") != self.epochs:
            raise QnnError(f"checkpoint {self.checkpoint} was written with another training config "
                           f"({state.get('config')}, {state.get('epochs')} epochs); delete it or change the path")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.epoch, self.history = state["epoch"], state["history"]
        torch.set_rng_state(state["rng"].cpu())

    def _save(self):
        if self.checkpoint and self.rank == 0:
            save_atomic({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "lr_schedule": self.lr_schedule.state_dict(), "epoch": self.epoch,
                         "history": self.history, "config": asdict(self.config), "epochs": self.epochs,
                         "world_size": self.world, "rng": torch.get_rng_state()}, self.checkpoint)
        if self.world > 1:
            torch.distributed.barrier()

    @property
    def finished(self):
        return self.epoch >= self.epochs

    def _wrapped(self):
        """The model DDP-wrapped under a process group (rebuilt per epoch: the trainable set changes)."""
        if self.world == 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        from .qmodel import quant_layers

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # clamps / weight steps of layers still in fp32 mode get no gradient
        unused = any(layer.weight_quant.mode == "fp32" for layer in quant_layers(self.model).values())
        return DistributedDataParallel(self.model, device_ids=device_ids, find_unused_parameters=unused)

    def _loss(self, model, x, y):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            alpha = self.config.distill_alpha
            loss = (1 - alpha) * loss + alpha * distillation_loss(logits, teacher_logits,
                                                                   self.config.distill_temperature)
        return loss

    def train_epoch(self):
        phase = self.schedule.apply(self.model, self.epoch) if self.schedule is not None else "fp32"
        generator = getattr(self.train_loader, "generator", None)
        if generator is not None:  # reshuffle deterministically per epoch (resume-safe, same on every rank)
            generator.manual_seed(self.config.seed * 1000 + self.epoch)
        self.model.train()
        model = self._wrapped()
        start, total_loss, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(self.train_loader, desc=f"{self.desc} {self.epoch + 1}/{self.epochs} [{phase}]",
                   leave=False, disable=not self.progress)
        for x, y in bar:
            if self.world > 1:  # this rank's slice of the global batch
                x, y = x[self.rank::self.world], y[self.rank::self.world]
            x, y = x.to(self.device), y.to(self.device)
            loss = self._loss(model, x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            finite = bool(torch.isfinite(loss.detach()))
            if self.world > 1:  # every rank stops together (no rank left waiting in an all-reduce)
                finite = _all_reduce([float(finite)], torch.distributed.ReduceOp.MIN)[0] > 0
            if not finite:
                raise QnnError(f"{self.desc}: loss became {float(loss)} in epoch {self.epoch + 1}; lower the lr")
            if math.isfinite(self.max_grad_norm):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            self.lr_schedule.step()
            total_loss += float(loss.detach()) * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / max(seen, 1):.4f}")
        total_loss, seen = _all_reduce([total_loss, seen])
        record = {"epoch": self.epoch + 1, "phase": phase, "train_loss": total_loss / max(seen, 1),
                  "seconds": time.perf_counter() - start}
        if self.test_loader is not None:
            record["test_acc"] = evaluate(self.model, self.test_loader, device=self.device)
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

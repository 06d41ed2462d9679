"""Gradual quantization (UNIQ / NICE): layers are quantized stage by stage.

The quantized layers are split into ``stages`` (contiguous groups in forward order by default).
During stage ``s`` (``epochs_per_stage`` epochs each):

* layers of earlier stages are hard-quantized (``quant`` mode) and, with ``freeze_done=True``
  (UNIQ), frozen: no gradient to their weights, biases and clamps, no noise;
* layers of stage ``s`` train with noise (``noise`` mode: UNIQ CDF-domain noise or NICE partial
  uniform noise) and learned clamps;
* later layers are still fp32.

After the last stage, ``final_epochs`` fine-tune the whole network hard-quantized with
straight-through gradients and nothing frozen (NICE's final phase). ``stages=1`` gives plain
noise-then-STE QAT.

Options (defaults keep the behaviour above):

* ``active="quant"`` trains the current stage straight-through instead of with noise (measured
  per bit width: UNIQ's noise trails straight-through at 2 bits on Fashion-MNIST);
* ``later="noise"`` puts the noise on every not-yet-frozen layer -- the current *and* the later
  stages -- instead of leaving later stages fp32 (NICE's gradual scheme: the network gets used
  to the noise of the layers still to come);
* ``integer_final=True`` runs the last epoch with the deployed integer arithmetic simulated
  (``train.intsim``: int8 LUT, rounded int32 bias; ``qmodel.set_integer_sim``), so the model
  is fine-tuned for what ``fpga`` / ``cpu integer_only`` compute.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import QuantizationError
from .qmodel import quant_layers, set_integer_sim, set_modes


def split_stages(layer_names, n_stages):
    """Split ``layer_names`` (forward order) into ``n_stages`` contiguous, nearly equal groups."""
    names = list(layer_names)
    if not 1 <= n_stages <= max(len(names), 1):
        raise QuantizationError(f"n_stages={n_stages} must be in 1..{len(names)} (the number of quantized layers)")
    size, extra = divmod(len(names), n_stages)
    stages, start = [], 0
    for i in range(n_stages):
        end = start + size + (1 if i < extra else 0)
        stages.append(tuple(names[start:end]))
        start = end
    return tuple(stages)


@dataclass(frozen=True)
class GradualSchedule:
    """``stages``: tuple of tuples of weight names; epochs per stage; final all-quantized epochs."""

    stages: tuple
    epochs_per_stage: int = 1
    final_epochs: int = 1
    freeze_done: bool = True
    active: str = "noise"  # mode of the current stage: "noise" | "quant"
    later: str = "fp32"  # mode of later stages: "fp32" | "noise" | "quant"
    integer_final: bool = False

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(tuple(stage) for stage in self.stages))
        if not self.stages or any(not stage for stage in self.stages):
            raise QuantizationError(f"GradualSchedule: stages must be non-empty groups of layers, got {self.stages}")
        seen = [name for stage in self.stages for name in stage]
        if len(seen) != len(set(seen)):
            raise QuantizationError("GradualSchedule: a layer appears in two stages")
        if self.epochs_per_stage < 0 or self.final_epochs < 0 or self.total_epochs == 0:
            raise QuantizationError("GradualSchedule: epochs must be >= 0 and not all zero")
        if self.active not in ("noise", "quant") or self.later not in ("fp32", "noise", "quant"):
            raise QuantizationError(f"GradualSchedule: active={self.active!r} must be 'noise' or 'quant', "
                                    f"later={self.later!r} 'fp32', 'noise' or 'quant'")

    @classmethod
    def for_model(cls, model, n_stages=2, epochs_per_stage=1, final_epochs=1, freeze_done=True, **options):
        return cls(split_stages(quant_layers(model), n_stages), epochs_per_stage, final_epochs, freeze_done,
                   **options)

    @property
    def total_epochs(self):
        return len(self.stages) * self.epochs_per_stage + self.final_epochs

    def phase(self, epoch):
        """``(label, modes {name: mode}, frozen names)`` for a 0-based epoch."""
        stage = epoch // self.epochs_per_stage if self.epochs_per_stage else len(self.stages)
        modes, frozen = {}, set()
        if stage >= len(self.stages):
            for names in self.stages:
                modes.update({name: "quant" for name in names})
            return "final", modes, frozen
        for index, names in enumerate(self.stages):
            mode = "quant" if index < stage else self.active if index == stage else self.later
            modes.update({name: mode for name in names})
            if index < stage and self.freeze_done:
                frozen.update(names)
        return f"stage {stage + 1}/{len(self.stages)}", modes, frozen

    def apply(self, model, epoch):
        """Put ``model`` in the phase of ``epoch``; returns the phase label."""
        missing = sorted(set(quant_layers(model)) - {n for stage in self.stages for n in stage})
        if missing:
            raise QuantizationError(f"GradualSchedule: quantized layer(s) {missing} are in no stage")
        label, modes, frozen = self.phase(epoch)
        set_modes(model, modes, frozen)
        integer = self.integer_final and epoch == self.total_epochs - 1
        set_integer_sim(model, integer)
        return f"{label}, integer" if integer else label

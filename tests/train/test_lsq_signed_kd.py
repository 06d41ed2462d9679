"""LSQ weights, signed learned clamps, distillation, schedule options: forward vs reference, gradients."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from tvm_qnn import models, reference
from tvm_qnn.errors import QnnError, QuantizationError
from tvm_qnn.train import (GradualSchedule, LearnedClampAct, LSQWeight, QuantConfig, TrainConfig, Trainer,
                           apply_recipe, calibrate_clamps, distillation_loss, export_float_model, export_recipe,
                           prepare_qat, quant_layers)
from tvm_qnn.train.trainer import QAT_MAX_GRAD_NORM


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_lsq_eval_equals_reference_uniform_levels_of_its_step(bits, per_channel):
    torch.manual_seed(bits)
    weight = torch.randn(6, 3, 3, 3) * 0.2 + 0.01
    quantizer = LSQWeight(bits, per_channel, rows=6).reset(weight)
    with torch.no_grad():  # a learned step away from its NICE initialisation
        quantizer.step.mul_(torch.linspace(0.7, 1.3, quantizer.step.numel()).reshape(quantizer.step.shape))
    clip = quantizer.step.detach().double().numpy() * ((1 << bits) - 1) / 2
    idx, lut = reference.uniform_lut(weight.numpy(), bits, clip, per_channel)
    quantizer.eval()
    expected = reference.dequant_weight(idx, lut)
    np.testing.assert_array_equal(quantizer(weight).detach().numpy(), expected)
    # training forward: the same levels (the LUT's 16-bit step rounding aside)
    quantizer.train()
    trained = quantizer(weight).detach().numpy()
    np.testing.assert_allclose(trained, expected, atol=float(np.abs(lut).max()) * 1e-3)


def test_lsq_gradients_are_lsq():
    quantizer = LSQWeight(2, rows=1).train()
    with torch.no_grad():
        quantizer.step.fill_(0.5)
    weight = torch.tensor([[-2.0, -0.3, 0.1, 0.6, 0.74, 5.0]], requires_grad=True)
    quantizer(weight).sum().backward()
    # levels 0.5 * (q - 1.5) = -0.75, -0.25, 0.25, 0.75; range (-0.75, 0.75)
    np.testing.assert_array_equal(weight.grad.numpy(), [[0, 1, 1, 1, 1, 0]])
    scaled = weight.detach().numpy()[0] / 0.5
    codes = np.clip(np.floor(scaled + 2), 0, 3) - 1.5
    inside = np.abs(scaled) < 1.5
    expected = np.sum(np.where(inside, codes - scaled, codes)) / math.sqrt(6 * 1.5)
    assert quantizer.step.grad.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_signed_clamp_eval_equals_reference_with_zero_point(bits):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5) * 1.5 - 0.2
    act = LearnedClampAct(bits, 2.0, signed=True, lower=-1.3).eval()
    width, z = reference.signed_act_params(-1.3, 2.0, bits)
    levels = (1 << bits) - 1
    assert width == pytest.approx(3.3) and z == int(np.clip(np.round(1.3 / (3.3 / levels)), 0, levels))
    codes = reference.act_codes(x.numpy(), width, bits, z)
    expected = reference.dequant_act(codes, width, bits, z)
    got = act(x).detach().numpy()
    np.testing.assert_array_equal(got, expected)
    if bits > 1:
        assert got.min() < 0 < got.max()  # a signed input is not clipped to 0
        assert np.any(got == 0.0)  # code z is exactly 0


def test_signed_clamp_gradients_reach_both_ends():
    torch.manual_seed(1)
    x = (torch.randn(2000) * 2).requires_grad_(True)
    act = LearnedClampAct(3, 1.0, signed=True, lower=-1.0).train()
    act(x).sum().backward()
    width, z = reference.signed_act_params(-1.0, 1.0, 3)
    codes = np.floor(x.detach().numpy() / np.float32(width / 7) + 0.5) + z
    np.testing.assert_array_equal(x.grad.numpy(), ((codes >= 0) & (codes <= 7)).astype(np.float32))
    act.zero_grad()
    act(x).pow(2).sum().backward()
    assert act.clamp.grad.item() > 0 and act.lower.grad.item() < 0  # y^2 grows when either end opens


def test_reference_act_codes_zero_point_zero_is_the_unsigned_contract():
    x = np.random.default_rng(0).normal(size=(100,)).astype(np.float32)
    np.testing.assert_array_equal(reference.act_codes(x, 1.7, 3), reference.act_codes(x, 1.7, 3, 0))
    with pytest.raises(QuantizationError, match="lower < 0 < upper"):
        reference.signed_act_params(0.5, 1.0, 4)


class _SignedInputNet(nn.Module):
    """conv1 (fp32) -> conv2 with a signed input (no ReLU between) -> relu -> fc (fp32)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv2(self.conv1(x))), 1))


def test_calibration_makes_signed_inputs_signed_and_export_writes_their_zero_point():
    torch.manual_seed(0)
    qat = prepare_qat(_SignedInputNet(), QuantConfig(2, 3, "lsq"))
    calibrate_clamps(qat, [torch.randn(8, 1, 8, 8)])
    act = qat.conv2.act_quant
    assert act.signed and float(act.lower.detach()) < 0 < float(act.clamp.detach())
    width, z = act.signed_params()
    layer = export_recipe(qat).layers["conv2.weight"]
    assert 0 < layer.a_zero_point == z < 7 and layer.a_clamp == pytest.approx(width)
    # the recipe's codes are the reference's: negative inputs keep their sign
    x = np.linspace(-3, 3, 101).astype(np.float32)
    codes = reference.act_codes(x, layer.a_clamp, 3, layer.a_zero_point)
    assert codes.min() == 0 and codes.max() == 7
    assert (reference.dequant_act(codes, layer.a_clamp, 3, layer.a_zero_point)[x < -0.5] < 0).all()


@pytest.mark.parametrize("scheme", ["lsq", "kquantile"])
def test_gradients_finite_and_bounded_with_learned_quant_params(scheme):
    torch.manual_seed(0)
    qat = prepare_qat(_SignedInputNet(), QuantConfig(2, 2, scheme, per_channel=True))
    calibrate_clamps(qat, [torch.randn(8, 1, 8, 8)])
    x, y = torch.randn(16, 1, 8, 8) * 3, torch.randint(0, 10, (16,))
    loss = torch.nn.functional.cross_entropy(qat(x), y) * 100  # a large loss: the bound must act
    loss.backward()
    grads = {n: p.grad for n, p in qat.named_parameters() if p.grad is not None}
    assert "conv2.act_quant.lower" in grads and "conv2.act_quant.clamp" in grads
    if scheme == "lsq":
        assert "conv2.weight_quant.step" in grads
    norm = torch.nn.utils.clip_grad_norm_(qat.parameters(), QAT_MAX_GRAD_NORM)
    assert math.isfinite(float(norm)) and float(norm) > QAT_MAX_GRAD_NORM
    total = torch.sqrt(sum((g ** 2).sum() for g in grads.values()))
    assert all(torch.isfinite(g).all() for g in grads.values()) and float(total) <= QAT_MAX_GRAD_NORM * (1 + 1e-5)


def test_lsq_qat_exports_its_learned_step_and_matches_apply_recipe():
    torch.manual_seed(0)
    qat = prepare_qat(models.tiny_cnn(), QuantConfig(3, 3, "lsq", per_channel=True))
    calibrate_clamps(qat, [torch.rand(8, 1, 28, 28)])
    with torch.no_grad():
        qat.conv2.weight_quant.step.mul_(1.2)
    recipe = export_recipe(qat, "tiny_cnn")
    layer = recipe["conv2.weight"]
    assert layer.w_scheme == "uniform"
    np.testing.assert_allclose(layer.lut[:, 1] - layer.lut[:, 0], qat.conv2.weight_quant.step.detach().numpy()[:, 0],
                               rtol=1e-4)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        np.testing.assert_allclose(apply_recipe(export_float_model(qat), recipe)(x).numpy(), qat.eval()(x).numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_distillation_loss_zero_for_identical_logits_positive_otherwise():
    logits = torch.randn(8, 10) * 5
    assert distillation_loss(logits, logits.clone(), 4.0).item() == 0.0
    assert distillation_loss(logits + torch.randn(8, 10), logits, 4.0).item() > 0.0
    student = logits.clone().requires_grad_(True)
    distillation_loss(student, logits, 2.0).backward()
    assert float(student.grad.abs().max()) < 1e-6
    with pytest.raises(QnnError, match="teacher"):
        Trainer(models.tiny_cnn(), [(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))],
                config=TrainConfig(distill_alpha=0.5), progress=False)


def test_schedule_later_noise_active_quant_and_integer_final():
    qat = prepare_qat(models.fmnist_resnet(), QuantConfig(2, 2))
    schedule = GradualSchedule.for_model(qat, 3, 1, 1, later="noise", active="quant", integer_final=True)
    layers = quant_layers(qat)
    stages = schedule.stages
    assert schedule.apply(qat, 0) == "stage 1/3"
    assert {layers[n].weight_quant.mode for n in stages[0]} == {"quant"}
    assert {layers[n].weight_quant.mode for n in stages[1] + stages[2]} == {"noise"}
    assert not any(layer.integer_sim for layer in layers.values())
    schedule.apply(qat, 1)
    assert all(not layers[n].weight.requires_grad for n in stages[0])
    assert all(layers[n].weight.requires_grad for n in stages[1] + stages[2])
    assert schedule.apply(qat, 3) == "final, integer"
    assert all(layer.integer_sim and layer.weight_quant.mode == "quant" for layer in layers.values())
    with pytest.raises(QuantizationError, match="active="):
        GradualSchedule(stages, active="fp32")

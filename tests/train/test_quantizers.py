"""Trainable quantizers: eval == reference, gradients, UNIQ noise bins, bad input."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from tvm_qnn import reference
from tvm_qnn.errors import QnnError, QuantizationError
from tvm_qnn.train import KQuantileWeight, LearnedClampAct, UniformNoisyWeight, act_fake_quant, initial_clamp


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("per_channel", [False, True])
def test_weight_quantizers_in_eval_equal_reference(bits, per_channel):
    weight = torch.randn(8, 4, 3, 3) * 0.3 + 0.02
    array = weight.numpy()
    for quantizer, (idx, lut) in [
        (KQuantileWeight(bits, per_channel), reference.kquantile_lut(array, bits, per_channel)),
        (UniformNoisyWeight(bits, per_channel), reference.uniform_lut(array, bits, None, per_channel)),
    ]:
        quantizer.set_mode("noise")
        quantizer.eval()
        np.testing.assert_array_equal(quantizer(weight).detach().numpy(), reference.dequant_weight(idx, lut))


def test_kquantile_noise_stays_in_its_cdf_bin():
    torch.manual_seed(0)
    weight = torch.randn(32, 16, 3, 3) * 0.1 - 0.01
    bits = 2
    quantizer = KQuantileWeight(bits).train()
    quantizer.set_mode("noise")
    noisy = quantizer(weight).detach().double().numpy()
    w = weight.double().numpy()
    mu, sigma = w.mean(), w.std()
    levels = 1 << bits
    bin_of_weight = np.minimum(np.floor(levels * norm.cdf((w - mu) / sigma)), levels - 1)
    u_noisy = norm.cdf((noisy - mu) / sigma)
    assert np.all(u_noisy >= bin_of_weight / levels - 1e-6)
    assert np.all(u_noisy <= (bin_of_weight + 1) / levels + 1e-6)
    # the noise spreads over the whole bin (not rounding): centred, width 1/2^b
    offset = u_noisy * levels - bin_of_weight
    assert 0.45 < offset.mean() < 0.55 and offset.min() < 0.05 and offset.max() > 0.95
    # straight gradient
    weight.requires_grad_(True)
    quantizer(weight).sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))


def test_uniform_noise_touches_about_five_percent():
    torch.manual_seed(0)
    weight = torch.randn(64, 32, 3, 3) * 0.2
    quantizer = UniformNoisyWeight(3, noise_fraction=0.05).train()
    quantizer.set_mode("noise")
    hard = quantizer.hard(weight)
    noisy = quantizer(weight).detach()
    share = float((noisy != hard).float().mean())
    assert 0.03 < share < 0.07


def test_learned_clamp_equals_reference_and_gets_gradient():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 5, 5) * 1.5 + 0.4
    act = LearnedClampAct(2, clamp=1.1).eval()
    expected = reference.dequant_act(reference.act_codes(x.numpy(), 1.1, 2), 1.1, 2)
    np.testing.assert_array_equal(act(x).detach().numpy(), expected)
    act.train()
    x.requires_grad_(True)
    out = act(x)
    np.testing.assert_array_equal(out.detach().numpy(), expected)  # training forward is exact too
    out.sum().backward()
    assert act.clamp.grad is not None and float(act.clamp.grad) != 0.0
    # x >= c contributes exactly 1 each; inside, the LSQ term; x <= 0 gives nothing
    inside = (x > 0) & (x < 1.1)
    np.testing.assert_array_equal(x.grad.numpy(), inside.float().numpy())
    # moving the clamp along -grad of a loss that penalizes clipping increases it
    act.zero_grad()
    loss = ((act(x.detach()) - torch.relu(x.detach())) ** 2).mean()
    loss.backward()
    assert float(act.clamp.grad) < 0


def test_initial_clamp_from_statistics():
    torch.manual_seed(0)
    x = torch.relu(torch.randn(10000))
    c8 = initial_clamp(x, 8)
    c2 = initial_clamp(x, 2)
    assert 0 < c2 < c8 <= float(x.max()) + 1e-6  # fewer bits -> tighter clamp
    sigma = initial_clamp(x, 2, "sigma")
    assert sigma == pytest.approx(float(x.mean() + 3 * x.std()), rel=1e-5)
    with pytest.raises(QuantizationError, match="known|expected"):
        initial_clamp(x, 2, "bogus")


@pytest.mark.parametrize("bits", [0, 9])
def test_bad_bits_name_the_layer(bits):
    for make in (lambda: KQuantileWeight(bits, layer="layer1.0.conv1.weight"),
                 lambda: UniformNoisyWeight(bits, layer="layer1.0.conv1.weight"),
                 lambda: LearnedClampAct(bits, layer="layer1.0.conv1.weight")):
        with pytest.raises(QnnError, match="layer1.0.conv1.weight"):
            make()


def test_nan_weight_names_the_layer():
    weight = torch.randn(4, 4)
    weight[1, 2] = float("nan")
    quantizer = KQuantileWeight(2, layer="fc1.weight").eval()
    with pytest.raises(QuantizationError, match="fc1.weight"):
        quantizer(weight)
    with pytest.raises(QuantizationError, match="a_clamp"):
        LearnedClampAct(2, clamp=-1.0, layer="fc1.weight")


def test_act_fake_quant_nan_maps_to_zero():
    x = torch.tensor([float("nan"), -1.0, 0.2, 9.0])
    assert act_fake_quant(x, 1.0, 2).tolist() == [0.0, 0.0, pytest.approx(1 / 3), 1.0]


def test_clamp_gradient_is_lsq_inside_and_one_above():
    torch.manual_seed(1)
    x = torch.rand(2000) * 3 - 0.5
    act = LearnedClampAct(3, clamp=1.7).train()
    upstream = torch.randn(2000)
    (act(x) * upstream).sum().backward()
    # the same gradient from an autograd surrogate: round(min(relu(x), c) / s) * s with STE rounding
    c = torch.tensor(1.7, requires_grad=True)
    s = c / 7
    scaled = torch.minimum(torch.relu(x), c) / s
    surrogate = (scaled + (torch.floor(scaled + 0.5) - scaled).detach()) * s
    (surrogate * upstream).sum().backward()
    assert float(act.clamp.grad) == pytest.approx(float(c.grad), rel=1e-4)

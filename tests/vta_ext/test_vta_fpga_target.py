"""The ``fpga`` target end to end: partition, simulator runtime, integer-only exactness, export/load."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import tvm_qnn
from relax_builders import composite_function
from relay_passes.composite import read_qnn_layers
from tvm_qnn import reference
from tvm_qnn.errors import HwConfigError
from tvm_qnn.layer import QnnLayer
from tvm_qnn.targets.fpga import model_report, segments_of
from tvm_qnn.models import dw_separable_net, fmnist_resnet
from tvm_qnn.targets import BuildOptions, get_target
from vta_ext.config import HwConfig
from vta_ext.segment import Segment

REPO = Path(__file__).resolve().parents[2]


def integer_layer(layer, codes, next_layer=None):
    """Integer-only reference of one layer: next layer's codes, or float from the int32 accumulator."""
    s_next = None if next_layer is None else reference.act_scale(next_layer.a_clamp, next_layer.a_bits)
    p = reference.integer_requant_params(layer.lut, layer.s_a, layer.bias, s_next, layer.out_channels)
    if layer.kind == "conv2d":
        acc = reference.qconv2d_int_acc(codes, layer.weight_idx, p["lut_int"], p["bias_int"], layer.stride,
                                        layer.padding, layer.groups, layer.dilation)
    else:
        acc = reference.qdense_int_acc(codes, layer.weight_idx, p["lut_int"], p["bias_int"])
    if next_layer is not None:
        upper = None if layer.out_max is None else int(reference.act_codes(np.float32(layer.out_max),
                                                                           next_layer.a_clamp, next_layer.a_bits))
        return reference.requantize(acc, p["multiplier"], p["shift"], next_layer.a_bits, upper)
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    y = acc * (float(layer.s_a) * p["s_w"]).reshape(shape)
    return np.clip(y, layer.out_min, layer.out_max).astype(np.float32)


def expected_segment_outputs(segment, layers, inputs):
    """The segment's outputs recomputed from the QnnLayers with tvm_qnn.reference only."""
    values = []
    for node in segment.nodes:
        layer = layers[node.program.name]
        kind, k = node.source
        x = inputs[k] if kind == "input" else values[k]
        codes = x if node.input_is_codes else reference.act_codes(x, layer.a_clamp, layer.a_bits)
        consumers = [layers[n.program.name] for n in segment.nodes if n.source == ("node", len(values))]
        emits_codes = node.program.outputs_codes
        values.append(integer_layer(layer, codes, consumers[0] if emits_codes else None))
    return [values[i] for i in segment.outputs]


@pytest.fixture
def recorded_segments(monkeypatch):
    calls = []
    original = Segment.run

    def run(self, inputs):
        outputs = original(self, inputs)
        calls.append((self, [np.array(x) for x in inputs], outputs))
        return outputs

    monkeypatch.setattr(Segment, "run", run)
    return calls


# --------------------------------------------------------------------------- hand-built graph
def _conv(rng, name, a_bits=2, clamp=2.0):
    return QnnLayer(name, "conv2d", rng.integers(0, 4, (8, 8, 3, 3)).astype(np.uint8),
                    (0.3 * rng.normal(size=(8, 4))).astype(np.float32), rng.normal(size=8).astype(np.float32), 2,
                    "kquantile", a_bits, clamp, (1, 8, 6, 6), padding=1, out_min=0.0)


def test_hand_built_chain_keeps_codes_and_is_exact(recorded_segments):
    rng = np.random.default_rng(0)
    layers = {"a": _conv(rng, "a"), "b": _conv(rng, "b", 3, 1.5), "c": _conv(rng, "c")}
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 6, 6), "float32"))
    fn = {n: bb.add_func(composite_function(layer), f"f{n}") for n, layer in layers.items()}
    with bb.function("main", [x]):
        with bb.dataflow():
            r = bb.emit(relax.op.nn.relu(x))
            a = bb.emit(relax.Call(fn["a"], [r]))  # a -> b only: a requantizes to b's codes on the core
            b = bb.emit(relax.Call(fn["b"], [a]))
            s = bb.emit(relax.op.add(b, r))  # CPU op between b and c: b stores int32, the host dequantizes
            c = bb.emit(relax.Call(fn["c"], [s]))
            out = bb.emit_output(relax.op.multiply(c, relax.const(2.0, "float32")))
        bb.emit_func_output(out)
    artifact = get_target("fpga").build(bb.get(), BuildOptions(extra={"read_layer": lambda f: layers[str(
        f.attrs["qnn.layer"])]}))
    segments = list(segments_of(artifact).values())
    assert sorted(len(s.nodes) for s in segments) == [1, 2]
    chain = next(s for s in segments if len(s.nodes) == 2)
    assert chain.nodes[0].program.outputs_codes and chain.nodes[1].input_is_codes
    vm = relax.VirtualMachine(artifact.executable, tvm.cpu())
    x_in = rng.uniform(-1, 3, (1, 8, 6, 6)).astype(np.float32)
    y = vm["main"](tvm.runtime.tensor(x_in)).numpy()
    r_ = np.maximum(x_in, 0)
    b_codes = integer_layer(layers["a"], reference.act_codes(r_, 2.0, 2), layers["b"])
    y_b = integer_layer(layers["b"], b_codes)
    y_c = integer_layer(layers["c"], reference.act_codes(y_b + r_, 2.0, 2))
    np.testing.assert_array_equal(y, y_c * 2.0)
    assert len(recorded_segments) == 2


# --------------------------------------------------------------------------- the zoo through tvm_qnn.compile
@pytest.fixture(scope="module")
def fmnist_setup():
    from qnn_models import quantized
    from tvm_qnn.data import load_fashion_mnist

    torch.manual_seed(0)
    images, labels = load_fashion_mnist(split="test", limit=64)
    images = np.asarray(images, np.float32)  # normalized like training data (the first conv is fp32)
    batch = images[:16]
    # w4a4: at w2a2 a random-init net's logits are near ties (median top-2 margin 0.02 against an
    # integer-path deviation up to 0.03) and 14% of the top-1 decisions flip; at w4a4 none did (64 images)
    qmod, recipe = quantized(fmnist_resnet(), batch, w_bits=4, a_bits=4)
    return qmod, recipe, images, np.asarray(labels)


def test_fmnist_resnet_accelerator_layers_bit_exact(fmnist_setup, recorded_segments):
    qmod, _, images, _ = fmnist_setup
    cm = tvm_qnn.compile(qmod, target="fpga")
    cm.run(images[:16])
    layers = read_qnn_layers(qmod)
    assert {n.program.name for s, _, _ in recorded_segments for n in s.nodes} == set(layers)
    for segment, inputs, outputs in recorded_segments:
        for got, want in zip(outputs, expected_segment_outputs(segment, layers, inputs)):
            np.testing.assert_array_equal(got, want)
    report = model_report(cm)
    assert report.cycles > 0 and report.fps > 0 and len(report.layers) == len(layers)


def test_fmnist_top1_against_cpu_reference(fmnist_setup):
    """Integer-only (fpga) vs float contract (cpu-reference): top-1 agreement is measured and must be high."""
    qmod, _, images, _ = fmnist_setup
    fpga = tvm_qnn.compile(qmod, target="fpga")
    cpu = tvm_qnn.compile(qmod, target="cpu-reference")
    agree = []
    for start in range(0, len(images), 16):
        chunk = images[start : start + 16]
        agree.append(fpga.run(chunk).argmax(1) == cpu.run(chunk).argmax(1))
    agreement = float(np.concatenate(agree).mean())
    print(f"top-1 agreement fpga vs cpu-reference on {len(images)} images: {agreement:.3f}")
    assert agreement >= 0.95


def test_export_load_in_a_fresh_process(fmnist_setup, tmp_path):
    qmod, _, images, _ = fmnist_setup
    cm = tvm_qnn.compile(qmod, target=HwConfig.preset("pynq_z1"))
    expected = cm.run(images[:16])
    out_dir = cm.export(tmp_path / "model")
    assert any(p.name == "segment.json" for p in out_dir.rglob("*"))
    np.save(tmp_path / "x.npy", images[:16])
    script = (f"import numpy as np, tvm_qnn; cm = tvm_qnn.load({str(out_dir)!r}); "
              f"np.save({str(tmp_path / 'y.npy')!r}, cm.run(np.load({str(tmp_path / 'x.npy')!r})))")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["target"] == "fpga"


def test_grouped_convs_stay_on_the_cpu_and_bits_are_checked():
    from qnn_models import quantized

    torch.manual_seed(1)
    x = np.random.default_rng(1).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    qmod, _ = quantized(dw_separable_net(), x, w_bits=2, a_bits=2, fp32=("conv1.weight", "fc.weight"))
    cm = tvm_qnn.compile(qmod, target="fpga")
    on_core = {n.program.name for s in segments_of(cm.artifact).values() for n in s.nodes}
    layers = read_qnn_layers(qmod)
    assert on_core == {name for name, layer in layers.items() if layer.groups == 1}
    assert on_core != set(layers)
    reference_out = tvm_qnn.compile(qmod, target="cpu-reference").run(x)
    assert (cm.run(x).argmax(1) == reference_out.argmax(1)).all()
    with pytest.raises(HwConfigError, match="a_bits=2 exceeds the core's max_a_bits=1"):
        tvm_qnn.compile(qmod, target=dict(HwConfig.preset("pynq_z1").to_dict(), max_a_bits=1))

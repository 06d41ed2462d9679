"""Tutorial 1: a PyTorch model -> a post-training recipe -> quantized Relax -> bit-serial CPU code.

    python tutorials/01_quantize_and_compile.py          # Fashion-MNIST-sized ResNet, 2k images
    python tutorials/01_quantize_and_compile.py --fast   # tiny CNN, a few images (CI)

Steps: import the float model into Relax (``from_torch``), calibrate a w2a2 k-quantile recipe on
a few batches (``calibrate``), insert the quantization ops (``quantize``), count BOPs, compile for
``cpu``, check the compiled model against the torch fake-quant model of the same recipe, time it
against PyTorch fp32, and export/load it.
"""

import argparse
import tempfile
import time

import numpy as np
import torch

import tvm_qnn
from tvm_qnn import data, models
from tvm_qnn.train import apply_recipe


def load_images(fast):
    """Fashion-MNIST test images when installed, else sklearn's digits (same 1x28x28 shape)."""
    limit = 64 if fast else 2048
    try:
        return data.load_fashion_mnist(split="test", limit=limit)
    except tvm_qnn.errors.DatasetError as err:
        print(f"(Fashion-MNIST not found: {err}; using the digits stand-in)")
        return data.load_digits28(split="test", limit=limit)


def torch_ms(model, x, repeat=20):
    with torch.no_grad():
        model(x)
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            samples.append(time.perf_counter() - start)
    return 1e3 * float(np.median(samples))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny model and data (CI)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    name = "tiny_cnn" if args.fast else "fmnist_resnet"
    images, labels = load_images(args.fast)

    # 1. the float model, imported into Relax (batch 1: the deployment shape)
    model = models.get_model(name).eval()
    example = images[:1]
    mod, params = tvm_qnn.from_torch(model, example)

    # 2. a post-training recipe: k-quantile (UNIQ) 2-bit weights, 2-bit activations clamped at a
    #    high percentile of what each layer sees; first conv and last dense stay fp32
    recipe = tvm_qnn.calibrate(mod, params, images.numpy(), w_bits=2, a_bits=2,
                               w_scheme="kquantile", max_batches=8 if args.fast else 64)
    print(f"recipe: {len(recipe.layers)} quantized layers, fp32: {list(recipe.fp32_layers)}")

    # 3. quantized Relax (runs on stock TVM) and its cost in bit operations
    qmod = tvm_qnn.quantize(mod, params, recipe)
    table = tvm_qnn.bops(model, (1, *models.INPUT_SHAPES[name]), recipe)
    fp32_table = tvm_qnn.bops(model, (1, *models.INPUT_SHAPES[name]))
    print(f"BOPs: {table.total / 1e9:.4f} G quantized vs {fp32_table.total / 1e9:.4f} G fp32 "
          f"({fp32_table.total / table.total:.1f}x fewer)")

    # 4. compile for the CPU and compare with torch's fake-quant model. Each layer gets a kernel:
    #    bit-serial popcount (these k-quantile LUTs), int8 VNNI for uniform weights past ~4 bit-plane
    #    products per MAC, a direct kernel for depthwise convs; the recipe's "kernel" field pins it
    compiled = tvm_qnn.compile(qmod, target="cpu")
    kinds = list(compiled.artifact.info["layer_kernels"].values())
    print("kernels: " + ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))))
    fake_quant = apply_recipe(model, recipe).eval()
    worst, agree = 0.0, 0
    n_check = 16 if args.fast else 256
    for i in range(n_check):
        x = images[i:i + 1]
        ours = compiled.run(x.numpy())
        with torch.no_grad():
            theirs = fake_quant(x).numpy()
        worst = max(worst, float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12)))
        agree += int(ours.argmax() == theirs.argmax())
    print(f"compiled vs torch fake-quant on {n_check} images: max rel. error {worst:.2e}, "
          f"top-1 agreement {agree}/{n_check}")
    assert worst < 1e-3, "compiled model disagrees with the fake-quant model"

    # 5. speed next to PyTorch fp32 (same process, same input)
    timing = compiled.benchmark(repeat=3 if args.fast else 10)
    reference_ms = torch_ms(model, example, repeat=5 if args.fast else 50)
    print(f"latency: tvm-qnn {compiled.target} {timing['mean_ms']:.3f} ms, PyTorch fp32 "
          f"({torch.get_num_threads()} threads) {reference_ms:.3f} ms "
          f"({reference_ms / timing['mean_ms']:.2f}x; benchmarks/ measures this carefully)")

    # 6. export and load back (what `tvm-qnn run` and RPC boards use)
    with tempfile.TemporaryDirectory() as scratch:
        compiled.export(f"{scratch}/model")
        again = tvm_qnn.load(f"{scratch}/model")
        assert np.array_equal(again.run(example.numpy()), compiled.run(example.numpy()))
    print("export -> load: identical output")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

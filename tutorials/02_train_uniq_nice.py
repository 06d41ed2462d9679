"""Tutorial 2: quantization-aware training on Fashion-MNIST, UNIQ vs NICE, accuracy vs BOPs.

    python tutorials/02_train_uniq_nice.py           # 10k training images, a few epochs
    python tutorials/02_train_uniq_nice.py --fast    # 512 images, one epoch each (CI)

A float model is trained first; each quantized variant starts from it (``prepare_qat`` folds
BatchNorm and swaps in quantized layers), gets its activation clamps initialised from data
(``calibrate_clamps``) and is fine-tuned: UNIQ k-quantile weights (``kquantile``) and NICE
uniform weights (``uniform``), both with learned activation clamps. The recipe each run exports
is exactly what ``tvm_qnn.compile`` consumes. The plot shows test accuracy against BOPs.
"""

import argparse
import copy
import itertools
from pathlib import Path

import torch

import tvm_qnn
from tvm_qnn import data, models
from tvm_qnn.train import (QuantConfig, TrainConfig, Trainer, calibrate_clamps, evaluate,
                           export_recipe, prepare_qat)


def loaders(fast):
    limit, batch = (512, 16) if fast else (10000, 64)
    try:
        train = data.fashion_mnist_loader(split="train", limit=limit, batch_size=batch)
        test = data.fashion_mnist_loader(split="test", limit=limit // 4, batch_size=256)
        return train, test, "Fashion-MNIST"
    except tvm_qnn.errors.DatasetError as err:
        print(f"(Fashion-MNIST not found: {err}; using the digits stand-in)")
        train_xy, test_xy = data.load_digits28("train", limit), data.load_digits28("test")
        return (data.make_loader(*train_xy, batch, shuffle=True), data.make_loader(*test_xy, 256),
                "digits")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="512 images, 1 epoch (CI)")
    parser.add_argument("--out", default="results/tutorials", help="where the plot goes")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    name = "tiny_cnn" if args.fast else "fmnist_resnet"
    train, test, dataset = loaders(args.fast)
    epochs = 1 if args.fast else 3
    input_shape = (1, *models.INPUT_SHAPES[name])

    float_model = models.get_model(name)
    Trainer(float_model, train, test, TrainConfig(epochs=epochs, lr=0.01, optimizer="adam"),
            desc="fp32").fit()
    points = [("fp32", tvm_qnn.bops(float_model, input_shape).total, evaluate(float_model, test))]

    variants = [("UNIQ w2a2", "kquantile", 2, 2), ("NICE w2a2", "uniform", 2, 2)]
    if not args.fast:
        variants += [("UNIQ w4a4", "kquantile", 4, 4), ("NICE w4a4", "uniform", 4, 4)]
    for label, scheme, w_bits, a_bits in variants:
        qat = prepare_qat(copy.deepcopy(float_model), QuantConfig(w_bits, a_bits, scheme))
        calibrate_clamps(qat, itertools.islice(iter(train), 4))
        Trainer(qat, train, test, TrainConfig(epochs=epochs, lr=0.002, optimizer="adam"),
                desc=label).fit()
        recipe = export_recipe(qat, name)
        points.append((label, tvm_qnn.bops(float_model, input_shape, recipe).total,
                       evaluate(qat, test)))

    print(f"\n{dataset}, {name}: test accuracy vs BOPs")
    for label, bops, accuracy in points:
        print(f"  {label:10s} {bops / 1e9:9.4f} GBOPs  accuracy {accuracy:.4f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    for label, bops, accuracy in points:
        axes.scatter(bops / 1e9, accuracy)
        axes.annotate(label, (bops / 1e9, accuracy), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("GBOPs (log)")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"{name} on {dataset}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out / "02_accuracy_vs_bops.png", dpi=120)
    print(f"plot: {out / '02_accuracy_vs_bops.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

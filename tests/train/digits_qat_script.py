"""Gradual w2a2 QAT with distillation on sklearn digits; run by test_distributed.py alone or under torchrun.

    python digits_qat_script.py --cache DIR --out result.json [--stop-after N]
    torchrun --nproc_per_node 2 digits_qat_script.py --cache DIR --out result.json

The fp32 teacher comes from ``train.baseline`` (digits config, cached in ``--cache``; the first,
single-process run trains it). Rank 0 writes ``{"fp32", "ptq", "qat", "world_size", "epochs_done",
"recipe"}`` to ``--out``. ``--stop-after N`` trains only up to epoch N (the QAT checkpoint in
``--cache`` resumes it, under any world size).
"""

import argparse
import itertools
import json

import torch

from tvm_qnn import data
from tvm_qnn.train import (GradualSchedule, QuantConfig, TrainConfig, Trainer, apply_recipe, calibrate_clamps,
                           evaluate, export_float_model, export_recipe, fold_batchnorm, init_distributed,
                           prepare_qat, ptq)
from tvm_qnn.train.baseline import BaselineConfig, load_baseline

TEACHER = BaselineConfig(model="fmnist_resnet", model_kwargs=(("widths", (8, 16, 32)),), dataset="digits",
                         epochs=6, lr=0.05, batch_size=32, crop_padding=0, hflip=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop-after", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = init_distributed()
    teacher, _ = load_baseline(TEACHER, args.cache, train=(world == 1), progress=False)
    x, y = data.load_digits28("train")
    xt, yt = data.load_digits28("test")
    train = data.make_loader(x, y, 32, shuffle=True)
    test = data.make_loader(xt, yt, 256)
    folded = fold_batchnorm(teacher)
    fp32 = evaluate(folded, test)
    calibration = list(itertools.islice(data.make_loader(x, y, 32, shuffle=True, seed=1), 8))
    recipe = ptq(folded, calibration, 2, 2, "kquantile", per_channel=True)
    ptq_acc = evaluate(apply_recipe(folded, recipe), test)
    qat = prepare_qat(folded, QuantConfig(2, 2, "kquantile", per_channel=True))
    calibrate_clamps(qat, calibration)
    schedule = GradualSchedule.for_model(qat, 2, 2, 4, active="quant", later="fp32")
    trainer = Trainer(qat, train, test, TrainConfig(lr=0.005, weight_decay=1e-4, distill_alpha=0.5),
                      checkpoint=f"{args.cache}/qat-w2a2.pt", schedule=schedule, progress=False, teacher=folded)
    while not trainer.finished and (args.stop_after is None or trainer.epoch < args.stop_after):
        trainer.train_epoch()
    qat_recipe = export_recipe(qat, "digits")
    assert set(qat_recipe.layers) == set(recipe.layers), "QAT must export the layers PTQ quantized"
    qat_acc = evaluate(apply_recipe(export_float_model(qat), qat_recipe), test)
    if rank == 0:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"fp32": fp32, "ptq": ptq_acc, "qat": qat_acc, "world_size": world, "epochs_done": trainer.epoch,
                       "history": trainer.history, "recipe": qat_recipe.to_json()}, handle)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

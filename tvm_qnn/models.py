"""Model zoo (torch only): the networks the tests, benchmarks and demo use.

Every model is built with random initialisation (nothing is downloaded). Parameter names
follow torchvision where a torchvision model exists (``resnet18``: ``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``), so recipes keyed by weight names
(``layer1.0.conv1.weight``) resolve the same way in torch, torch.export and the Relax frontend.

Every quantizable layer's input is non-negative (it follows a ReLU, a ReLU6, a max/avg pool of
one, or is the raw image for the first conv, which stays fp32 by default): the activation
codes of the quantization contract are unsigned.

* ``tiny_cnn()``         -- 1x28x28, conv-relu-conv-relu-maxpool-linear-relu-linear (tests).
* ``fmnist_resnet()``    -- ResNet-style net for 1x28x28 Fashion-MNIST (3 stages, 16/32/64).
* ``resnet18()``         -- standard ResNet-18 for 3x224x224 (shapes and speed studies).
* ``dw_separable_net()`` -- depthwise-separable (grouped conv + ReLU6) net for 1x28x28.
* ``alexnet_like()``     -- a small AlexNet-shaped net (conv stack + dense head) for 1x28x28.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import UnsupportedOpError

# the input shape (without batch) each model expects
INPUT_SHAPES = {
    "tiny_cnn": (1, 28, 28),
    "fmnist_resnet": (1, 28, 28),
    "resnet18": (3, 224, 224),
    "dw_separable_net": (1, 28, 28),
    "alexnet_like": (1, 28, 28),
}


class TinyCNN(nn.Module):
    """conv1(1->4) relu conv2(4->8) relu maxpool4 fc1(392->32) relu fc2(32->10).

    Small enough for unit tests; with the default fp32 first/last layers, ``conv2`` and
    ``fc1`` are quantized, so both layer kinds are exercised.
    """

    def __init__(self, num_classes=10, width=4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool = nn.MaxPool2d(4)
        self.fc1 = nn.Linear(2 * width * 7 * 7, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(torch.relu(self.fc1(x)))


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block (names conv1/bn1/conv2/bn2/downsample)."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _stage(in_planes, planes, blocks, stride):
    layers = [BasicBlock(in_planes, planes, stride)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """torchvision-layout ResNet of basic blocks; ``stem`` selects ImageNet or 28x28 input."""

    def __init__(self, widths, blocks, num_classes, in_channels, stem):
        super().__init__()
        if stem == "imagenet":  # 7x7/2 conv + 3x3/2 max pool, as torchvision
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:  # small images: a 3x3/1 conv, no pooling
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=False)
        stages = []
        in_planes = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stages.append(_stage(in_planes, width, count, 1 if i == 0 else 2))
            in_planes = width
        for i, stage in enumerate(stages):
            setattr(self, f"layer{i + 1}", stage)
        self.num_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def fmnist_resnet(num_classes=10, widths=(16, 32, 64), blocks=(1, 1, 1)):
    """ResNet-style net for 1x28x28 (28 -> 14 -> 7 spatial, 16/32/64 channels, ~0.2 M params).

    One basic block per stage by default keeps an epoch of Fashion-MNIST near a minute on two
    CPU cores; pass ``blocks=(2, 2, 2)`` for a deeper ResNet-14.
    """
    return ResNet(tuple(widths), tuple(blocks), num_classes, 1, "small")


def resnet18(num_classes=1000):
    """Standard ResNet-18 (torchvision layout and parameter names) for 3x224x224, random init."""
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, 3, "imagenet")


class DepthwiseSeparable(nn.Module):
    """depthwise 3x3 (groups = channels) + BN + ReLU6, then pointwise 1x1 + BN + ReLU6."""

    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.dw = nn.Conv2d(in_planes, in_planes, 3, stride, 1, groups=in_planes, bias=False)
        self.bn_dw = nn.BatchNorm2d(in_planes)
        self.pw = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(planes)
        self.act = nn.ReLU6()

    def forward(self, x):
        return self.act(self.bn_pw(self.pw(self.act(self.bn_dw(self.dw(x))))))


class DWSeparableNet(nn.Module):
    """MobileNet-v1-style net for 1x28x28: stem conv, 3 depthwise-separable blocks, pool, fc."""

    def __init__(self, num_classes=10, widths=(16, 32, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act = nn.ReLU6()
        blocks, in_planes = [], widths[0]
        for i, width in enumerate(widths):
            blocks.append(DepthwiseSeparable(in_planes, width, 1 if i == 0 else 2))
            in_planes = width
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        x = self.blocks(self.act(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def dw_separable_net(num_classes=10, widths=(16, 32, 64)):
    return DWSeparableNet(num_classes, tuple(widths))


class AlexNetLike(nn.Module):
    """Small AlexNet-shaped net for 1x28x28: 3 conv layers with max pools, 2 hidden dense layers."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),     # 14x14
            nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),    # 7x7
            nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def alexnet_like(num_classes=10):
    return AlexNetLike(num_classes)


def tiny_cnn(num_classes=10, width=4):
    return TinyCNN(num_classes, width)


MODELS = {
    "tiny_cnn": tiny_cnn,
    "fmnist_resnet": fmnist_resnet,
    "resnet18": resnet18,
    "dw_separable_net": dw_separable_net,
    "alexnet_like": alexnet_like,
}


def get_model(name, **kwargs):
    """Build a zoo model by name (unknown name -> UnsupportedOpError listing the known ones)."""
    if name not in MODELS:
        raise UnsupportedOpError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def example_input(name, batch=1, seed=0):
    """A random float32 input of the shape model ``name`` expects (NCHW)."""
    if name not in INPUT_SHAPES:
        raise UnsupportedOpError(f"unknown model {name!r}; known models: {sorted(INPUT_SHAPES)}")
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch,) + INPUT_SHAPES[name], generator=generator)


def quantizable_layers(model):
    """Weight names (``module.weight``) of every Conv2d and Linear in ``model``, in order."""
    return [f"{name}.weight" for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear))]


def default_fp32_layers(model):
    """First conv and last linear (kept in fp32 by default, as NICE and UNIQ do)."""
    names = quantizable_layers(model)
    modules = dict(model.named_modules())
    convs = [n for n in names if isinstance(modules[n[: -len(".weight")]], nn.Conv2d)]
    linears = [n for n in names if isinstance(modules[n[: -len(".weight")]], nn.Linear)]
    keep = []
    if convs:
        keep.append(convs[0])
    if linears:
        keep.append(linears[-1])
    return keep

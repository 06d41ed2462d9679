"""Layer graphs of the networks the streaming planner studies, built from shapes (no torch).

* ``resnet18()``  -- torchvision's ResNet-18 at 3x224x224 with its eight residual joins
  (identity skips, and 1x1 stride-2 downsample convs on the skip path of stages 2-4).
* ``alexnet()``   -- torchvision's single-tower AlexNet at 3x224x224 (conv 64-192-384-256-256,
  dense 9216-4096-4096-1000), the "AlexNet-like" net of the seed paper's comparison.
* ``plain18`` -- ResNet-18's conv stack without its skip connections (the overhead baseline).
* ``small_resnet()`` -- a 1x28x28 two-block residual net, small enough for exhaustive tests.

Layer names follow torchvision (``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``) so a
plan lines up with recipes keyed by weight names. BatchNorm folds into the conv and ReLU into
the block's output quantizer, so neither is a separate block.
"""

from __future__ import annotations

from tvm_qnn.errors import UnsupportedOpError

from vta_ext.streaming.graph import LayerGraph, StreamLayer

IMAGE_BITS = 8  # the input image streams as 8-bit pixels


def _conv(name, src, out_channels, kernel, stride=1, pad=0):
    return StreamLayer(name, "conv2d", (src,), out_channels=out_channels, kernel=kernel,
                       stride=stride, padding=pad)


def _basic_block(prefix, src, channels, stride):
    """torchvision BasicBlock: conv3x3(s)-conv3x3 on the main path, identity or 1x1(s) skip."""
    layers = [_conv(f"{prefix}.conv1", src, channels, 3, stride, 1),
              _conv(f"{prefix}.conv2", f"{prefix}.conv1", channels, 3, 1, 1)]
    skip = src
    if stride != 1:
        skip = f"{prefix}.downsample.0"
        layers.append(_conv(skip, src, channels, 1, stride, 0))
    layers.append(StreamLayer(f"{prefix}.add", "add", (f"{prefix}.conv2", skip)))
    return layers, f"{prefix}.add"


def resnet18(image_hw=224, num_classes=1000, skip_connections=True):
    """ResNet-18 (He et al. 2016 / torchvision) as a streaming layer graph.

    ``skip_connections=False`` gives the same conv stack without joins or downsample convs
    ("plain-18"), the baseline that isolates what the skip connections cost.
    """
    layers = [StreamLayer("input", "input", shape=(3, image_hw, image_hw), bits=IMAGE_BITS),
              _conv("conv1", "input", 64, 7, 2, 3),
              StreamLayer("maxpool", "maxpool", ("conv1",), kernel=3, stride=2, padding=1)]
    src = "maxpool"
    for stage, channels in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            block_layers, src = _basic_block(f"layer{stage}.{block}", src, channels, stride)
            if not skip_connections:
                block_layers = [layer for layer in block_layers if layer.op == "conv2d" and "downsample" not in layer.name]
                src = block_layers[-1].name
            layers += block_layers
    layers += [StreamLayer("avgpool", "avgpool", (src,)),
               StreamLayer("fc", "dense", ("avgpool",), out_channels=num_classes, bits=32)]
    return LayerGraph("resnet18" if skip_connections else "plain18", tuple(layers))


def alexnet(image_hw=224, num_classes=1000):
    """AlexNet (torchvision's single-tower variant) as a streaming layer graph."""
    layers = [StreamLayer("input", "input", shape=(3, image_hw, image_hw), bits=IMAGE_BITS),
              _conv("features.0", "input", 64, 11, 4, 2),
              StreamLayer("features.2", "maxpool", ("features.0",), kernel=3, stride=2),
              _conv("features.3", "features.2", 192, 5, 1, 2),
              StreamLayer("features.5", "maxpool", ("features.3",), kernel=3, stride=2),
              _conv("features.6", "features.5", 384, 3, 1, 1),
              _conv("features.8", "features.6", 256, 3, 1, 1),
              _conv("features.10", "features.8", 256, 3, 1, 1),
              StreamLayer("features.12", "maxpool", ("features.10",), kernel=3, stride=2),
              StreamLayer("classifier.1", "dense", ("features.12",), out_channels=4096),
              StreamLayer("classifier.4", "dense", ("classifier.1",), out_channels=4096),
              StreamLayer("classifier.6", "dense", ("classifier.4",), out_channels=num_classes, bits=32)]
    return LayerGraph("alexnet", tuple(layers))


def small_resnet(num_classes=10):
    """1x28x28: stem conv, one identity residual block, one downsampling block, pool, dense."""
    layers = [StreamLayer("input", "input", shape=(1, 28, 28), bits=IMAGE_BITS),
              _conv("conv1", "input", 16, 3, 1, 1)]
    block_layers, src = _basic_block("layer1.0", "conv1", 16, 1)
    layers += block_layers
    block_layers, src = _basic_block("layer2.0", src, 32, 2)
    layers += block_layers
    layers += [StreamLayer("avgpool", "avgpool", (src,)),
               StreamLayer("fc", "dense", ("avgpool",), out_channels=num_classes, bits=32)]
    return LayerGraph("small_resnet", tuple(layers))


# name -> builder (the CLI and benchmarks look models up here)
NETWORKS = {"resnet18": resnet18, "plain18": lambda **kw: resnet18(skip_connections=False, **kw),
            "alexnet": alexnet, "small_resnet": small_resnet}


def get_network(name, **kwargs):
    if name not in NETWORKS:
        raise UnsupportedOpError(f"unknown network {name!r}; known: {sorted(NETWORKS)}")
    return NETWORKS[name](**kwargs)

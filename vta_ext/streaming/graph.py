"""The layer graph the streaming planner works on: plain layer descriptors and their DAG.

A streaming architecture (FINN, and the third seed paper's multi-FPGA dataflow design) gives
every layer its own hardware block and connects the blocks by streams. What the planner needs
of a layer is only its shape and bit widths, so a layer here is a small frozen descriptor
(``StreamLayer``), not a ``tvm_qnn.layer.QnnLayer`` with weights; ``from_qnn_layers`` converts
those. Edges are the ``inputs`` of each layer, so skip connections (ResNet) are ordinary
second inputs of an ``add`` layer.

Streams carry feature maps row by row: one stream *element* is one row of a feature map
(``W x C`` activations), which is also the unit of the FIFO depths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tvm_qnn.errors import ShapeError

# op -> number of inputs it takes (None: exactly one; the registry the validation reads)
OP_ARITY = {"input": 0, "conv2d": 1, "dense": 1, "maxpool": 1, "avgpool": 1, "add": 2}
MAC_OPS = ("conv2d", "dense")


def _pair(value, name, layer):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
        raise ShapeError(f"layer {layer!r}: {name}={value!r}; expected a positive int or (h, w) pair")
    return pair


@dataclass(frozen=True)
class StreamLayer:
    """One layer of a streaming network.

    * ``op``: one of ``OP_ARITY`` (``input`` is the image source; ``avgpool`` with
      ``kernel=None`` is a global average pool).
    * ``inputs``: names of the producing layers (``add`` takes two: main path and skip).
    * ``shape``: (C, H, W) for ``input`` only; every other shape is inferred by ``LayerGraph``.
    * ``bits``: bit width of the values the layer *emits* (None: the plan's ``a_bits``; the
      input image is 8-bit, the network's last layer emits 32-bit logits).
    * ``w_bits``: weight bits of a conv2d/dense (None: the plan's ``w_bits``).
    """

    name: str
    op: str
    inputs: tuple = ()
    out_channels: int | None = None
    kernel: tuple | None = None
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    groups: int = 1
    shape: tuple | None = None
    bits: int | None = None
    w_bits: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ShapeError(f"layer name {self.name!r} must be a non-empty string")
        if self.op not in OP_ARITY:
            raise ShapeError(f"layer {self.name!r}: op={self.op!r}; expected one of {sorted(OP_ARITY)}")
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        object.__setattr__(self, "inputs", inputs)
        if len(inputs) != OP_ARITY[self.op]:
            raise ShapeError(f"layer {self.name!r}: op {self.op!r} takes {OP_ARITY[self.op]} input(s), got {list(inputs)}")
        if self.kernel is not None:
            object.__setattr__(self, "kernel", _pair(self.kernel, "kernel", self.name))
        object.__setattr__(self, "stride", _pair(self.stride, "stride", self.name))
        pad = (self.padding,) * 4 if isinstance(self.padding, int) else tuple(self.padding)
        if len(pad) == 2:
            pad = (pad[0], pad[1], pad[0], pad[1])
        if len(pad) != 4 or any(not isinstance(v, int) or v < 0 for v in pad):
            raise ShapeError(f"layer {self.name!r}: padding={self.padding!r}; expected 4 ints >= 0 (top, left, bottom, right)")
        object.__setattr__(self, "padding", pad)
        if self.op in MAC_OPS and (not isinstance(self.out_channels, int) or self.out_channels < 1):
            raise ShapeError(f"layer {self.name!r}: out_channels={self.out_channels!r}; expected an int >= 1")
        if self.op in ("conv2d", "maxpool") and self.kernel is None:
            raise ShapeError(f"layer {self.name!r}: {self.op} needs a kernel size")
        if self.op == "input":
            if self.shape is None or len(self.shape) != 3 or any(not isinstance(v, int) or v < 1 for v in self.shape):
                raise ShapeError(f"layer {self.name!r}: input shape={self.shape!r}; expected (C, H, W) positive ints")
        for bits_field in ("bits", "w_bits"):
            value = getattr(self, bits_field)
            if value is not None and (not isinstance(value, int) or not 1 <= value <= 32):
                raise ShapeError(f"layer {self.name!r}: {bits_field}={value!r}; expected an int in 1..32")
        if not isinstance(self.groups, int) or self.groups < 1:
            raise ShapeError(f"layer {self.name!r}: groups={self.groups!r}; expected an int >= 1")


@dataclass(frozen=True)
class LayerGraph:
    """A validated DAG of ``StreamLayer`` in topological order, with inferred shapes.

    ``shapes[name]`` is the (C, H, W) the layer emits (dense: (O, 1, 1)); ``consumers[name]``
    lists the layers reading it. Exactly one ``input`` layer; every layer reachable from it.
    """

    name: str
    layers: tuple
    shapes: dict = field(default_factory=dict, compare=False)
    consumers: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise ShapeError(f"model {self.name!r}: the layer graph is empty")
        by_name = {}
        for layer in layers:
            if not isinstance(layer, StreamLayer):
                raise ShapeError(f"model {self.name!r}: {layer!r} is not a StreamLayer")
            if layer.name in by_name:
                raise ShapeError(f"model {self.name!r}: layer name {layer.name!r} is used twice")
            by_name[layer.name] = layer
        sources = [layer.name for layer in layers if layer.op == "input"]
        if len(sources) != 1:
            raise ShapeError(f"model {self.name!r}: needs exactly one input layer, found {sources}")
        for layer in layers:
            for src in layer.inputs:
                if src not in by_name:
                    raise ShapeError(f"model {self.name!r}: layer {layer.name!r} reads {src!r}, which is not a layer")
        ordered = _topological(layers, by_name, self.name)
        object.__setattr__(self, "layers", ordered)
        consumers = {layer.name: [] for layer in ordered}
        for layer in ordered:
            for src in layer.inputs:
                consumers[src].append(layer.name)
        shapes = {}
        for layer in ordered:
            shapes[layer.name] = _infer_shape(layer, [shapes[s] for s in layer.inputs])
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "consumers", {k: tuple(v) for k, v in consumers.items()})

    def __getitem__(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ShapeError(f"model {self.name!r}: no layer named {name!r}")

    @property
    def edges(self):
        """(producer, consumer) pairs in topological order of the consumer."""
        return [(src, layer.name) for layer in self.layers for src in layer.inputs]

    def in_shape(self, layer):
        return self.shapes[layer.inputs[0]] if layer.inputs else layer.shape

    def rows(self, name):
        """Stream elements (feature-map rows) the layer emits per image."""
        return self.shapes[name][1]

    def skip_edges(self):
        """Edges into an ``add`` (the two paths of a residual join)."""
        return [(src, dst) for src, dst in self.edges if self[dst].op == "add"]


def _topological(layers, by_name, model):
    indegree = {layer.name: len(layer.inputs) for layer in layers}
    ready = [layer.name for layer in layers if not layer.inputs]
    order = []
    readers = {layer.name: [] for layer in layers}
    for layer in layers:
        for src in layer.inputs:
            readers[src].append(layer.name)
    while ready:
        name = ready.pop(0)
        order.append(by_name[name])
        for reader in readers[name]:
            indegree[reader] -= 1
            if indegree[reader] == 0:
                ready.append(reader)
    if len(order) != len(layers):
        stuck = sorted(set(by_name) - {layer.name for layer in order})
        raise ShapeError(f"model {model!r}: the layer graph has a cycle through {stuck}")
    return tuple(order)


def _window_out(size, kernel, stride, pad_lo, pad_hi, layer, axis):
    out = (size + pad_lo + pad_hi - kernel) // stride + 1
    if out < 1:
        raise ShapeError(f"layer {layer!r}: kernel {kernel} with padding does not fit input {axis}={size}")
    return out


def _infer_shape(layer, in_shapes):
    if layer.op == "input":
        return tuple(layer.shape)
    c, h, w = in_shapes[0]
    if layer.op == "add":
        if in_shapes[0] != in_shapes[1]:
            raise ShapeError(f"layer {layer.name!r}: add of shapes {in_shapes[0]} and {in_shapes[1]}; they must match")
        return (c, h, w)
    if layer.op == "dense":
        return (layer.out_channels, 1, 1)
    if layer.op == "avgpool" and layer.kernel is None:
        return (c, 1, 1)
    kh, kw = layer.kernel
    sh, sw = layer.stride
    top, left, bottom, right = layer.padding
    ho = _window_out(h, kh, sh, top, bottom, layer.name, "H")
    wo = _window_out(w, kw, sw, left, right, layer.name, "W")
    if layer.op == "conv2d":
        if c % layer.groups or layer.out_channels % layer.groups:
            raise ShapeError(f"layer {layer.name!r}: groups={layer.groups} does not divide C_in={c} and C_out={layer.out_channels}")
        return (layer.out_channels, ho, wo)
    return (c, ho, wo)


def from_qnn_layers(name, qnn_layers, edges=None, input_bits=8):
    """A ``LayerGraph`` from ``tvm_qnn.layer.QnnLayer``-like objects (anything with ``name``,
    ``kind``, ``input_shape``, ``out_channels``, ``kernel``, ``stride``, ``padding``, ``groups``,
    ``a_bits``, ``w_bits``).

    ``edges``: (producer, consumer) name pairs; None chains the layers in the given order. The
    first layer's input becomes the ``input`` source (name it ``"input"`` in edges). A layer
    with two producers reads their sum: a join ``<layer>.join`` (``add``) is inserted before it,
    which is how a residual skip connection is written with plain conv/dense layers. A layer's
    ``a_bits`` is the bit width of the stream it reads, so it becomes its producer's ``bits``.
    """
    qnn_layers = list(qnn_layers)
    if not qnn_layers:
        raise ShapeError(f"model {name!r}: no layers given")
    first = qnn_layers[0]
    in_shape = tuple(int(v) for v in first.input_shape[1:])
    if len(in_shape) == 1:
        in_shape = (in_shape[0], 1, 1)
    names = [layer.name for layer in qnn_layers]
    if edges is None:
        edges = [("input", names[0])] + list(zip(names[:-1], names[1:]))
    reads = {n: [] for n in names}
    for src, dst in edges:
        if dst not in reads:
            raise ShapeError(f"model {name!r}: edge {src!r} -> {dst!r} names an unknown layer")
        reads[dst].append(src)
    bits_of = {"input": input_bits}
    for layer in qnn_layers:
        for src in reads[layer.name]:
            bits_of[src] = int(layer.a_bits)
    out = [StreamLayer("input", "input", shape=in_shape, bits=input_bits)]
    for layer in qnn_layers:
        if layer.kind not in MAC_OPS:
            raise ShapeError(f"layer {layer.name!r}: kind={layer.kind!r}; expected one of {list(MAC_OPS)}")
        if len(reads[layer.name]) > 2:
            raise ShapeError(f"layer {layer.name!r} has {len(reads[layer.name])} producers; at most 2 (a residual join)")
        sources = tuple(reads[layer.name])
        if len(sources) == 2:
            out.append(StreamLayer(f"{layer.name}.join", "add", sources, bits=int(layer.a_bits)))
            sources = (f"{layer.name}.join",)
        op = layer.kind
        out.append(StreamLayer(
            layer.name, op, sources, out_channels=int(layer.out_channels),
            kernel=tuple(layer.kernel) if op == "conv2d" else None, stride=tuple(layer.stride),
            padding=tuple(layer.padding), groups=int(layer.groups), bits=bits_of.get(layer.name),
            w_bits=int(layer.w_bits)))
    return LayerGraph(name, tuple(out))

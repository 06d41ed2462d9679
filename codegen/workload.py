"""``ConvWorkload``: the shape/bits/scheme of one bit-serial kernel, as a frozen dataclass.

A workload is everything that changes the generated code (shapes, bits, weight scheme, word
size, epilogue kind) and nothing that does not (the weight values, LUT, bias, scales are
kernel *arguments*). Dense layers are 1x1 convolutions on a 1x1 image (``kind="dense"`` only
changes the input/output layout). Two layers with equal workloads share one compiled kernel
and one MetaSchedule record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tvm_qnn import reference
from tvm_qnn.errors import ShapeError

WORD_BITS = {"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}
SCHEMES = ("bitplane", "onehot")  # uniform LUT -> weight bit planes; any LUT -> one-hot index planes
KINDS = ("conv2d", "dense")
OUTPUTS = ("float", "packed")  # float NCHW output, or the next layer's packed activation codes
RESIDUALS = ("", "add", "add_relu")  # none, or a float32 residual added to the float output (then ReLU)


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class ConvWorkload:
    """Static description of one bit-serial layer kernel.

    * ``scheme="bitplane"``: ``w_planes = w_bits`` planes of the weight index bits (uniform LUT);
      ``scheme="onehot"``: ``w_planes = 2^w_bits - 1`` one-hot planes ``[idx == q]``.
    * ``padding`` is ``(top, left, bottom, right)``.
    * ``output="packed"`` (only for conv2d feeding another quantized layer): the kernel emits the
      next layer's codes already packed, spatially pre-padded by ``next_padding`` (t, l, b, r),
      with ``next_a_bits`` planes and ``next_groups`` channel groups.
    * ``a_zero_point`` / ``next_a_zero_point``: the input's / the next layer's activation zero
      point (codes ``+ z``, spatial padding filled with code ``z``, the kernel's integer sums
      corrected by ``z`` per output channel; see :mod:`codegen.bitserial_conv2d`). Part of the
      workload because the padding words depend on it; 0 keeps the key of before.
    * ``residual="add"`` / ``"add_relu"`` (conv2d with float output): the kernel takes one more
      float32 argument of the output's shape, the residual branch of a ResNet-style block, and
      returns ``out + residual`` (then ``max(., 0)``), the same float32 add and ReLU that would
      otherwise run as a separate pass over the output.
    """

    kind: str
    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    a_bits: int = 1
    w_bits: int = 1
    scheme: str = "bitplane"
    word: str = "uint64"
    has_clip_min: bool = False
    has_clip_max: bool = False
    output: str = "float"
    next_a_bits: int = 1
    next_padding: tuple = (0, 0, 0, 0)
    next_groups: int = 1
    a_zero_point: int = 0
    next_a_zero_point: int = 0
    residual: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ShapeError(f"workload kind={self.kind!r}; expected one of {list(KINDS)}")
        if self.scheme not in SCHEMES:
            raise ShapeError(f"workload scheme={self.scheme!r}; expected one of {list(SCHEMES)}")
        if self.word not in WORD_BITS:
            raise ShapeError(f"workload word={self.word!r}; expected one of {sorted(WORD_BITS)}")
        if self.output not in OUTPUTS:
            raise ShapeError(f"workload output={self.output!r}; expected one of {list(OUTPUTS)}")
        reference.check_bits(self.a_bits, "a_bits")
        reference.check_bits(self.w_bits, "w_bits")
        reference.check_bits(self.next_a_bits, "next_a_bits")
        object.__setattr__(self, "a_zero_point", reference.check_zero_point(self.a_zero_point, self.a_bits))
        object.__setattr__(self, "next_a_zero_point",
                           reference.check_zero_point(self.next_a_zero_point, self.next_a_bits, "next_a_zero_point"))
        for field in ("kernel", "stride", "dilation"):
            object.__setattr__(self, field, tuple(int(v) for v in getattr(self, field)))
        object.__setattr__(self, "padding", reference.padding4(self.padding))
        object.__setattr__(self, "next_padding", reference.padding4(self.next_padding))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide channels {self.in_channels}->{self.out_channels}")
        if self.out_height <= 0 or self.out_width <= 0:
            raise ShapeError(f"input {self.height}x{self.width} is smaller than kernel {self.kernel}")
        if self.residual not in RESIDUALS:
            raise ShapeError(f"workload residual={self.residual!r}; expected one of {list(RESIDUALS)}")
        if self.residual and (self.kind != "conv2d" or self.output != "float"):
            raise ShapeError(f"workload residual={self.residual!r} needs a conv2d with float output")
        if self.output == "packed" and self.out_channels % self.next_groups:
            raise ShapeError(f"next_groups={self.next_groups} does not divide {self.out_channels} channels")

    # ------------------------------------------------------------------ derived sizes
    @property
    def word_bits(self):
        return WORD_BITS[self.word]

    @property
    def w_planes(self):
        return self.w_bits if self.scheme == "bitplane" else (1 << self.w_bits) - 1

    @property
    def channels_per_group(self):
        return self.in_channels // self.groups

    @property
    def out_per_group(self):
        return self.out_channels // self.groups

    @property
    def words_per_group(self):
        return _ceil_div(self.channels_per_group, self.word_bits)

    @property
    def out_height(self):
        return reference.conv_out_hw(self.height, self.width, self.kernel, self.stride, self.padding, self.dilation)[0]

    @property
    def out_width(self):
        return reference.conv_out_hw(self.height, self.width, self.kernel, self.stride, self.padding, self.dilation)[1]

    @property
    def fan_in(self):
        """Window positions x channels summed per output (per group): ``C/groups * kh * kw``."""
        return self.channels_per_group * self.kernel[0] * self.kernel[1]

    @property
    def padded_height(self):
        return self.height + self.padding[0] + self.padding[2]

    @property
    def padded_width(self):
        return self.width + self.padding[1] + self.padding[3]

    @property
    def bit_macs(self):
        """AND+popcount bit operations of the main loop (padding words included)."""
        kh, kw = self.kernel
        return (self.batch * self.out_height * self.out_width * self.out_channels * kh * kw
                * self.words_per_group * self.word_bits * self.a_bits * self.w_planes)

    @property
    def macs(self):
        kh, kw = self.kernel
        return self.batch * self.out_height * self.out_width * self.out_channels * kh * kw * self.channels_per_group

    # ------------------------------------------------------------------ tensor shapes (kernel arguments)
    @property
    def input_shape(self):
        """Float32 input: NCHW (conv2d) / (N, C) (dense)."""
        if self.kind == "dense":
            return (self.batch, self.in_channels)
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def packed_input_shape(self):
        """Packed codes ``(N, Hp, Wp, G, a_bits, words)``; spatially pre-padded."""
        return (self.batch, self.padded_height, self.padded_width, self.groups, self.a_bits, self.words_per_group)

    @property
    def weight_planes_shape(self):
        """Weight planes ``(kh, kw, w_planes, words, O)``: output channels innermost for vector lanes."""
        kh, kw = self.kernel
        return (kh, kw, self.w_planes, self.words_per_group, self.out_channels)

    @property
    def output_shape(self):
        if self.output == "packed":
            t, l, b, r = self.next_padding
            words = _ceil_div(self.out_channels // self.next_groups, self.word_bits)
            return (self.batch, self.out_height + t + b, self.out_width + l + r, self.next_groups, self.next_a_bits, words)
        if self.kind == "dense":
            return (self.batch, self.out_channels)
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    def key(self):
        """A short stable string naming the workload (kernel names, caches, tuning records)."""
        kh, kw = self.kernel
        base = (f"{self.kind}_n{self.batch}_c{self.in_channels}_h{self.height}_w{self.width}_o{self.out_channels}"
                f"_k{kh}x{kw}_s{self.stride[0]}x{self.stride[1]}_p{'-'.join(map(str, self.padding))}"
                f"_d{self.dilation[0]}x{self.dilation[1]}_g{self.groups}_a{self.a_bits}_w{self.w_bits}{self.scheme[0]}"
                f"_{self.word}_{'lo' if self.has_clip_min else ''}{'hi' if self.has_clip_max else ''}")
        if self.a_zero_point:
            base += f"_z{self.a_zero_point}"
        if self.output == "packed":
            base += f"_to_a{self.next_a_bits}_p{'-'.join(map(str, self.next_padding))}_g{self.next_groups}"
            if self.next_a_zero_point:
                base += f"_z{self.next_a_zero_point}"
        if self.residual:
            base += f"_{self.residual}"
        return base

    def to_json(self):
        return asdict(self)


def choose_scheme(w_bits, lut_is_uniform):
    """The cheaper exact scheme: bit planes (w_bits planes) need a uniform LUT; one-hot needs 2^b-1."""
    if lut_is_uniform and w_bits <= (1 << w_bits) - 1:
        return "bitplane"
    return "onehot"

"""Per-layer kernel choice for integer-only layers: popcount bit-serial, VNNI int8 or depthwise.

The cost of one multiply-accumulate, per core:

* popcount bit-serial (``codegen.bitserial_int``): ``a_bits * w_planes`` AND+VPOPCNTQ bit-MACs,
  with ``w_planes = w_bits`` (integer-affine ``lut_int``) or ``2^w_bits - 1`` (one-hot planes);
  ``benchmarks/roofline.py`` measured ``POPCOUNT_BITMACS_PER_S`` = 1160 G bit-MAC/s per Zen 4
  core, and the hand-scheduled kernels reach ~60 % of it with packing included (README results);
* VNNI int8 (``codegen.vnni_int8``): one MAC; ``vpdpbusd`` does 64 u8 x s8 MACs per 512-bit
  instruction at the issue rate of a 16-lane FMA, so its peak is 4x the fp32 FMA peak that
  ``roofline.py`` measured (59 G FMA/s per core), 236 G MAC/s; ``benchmarks/kernels_vnni.py``
  measured the kernel at 77-94 % of that on ResNet-18 3x3 shapes (codes in and out, relayout and
  requant included, 1-thread CPU time; 0.78 is used, the low end).

So bit-serial costs ``a_bits * w_planes / (1160e9 * 0.60)`` s per MAC against VNNI's
``1 / (236e9 * 0.78)``: VNNI wins when ``a_bits * w_planes`` exceeds
``(1160 * 0.60) / (236 * 0.78) = 3.8`` (:data:`CROSSOVER_PLANE_PRODUCTS`). w1a1 (1), w1a2 (2) and
w1a3 (3) stay on popcount; w2a2 (4 bit planes, 6 one-hot) and everything above go to VNNI. The
same benchmark measured VNNI 1.4-1.8x faster than popcount at w2a2 one-hot (6 plane products; the
model predicts 6 / 3.8 = 1.6x) and 29-32x at w4a8 (120). At 4 the two are within noise.
Depthwise layers (``groups == in == out channels``) use :mod:`codegen.depthwise_int` whatever the
bits: neither bit planes nor VNNI's 4-channel reduction fit a fan-in of ``kh * kw``.

Float-contract layers (target ``cpu``) choose the same way between the bit-serial float kernel
and the float-contract int8 kernel (``codegen.vnni_int8``, ``contract="float"``), which takes the
weight *indices* and so needs a uniform LUT (k-quantile LUTs stay on popcount); depthwise layers,
any LUT, run the float-contract depthwise kernel (``codegen.depthwise_int``, ``contract="float"``)
(:func:`choose_float_kernel`).

A recipe's ``kernel`` field pins the choice per layer ("popcount" | "vnni"); "fp32" cannot run
in integer-only mode (the layer would leave the accelerator's partition and the result would no
longer equal the ``fpga`` target's) and is refused naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm_qnn.errors import CompileError

from .bitserial_int import IntegerKernel, integer_kernel_args, integer_scheme, scheduled_integer_primfunc
from .depthwise_int import DepthwiseKernel, depthwise_kernel_args, scheduled_depthwise_primfunc
from .plan import layer_workload
from .vnni_int8 import Int8Kernel, int8_kernel_args, with_avx2_sums
from .vnni_schedule import scheduled_int8_primfunc, target_int8_instructions

KERNELS = ("popcount", "vnni", "fp32")  # values of a recipe layer's "kernel" field

POPCOUNT_BITMACS_PER_S = 1160e9  # roofline.py, AND+VPOPCNTQ+ADD, one Zen 4 core
FP32_FMA_PER_S = 59e9  # roofline.py, 16-lane FMA, one Zen 4 core
VNNI_MACS_PER_FMA = 4  # vpdpbusd: 4 products per 32-bit lane at the FMA issue rate
POPCOUNT_EFFICIENCY = 0.60  # hand-scheduled bit-serial kernels, packing included
VNNI_EFFICIENCY = 0.78  # codegen.vnni_int8 on ResNet-18 3x3 shapes, benchmarks/kernels_vnni.py
# estimate, not measured: 16-lane int32 multiply + add per 16 MACs against 64 MACs per vpdpbusd
PLAIN_INT8_SLOWDOWN = 8
CROSSOVER_PLANE_PRODUCTS = (POPCOUNT_BITMACS_PER_S * POPCOUNT_EFFICIENCY) / (
    FP32_FMA_PER_S * VNNI_MACS_PER_FMA * VNNI_EFFICIENCY)
# AVX2 without VNNI (no VPOPCNTQ either): plane products per MAC at which the vpmaddubsw int8 kernel
# and the popcount kernel are equally fast. Measured on one Zen 3 core (benchmarks/kernels_vnni.py
# --name kernels_vnni_avx2 --configs w1a1,w1a2,w2a2: ResNet-18's stride-1 3x3 shapes, uniform
# weights, geometric means): popcount time / int8 time is 0.41 at 1 plane product (w1a1), 0.73
# at 2 (w1a2) and 2.02 at 4 (w2a2 bit planes); log-interpolated, the two meet at 2.5 (2.2 in an
# earlier run of the same script), so w1a1 and w1a2 stay on popcount and w1a3 / w2a2 go to int8.
AVX2_CROSSOVER_PLANE_PRODUCTS = 2.5


def int8_crossover(instructions):
    """Plane products per MAC above which the int8 kernel built with ``instructions`` beats popcount.

    ``instructions``: "vnni", "avx2" or "plain" (``codegen.vnni_schedule.target_int8_instructions``)."""
    if instructions == "avx2":
        return AVX2_CROSSOVER_PLANE_PRODUCTS
    return CROSSOVER_PLANE_PRODUCTS * (1 if instructions == "vnni" else PLAIN_INT8_SLOWDOWN)


def int8_kind(instructions):
    """The ``layer_kernels`` label of an int8 kernel built with ``instructions``."""
    return "vnni" if instructions == "vnni" else f"int8-{instructions}"


def plane_products(a_bits, w_bits, scheme):
    """Bit-MACs the popcount kernel spends per MAC: ``a_bits`` x its weight planes."""
    w_planes = w_bits if scheme == "bitplane" else (1 << w_bits) - 1
    return a_bits * w_planes


def choose_integer_kernel(layer, lut_int, pin=None, instructions="vnni", out_zero_point=0):
    """``"popcount"``, ``"vnni"`` or ``"depthwise"`` for one integer-only layer (see the module docstring).

    A layer with an activation zero point on its input or its output codes (``out_zero_point``)
    runs the popcount kernel, the only integer kernel that pads with code ``z`` and adds ``z_next``.

    ``instructions``: the int8 kernel's instructions on the target ("vnni", "avx2" or "plain", see
    :func:`int8_crossover`): without AVX-512 VNNI the crossover moves (:data:`AVX2_CROSSOVER_PLANE_PRODUCTS`,
    or :data:`PLAIN_INT8_SLOWDOWN` times the VNNI one for the plain int32 kernel).
    """
    zero_points = bool(getattr(layer, "a_zero_point", 0)) or bool(out_zero_point)
    if pin is not None:
        if pin in ("vnni", "depthwise") and zero_points:
            raise CompileError(f"layer {layer.name!r}: kernel {pin!r} does not take activation zero points yet "
                               f"(input z={getattr(layer, 'a_zero_point', 0)}, output z={out_zero_point}); "
                               f"pin 'popcount' or leave the choice to the cost model")
        if pin == "fp32":
            raise CompileError(f"layer {layer.name!r}: recipe kernel 'fp32' cannot run in integer-only mode "
                               f"(list the layer in fp32_layers instead, or pin 'popcount' or 'vnni')")
        if pin not in KERNELS:
            raise CompileError(f"layer {layer.name!r}: kernel={pin!r}; expected one of {list(KERNELS)}")
        return pin
    if zero_points:
        return "popcount"
    if layer.kind == "conv2d" and layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels:
        return "depthwise"
    products = plane_products(layer.a_bits, layer.w_bits, integer_scheme(lut_int, layer.w_bits))
    return "vnni" if products > int8_crossover(instructions) else "popcount"


def choose_float_kernel(layer, pin=None, instructions="vnni", auto=True):
    """``"popcount"``, ``"vnni"`` or ``"depthwise"`` for one float-contract layer (module docstring).

    ``pin``: the recipe's ``kernel`` field; "vnni" on a k-quantile LUT and "fp32" (the layer belongs
    in ``fp32_layers``) are ``CompileError`` naming the layer. ``auto=False``: unpinned layers stay on
    popcount. ``instructions``: the int8 kernel's instructions on the target (:func:`int8_crossover`).
    """
    uniform = bool(layer.lut_is_uniform)
    if pin is not None:
        if pin == "fp32":
            raise CompileError(f"layer {layer.name!r}: recipe kernel 'fp32' is not a kernel of a quantized layer "
                               f"(list the layer in the recipe's fp32_layers to keep it float)")
        if pin not in KERNELS:
            raise CompileError(f"layer {layer.name!r}: kernel={pin!r}; expected one of {list(KERNELS)}")
        if pin == "vnni" and not uniform:
            raise CompileError(f"layer {layer.name!r}: kernel 'vnni' needs uniform weights in the float contract "
                               f"(the int8 core takes the weight indices); this layer's {layer.w_scheme} LUT runs "
                               f"on 'popcount', or use compile(..., integer_only=True)")
        return pin
    if not auto:
        return "popcount"
    if layer.kind == "conv2d" and layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels:
        return "depthwise"
    if not uniform:
        return "popcount"
    products = plane_products(layer.a_bits, layer.w_bits, "bitplane")
    return "vnni" if products > int8_crossover(instructions) else "popcount"


@dataclass(frozen=True)
class ChosenKernel:
    """A layer's kernel: its kind, the kernel description (with ``key()`` and ``output_dtype``), the
    PrimFunc maker and the numpy arguments after the input."""

    kind: str
    kernel: object
    make_primfunc: object
    args: list

    def key(self):
        return self.kernel.key()


def integer_layer_kernel(layer, params, input_kind, output_kind, target, pin=None, word="uint64"):
    """The kernel of one integer-only layer for ``target`` (a dict or ``tvm.target.Target``).

    ``params``: the layer's integer-only parameters (``vta_ext.compiler`` makes them);
    ``input_kind``/``output_kind``: "float" or "codes". The int8 kernel is built with ``vpdpbusd``
    when the target has AVX-512 VNNI, else with ``vpmaddubsw`` on AVX2, else as the plain int32 kernel.
    """
    instructions = target_int8_instructions(target)
    kind = choose_integer_kernel(layer, params["lut_int"], pin, instructions, params.get("out_zero_point", 0))
    if kind == "popcount":
        wl = layer_workload(layer, word, scheme=integer_scheme(params["lut_int"], layer.w_bits))
        kernel = IntegerKernel(wl, input_kind, output_kind)
        args = integer_kernel_args(layer.name, kernel, layer.weight_idx, params)
        return ChosenKernel(kind, kernel, scheduled_integer_primfunc, args)
    wl = layer_workload(layer, word, scheme="onehot")
    if kind == "depthwise":
        kernel = DepthwiseKernel(wl, input_kind, output_kind)
        args = depthwise_kernel_args(layer.name, kernel, layer.weight_idx, params)
        return ChosenKernel("depthwise", kernel, scheduled_depthwise_primfunc, args)
    kernel = Int8Kernel(wl, input_kind, output_kind, instructions)
    args = int8_kernel_args(layer.name, kernel, layer.weight_idx, params)
    kernel = with_avx2_sums(kernel, args[0])  # same arguments: int16 sums or unsplit codes where exact (AVX2)
    return ChosenKernel(int8_kind(instructions), kernel, scheduled_int8_primfunc, args)

"""Bit-serial CPU kernels (TE/TIR) for quantized conv2d/dense layers.

Entry points (stable; ``codegen.tuning`` and the ``cpu`` lowering build on them)
-----------------------------------------------------------
* ``ConvWorkload`` (``codegen.workload``): frozen dataclass of everything that shapes the code:
  ``kind`` ("conv2d"/"dense"), batch, channels, H, W, kernel, stride, padding (t, l, b, r),
  dilation, groups, ``a_bits``, ``w_bits``, ``scheme`` ("bitplane" = uniform LUT through weight
  bit planes, "onehot" = any LUT through 2^b_w - 1 index planes), ``word`` ("uint64" default),
  ``output`` ("float" NCHW, or "packed": the next layer's packed codes). ``wl.key()`` names it;
  ``wl.bit_macs`` / ``wl.macs`` count work; ``wl.*_shape`` give every argument shape.
* ``layer_workload(layer: QnnLayer, word="uint64", scheme=None, **output) -> ConvWorkload`` and
  ``kernel_args(layer, wl) -> LayerKernelArgs`` (``codegen.plan``): a layer's workload and its
  host-side constants (weights packed once, float64 LUT coefficients).
* ``conv2d_tensors(wl, packed_input=False) -> (args: list[te.Tensor], out: te.Tensor)`` and
  ``make_primfunc(wl, packed_input=False) -> tirx.PrimFunc`` (unscheduled; PrimFunc arguments:
  ``x, act_scale, weight_planes, coef, alpha[, zero_sums], bias, clip_bounds[, next_act_scale], out``;
  ``zero_sums`` only for a workload with an activation zero point ``a_zero_point``; ``act_scale`` is
  ``act_thresholds`` (2^b - 1,) for codes of at most ``bitpack.THRESHOLD_MAX_BITS`` bits, which are
  counted against exact float32 thresholds instead of divided).
  Blocks: ``act_codes``, ``pack`` (activation packing), ``popcount_acc`` (the hot loop:
  ``acc[n, y, x, j, p, o] = sum_{rh, rw, rc} popcount(A & W)``), ``window_total``,
  ``combine`` (float64 sum over planes), ``epilogue`` (bias, clip, float32 NCHW) or
  ``next_codes`` + ``pack_next`` (packed output).
* ``hand_schedule(wl, func) -> tvm.s_tir.Schedule`` (``codegen.schedules``): the default schedule.
* ``build_kernel(wl, target, database=None, packed_input=False) -> tvm.runtime.Executable`` and
  ``scheduled_primfunc(...)`` (``codegen.build``): the MetaSchedule database's record for
  ``workload_module(wl) = IRModule({"main": make_primfunc(wl)})`` when present, else the hand
  schedule. ``cpu_target()`` / ``generic_x86_target()``; ``kernel_asm(executable)``.
* Chained layers: ``layer_workload(a, output="packed", next_a_bits=b.a_bits, next_padding=b.padding,
  next_groups=b.groups)`` emits layer ``b``'s packed codes (extra argument ``next_act_scale``);
  ``make_primfunc(wl_b, packed_input=True)`` reads them (``x`` is then the packed tensor).
* ``codegen.float_schedules.FloatCpuSchedule``: dlight-style default schedule for the float ops
  around the kernels (target ``cpu``).

Integer-only layers (DESIGN's integer-only mode) have three kernels, chosen per layer by
``codegen.kernel_choice.integer_layer_kernel`` (cost model from the roofline peaks, or the
recipe's ``kernel`` pin): popcount bit-serial (``codegen.bitserial_int``), int8 VNNI
(``codegen.vnni_int8`` + ``codegen.vnni_schedule``: u8 codes x gathered s8 weights with TVM's
``dot_16x4`` tensor intrinsic, a plain int32 kernel on targets without AVX-512 VNNI) and a direct
depthwise kernel (``codegen.depthwise_int``). In the float contract, depthwise convolution runs
through the grouped bit-serial kernel (one word per group: exact but not fast).
"""

from .bitserial_conv2d import conv2d_tensors, make_primfunc
from .bitserial_dense import dense_workload
from .plan import LayerKernelArgs, kernel_args, layer_workload
from .workload import ConvWorkload, choose_scheme

__all__ = ["ConvWorkload", "LayerKernelArgs", "choose_scheme", "conv2d_tensors", "dense_workload",
           "kernel_args", "layer_workload", "make_primfunc"]

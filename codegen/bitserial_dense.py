"""Bit-serial dense layer: a 1x1 convolution on a 1x1 image (same kernel, same algebra).

``kind="dense"`` only changes the input (``(N, C)`` float32) and output (``(N, O)``) layouts
of :func:`codegen.bitserial_conv2d.conv2d_tensors`; weight indices ``(O, C)`` are packed as
``(1, 1, planes, words, O)``. Keeping one kernel means one hand schedule and one tuning space.
"""

from __future__ import annotations

from tvm_qnn.errors import ShapeError

from .bitserial_conv2d import conv2d_tensors, make_primfunc
from .workload import ConvWorkload


def dense_workload(batch, in_features, out_features, a_bits, w_bits, scheme="bitplane", word="uint64"):
    """The ``ConvWorkload`` of a bit-serial dense layer."""
    if min(batch, in_features, out_features) <= 0:
        raise ShapeError(f"dense {batch}x{in_features}->{out_features}: sizes must be positive")
    return ConvWorkload(kind="dense", batch=batch, in_channels=in_features, height=1, width=1,
                        out_channels=out_features, a_bits=a_bits, w_bits=w_bits, scheme=scheme, word=word)


def dense_tensors(wl: ConvWorkload):
    """TE arguments and output of a dense workload (see ``conv2d_tensors``)."""
    if wl.kind != "dense":
        raise ShapeError(f"dense_tensors needs a dense workload, got kind={wl.kind!r}")
    return conv2d_tensors(wl)


def make_dense_primfunc(wl: ConvWorkload):
    """Unscheduled PrimFunc of a dense workload."""
    dense_tensors(wl)  # validates the kind
    return make_primfunc(wl)

"""VTA-style accelerator for quantized layers: config, ISA, compiler, simulator, resource model.

Import the pieces from their modules (``vta_ext.config``, ``vta_ext.isa``, ``vta_ext.compiler``,
``vta_ext.sim``, ``vta_ext.resources``); ``HwConfig`` is re-exported here. Nothing here imports
TVM: the Relax side lives in ``relay_passes.partition_fpga`` and ``tvm_qnn.targets.fpga``.
"""

from .config import HwConfig, ResourceCoefficients

__all__ = ["HwConfig", "ResourceCoefficients"]

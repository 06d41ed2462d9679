"""Model-zoo tests: torchvision is imported once, through ``tvm_qnn.conformance.import_torchvision``.

That helper holds the one workaround for this environment's torchvision (a CUDA wheel whose
``_C.so`` cannot load beside torch+cpu, so its meta registrations of ``torchvision::nms`` fail
on import): it defines the ``nms``/``qnms`` op schemas before importing.
"""

import pytest

from tvm_qnn.conformance import import_torchvision


@pytest.fixture(scope="session")
def torchvision():
    return import_torchvision()

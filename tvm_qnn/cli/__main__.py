"""``python -m tvm_qnn.cli``: the ``tvm-qnn`` command (same as ``python -m tvm_qnn``)."""

import sys

from tvm_qnn.cli import main

sys.exit(main())

"""``python -m tvm_qnn`` is the ``tvm-qnn`` command."""

import sys

from tvm_qnn.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m tvm_qnn.demo`` runs the demo (``tvm_qnn.demo.main``)."""

import sys

from tvm_qnn.demo import main

sys.exit(main())

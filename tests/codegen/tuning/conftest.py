"""Tuning tests reuse the kernel tests' layer/composite builders (tests/codegen)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

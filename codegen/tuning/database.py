"""The tuning work directory: MetaSchedule JSON databases that survive an interrupted tune.

Layout of ``work_dir``:

* ``database_workload.json`` / ``database_tuning_record.json``: the *verified* records, one best
  schedule per workload, each checked numerically before it was committed. This is what
  ``tvm_qnn.compile(..., tuning=work_dir)`` reads (``open_database``) and what the lowering
  queries per kernel (``codegen.build.scheduled_primfunc``: ``database.query_schedule`` with
  fallback to the hand schedule).
* ``trials/``: MetaSchedule's own work dir (every measured candidate, logs).

MetaSchedule appends one JSON line per record, so a killed tune leaves at most one truncated
last line; ``open_database`` drops such a line (with a warning) instead of failing to load.
"""

from __future__ import annotations

import json
import os
import warnings

from tvm_qnn.errors import TuningError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
TRIALS_DIR = "trials"


def _drop_truncated_tail(path: str) -> None:
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    kept = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as err:
            if number < len(lines) - 2:  # only the last written line may be cut short
                raise TuningError(f"tuning database {path!r}: line {number + 1} is not JSON ({err})") from err
            warnings.warn(f"tuning database {path!r}: dropped a truncated last line (interrupted tune)", stacklevel=3)
            continue
        kept.append(line)
    with open(path, "wb") as f:
        f.write(b"".join(line + b"\n" for line in kept))


def open_database(work_dir, create: bool = False):
    """The verified-records ``JSONDatabase`` of ``work_dir`` (``create`` makes an empty one)."""
    from tvm.s_tir.meta_schedule.database import JSONDatabase  # noqa: PLC0415

    work_dir = os.fspath(work_dir)
    if create:
        os.makedirs(work_dir, exist_ok=True)
    elif not os.path.exists(os.path.join(work_dir, WORKLOAD_FILE)):
        raise TuningError(f"tuning work dir {work_dir!r} has no {WORKLOAD_FILE}; run tvm_qnn.tune(..., work_dir=...) first")
    return _open(work_dir, allow_missing=create)


def open_trials_database(work_dir):
    """The database of every measured candidate (``work_dir/trials``)."""
    path = os.path.join(os.fspath(work_dir), TRIALS_DIR)
    os.makedirs(path, exist_ok=True)
    return _open(path, allow_missing=True)


def _open(path, allow_missing):
    from tvm.s_tir.meta_schedule.database import JSONDatabase  # noqa: PLC0415

    for name in (WORKLOAD_FILE, RECORD_FILE):
        _drop_truncated_tail(os.path.join(path, name))
    try:
        return JSONDatabase(work_dir=path, allow_missing=allow_missing)
    except Exception as err:  # noqa: BLE001 - a TVM parse error becomes a TuningError naming the file
        raise TuningError(f"tuning database in {path!r} could not be read: {err}") from err


def best_schedule(database, mod, target):
    """The database's best schedule of ``mod`` (a ``tvm.s_tir.Schedule``) or None."""
    return database.query_schedule(mod, target=target, workload_name="main")

"""Run an exported model on a board: connect, check versions, upload with checksums, run, time.

Every step runs under one watchdog (``timeout_s``) and every failure becomes a ``RemoteError``
naming the board (host:port) and the tracker key, so a dead board never hangs a client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

from tvm_qnn.errors import RemoteError
from tvm_qnn.rpc import check_reachable, parse_address, run_with_watchdog
from tvm_qnn.rpc.board import BOARD_INFO, BOARD_PREPARE, BOARD_SHA256, board_info, hw_config_sha256
from tvm_qnn.rpc import export as export_files


@dataclasses.dataclass(frozen=True)
class RemoteResult:
    """Outputs computed on the board and its ``time_evaluator`` timing of the whole model."""

    outputs: tuple  # numpy arrays, in the model's output order
    mean_ms: float
    std_ms: float
    results_ms: tuple
    board: str  # "host:port"
    key: str | None

    @property
    def output(self) -> np.ndarray:
        """The single output (the common case)."""
        return self.outputs[0]

    def as_dict(self) -> dict:
        return {"board": self.board, "key": self.key, "mean_ms": self.mean_ms,
                "std_ms": self.std_ms, "results_ms": list(self.results_ms),
                "output_shapes": [list(out.shape) for out in self.outputs]}


@dataclasses.dataclass
class BoardSession:
    """An open RPC session plus where it goes (for error messages)."""

    session: object
    board: str
    key: str | None

    def close(self) -> None:
        """Drop our reference; TVM closes the session (and the board ends its session
        process) when the last reference to it goes."""
        self.session = None

    def where(self) -> str:
        key = f" key {self.key!r}" if self.key else ""
        return f"board {self.board}{key}"


# --------------------------------------------------------------------------- connecting
def _tracker_request(host: str, port: int, key: str, timeout_s: float) -> tuple[str, int, str]:
    """Ask the tracker for a board of ``key``: (board host, board port, match key).

    Done by hand (TVM's wire format, ``tvm.rpc.base``) rather than ``TrackerSession.request`` so
    that we learn *which* board we got — error messages must name it — and so the socket has a
    timeout: the tracker queues a request until a board is free, possibly forever.
    """
    from tvm.rpc import base

    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", base.recvall(sock, 4))[0]
        if magic != base.RPC_TRACKER_MAGIC:
            raise RemoteError(f"{host}:{port} is not a TVM RPC tracker")
        base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", 1])
        try:
            reply = base.recvjson(sock)
        except socket.timeout:
            raise RemoteError(f"tracker {host}:{port}: no board with key {key!r} became free "
                              f"within {timeout_s:g} s") from None
    if reply[0] != base.TrackerCode.SUCCESS:
        raise RemoteError(f"tracker {host}:{port} refused the request for key {key!r}: {reply}")
    board_host, board_port, match_key = reply[1]
    return str(board_host), int(board_port), str(match_key)


def board_keys(summary: dict) -> dict:
    """Key -> number of boards registered, from a tracker summary."""
    counts: dict = {}
    for entry in summary.get("server_info", []):
        server_key = str(entry.get("key", ""))
        if server_key.startswith("server:"):
            key = server_key[len("server:"):]
            counts[key] = counts.get(key, 0) + 1
    return counts


def connect(session_or_address, key: str | None = None, timeout_s: float = 60.0,
            session_timeout_s: float | None = None) -> BoardSession:
    """Open a session: an existing ``RPCSession``, a tracker ``HOST:PORT`` plus ``key``, or a
    board's own ``HOST:PORT`` (no key, the board not registered at a tracker)."""
    from tvm import rpc

    if isinstance(session_or_address, BoardSession):
        return session_or_address
    if isinstance(session_or_address, rpc.RPCSession):
        return BoardSession(session_or_address, "session", key)
    host, port = parse_address(session_or_address, "tracker" if key else "board")
    session_timeout = session_timeout_s or timeout_s
    if key is None:
        check_reachable(host, port, "board")
        return BoardSession(run_with_watchdog(
            lambda: rpc.connect(host, port, session_timeout=session_timeout), timeout_s,
            f"board {host}:{port}"), f"{host}:{port}", None)

    from tvm_qnn.rpc import tracker_summary

    try:
        keys = board_keys(tracker_summary((host, port), timeout_s))
    except RemoteError as err:
        raise RemoteError(f"{err} (asked for a board with key {key!r})") from None
    if key not in keys:
        known = ", ".join(sorted(keys)) or "none"
        raise RemoteError(f"tracker {host}:{port} has no board with key {key!r} "
                          f"(keys with boards: {known})")
    last_error = None
    deadline = time.monotonic() + timeout_s
    for _attempt in range(3):  # a board may die between the tracker's answer and our connect
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        board_host, board_port, match_key = _tracker_request(host, port, key, remaining)
        where = f"board {board_host}:{board_port} key {key!r}"
        try:
            session = run_with_watchdog(
                lambda: rpc.connect(board_host, board_port, match_key,
                                    session_timeout=session_timeout),
                max(1.0, deadline - time.monotonic()), where)
            return BoardSession(session, f"{board_host}:{board_port}", key)
        except RemoteError as err:
            last_error = err
    raise RemoteError(f"tracker {host}:{port} key {key!r}: could not open a session "
                      f"({last_error or 'timed out'})")


# --------------------------------------------------------------------------- running
def remote(model_or_export_dir, session_or_tracker, key: str | None = None, inputs=None,
           timeout_s: float = 120.0, number: int = 10, repeat: int = 3,
           min_repeat_ms: int = 0, check_finite: bool = True) -> RemoteResult:
    """Upload an export to a board, run it on ``inputs`` and time it there.

    ``model_or_export_dir``: a ``CompiledModel`` (exported to a temporary directory first) or an
    export directory. ``session_or_tracker``: see ``connect``. ``inputs``: one array or a list
    (numpy or torch). Raises ``RemoteError`` (naming board and key) on any failure, within
    ``timeout_s`` seconds, and ``ExportError`` if the local export itself is corrupt. Inputs holding
    NaN/inf are refused before any upload (QuantizationError) unless ``check_finite=False``.
    """
    from tvm_qnn import checks

    timeout_s = checks.positive_float(timeout_s, "remote: timeout_s")
    number = checks.positive_int(number, "remote: number")
    repeat = checks.positive_int(repeat, "remote: repeat")
    min_repeat_ms = checks.non_negative_int(min_repeat_ms, "remote: min_repeat_ms")
    with tempfile.TemporaryDirectory(prefix="tvm-qnn-upload-") as scratch:
        export = export_files.open_export(model_or_export_dir, Path(scratch))
        export.verify_local()  # before any network: a locally corrupt export is not a board fault
        arrays = export_files.as_arrays(inputs, export)
        if check_finite:
            for index, array in enumerate(arrays):
                checks.check_finite_input(array, f"remote: input {index}")
        deadline = time.monotonic() + timeout_s
        board = connect(session_or_tracker, key, timeout_s, session_timeout_s=timeout_s)
        remaining = max(1.0, deadline - time.monotonic())
        try:
            return run_with_watchdog(
                lambda: _run_on_board(board, export, arrays, number, repeat, min_repeat_ms),
                remaining, board.where())
        finally:
            if board is not session_or_tracker:  # a BoardSession passed in stays the caller's
                board.close()


def _run_on_board(board: BoardSession, export, arrays, number, repeat, min_repeat_ms):
    import tvm
    from tvm import relax

    session = board.session
    _check_versions(board, export)
    for name, path in export.upload_files():
        session.upload(bytearray(read_for_upload(path)), target=name)
    remote_sha256 = session.get_function(BOARD_SHA256)
    for name, expected in export.checksums().items():
        got = remote_sha256(name)
        if got != expected:
            raise RemoteError(f"{board.where()}: upload of {name} is corrupt "
                              f"(sha256 {got[:12]}… on the board, manifest says {expected[:12]}…)")
    session.get_function(BOARD_PREPARE)(json.dumps(export.manifest))
    device = session.cpu()
    library = session.load_module(export.library_name)
    machine = relax.VirtualMachine(library, device)
    tensors = [tvm.runtime.tensor(array, device) for array in arrays]
    outputs = _to_numpy(machine[export.entry](*tensors))
    machine.set_input(export.entry, *tensors)
    timing = machine.time_evaluator("invoke_stateful", device, number=number, repeat=repeat,
                                    min_repeat_ms=min_repeat_ms)(export.entry)
    results_ms = tuple(float(t) * 1e3 for t in timing.results)
    return RemoteResult(outputs=tuple(outputs), mean_ms=float(timing.mean) * 1e3,
                        std_ms=float(np.std(results_ms)), results_ms=results_ms,
                        board=board.board, key=board.key)


def read_for_upload(path: Path) -> bytes:
    """The bytes sent for one export file (a seam for the corrupt-upload test)."""
    return Path(path).read_bytes()


def _to_numpy(value) -> list:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [array for item in value for array in _to_numpy(item)]


def _check_versions(board: BoardSession, export) -> None:
    """Refuse before uploading: client vs board software, export vs board, fpga vs cpu board."""
    try:
        info_fn = board.session.get_function(BOARD_INFO)
    except Exception as err:  # TVM: "function not found" on a plain rpc_server
        raise RemoteError(f"{board.where()} is not a tvm-qnn board (no {BOARD_INFO}; start it "
                          f"with `tvm-qnn serve`)") from err
    remote_info = json.loads(info_fn())
    local_info = board_info(None)
    for field in ("tvm_qnn", "tvm"):
        if remote_info[field] != local_info[field]:
            raise RemoteError(f"{board.where()}: version mismatch, client has {field} "
                              f"{local_info[field]}, board has {remote_info[field]}")
    for field, built_with in export.versions().items():
        if built_with is not None and built_with != remote_info.get(field):
            raise RemoteError(f"{board.where()}: export was built with {field} {built_with}, "
                              f"board runs {remote_info.get(field)}; recompile or update")
    if not export.needs_fpga():
        return
    board_fpga = remote_info.get("fpga")
    if not board_fpga:
        raise RemoteError(f"{board.where()}: export targets the fpga but the board has no "
                          f"accelerator runtime (start it with `tvm-qnn serve --fpga CONFIG`)")
    built_for = export.hw_config()
    if built_for is not None and hw_config_sha256(built_for) != board_fpga["sha256"]:
        raise RemoteError(f"{board.where()}: export was compiled for accelerator config "
                          f"{built_for.get('name', '?')!r}, the board has {board_fpga['name']!r} "
                          f"(a different core); recompile for the board's config")


# --------------------------------------------------------------------------- demo step
def demo_remote_run(export_dirs, inputs=None, timeout_s: float = 180.0, log_dir=None,
                    progress: bool = True, tracker=None, rtl_simulator=None):
    """The demo's deployment step: start a tracker and one localhost board per kind of export
    (a ``cpu`` board; an ``fpga`` board with the export's accelerator config), run every export
    locally and over RPC, compare bit for bit, stop everything.

    ``export_dirs``: one export directory or a list. ``inputs``: one array (or list) used for
    every export; None -> a seeded random input of each export's shape. ``tracker``: use the
    boards (keys ``cpu`` / ``fpga``) of a running tracker instead of starting a localhost cluster.
    ``rtl_simulator`` (``"iverilog"`` or ``"verilator"``): the fpga board serves its core's RTL
    (``serve --rtl``) and each export runs once there (every run costs simulated clocks).
    Returns one summary dict
    per export (a dict for a single directory, else a list); raises RemoteError naming the board
    and key when a remote output differs from the local one.
    """
    from tvm_qnn.rpc import local_cluster

    single = not isinstance(export_dirs, (list, tuple))
    dirs = [export_dirs] if single else list(export_dirs)
    plans = []  # (export dir, key, board's fpga config, inputs, local outputs)
    for directory in dirs:
        export = export_files.open_export(directory, None)
        arrays = export_files.as_arrays(inputs, export)
        key = "fpga" if export.needs_fpga() else "cpu"
        fpga_config = export.fpga_config_name() if key == "fpga" else None
        plans.append((directory, key, fpga_config, arrays, export.run_locally(arrays)))
    boards = list(dict.fromkeys((key, config) for _, key, config, _, _ in plans))
    if len({key for key, _ in boards}) != len(boards):
        raise RemoteError("demo_remote_run: the fpga exports were built for different "
                          "accelerator configs; run them one at a time")
    started = time.monotonic()
    summaries = []
    cluster = (contextlib.nullcontext(None) if tracker is not None
               else local_cluster(boards, log_dir=log_dir, rtl_simulator=rtl_simulator))
    runs = {} if rtl_simulator is None else {"number": 1, "repeat": 1}
    with cluster as started_cluster:
        address = tracker if started_cluster is None else started_cluster.tracker_address
        for directory, key, _, arrays, local_outputs in plans:
            result = remote(directory, address, key, inputs=arrays, timeout_s=timeout_s, **runs)
            identical = len(local_outputs) == len(result.outputs) and all(
                a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
                for a, b in zip(local_outputs, result.outputs, strict=False))
            if not identical:
                raise RemoteError(f"board {result.board} key {key!r}: remote output differs from "
                                  f"the local run of {directory}")
            summary = result.as_dict()
            summary.update(export=str(directory), identical=True)
            summaries.append(summary)
            if progress:
                print(f"{key:4s} export {directory}: on board {result.board} {result.mean_ms:.3f} "
                      f"ms ± {result.std_ms:.3f}; remote output bit-identical to the local run")
    for summary in summaries:
        summary["wall_s"] = time.monotonic() - started  # tracker + boards + all runs
    return summaries[0] if single else summaries


__all__ = ["BoardSession", "RemoteResult", "board_keys", "connect", "demo_remote_run",
           "read_for_upload", "remote"]

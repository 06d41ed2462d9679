"""Deployment over TVM's own RPC: trackers, boards, and running an export on a board.

The servers are TVM's (``python -m tvm.exec.rpc_tracker`` and ``tvm.rpc.Server``); a *board* is
an RPC server started by ``tvm-qnn serve`` that additionally registers, in the server process,
the small ``tvm_qnn.board.*`` functions used for the version check and the upload checksum
(and, with an FPGA config, the accelerator runtime) — see ``tvm_qnn.rpc.board``.

Everything here is bounded: every wait has a timeout, every remote call runs under a watchdog,
and every process we start is stopped by PID together with its children (psutil).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from tvm_qnn.errors import RemoteError

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- addresses
def parse_address(address, what: str = "address") -> tuple[str, int]:
    """``"host:port"`` or ``(host, port)`` -> ``(host, port)``; anything else is a RemoteError."""
    if isinstance(address, (tuple, list)) and len(address) == 2:
        host, port = address
    elif isinstance(address, str) and ":" in address:
        host, port = address.rsplit(":", 1)
    else:
        raise RemoteError(f"{what} {address!r} is not HOST:PORT")
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise RemoteError(f"{what} {address!r}: port {port!r} is not an integer") from None
    if not 0 < port < 65536 or not host:
        raise RemoteError(f"{what} {address!r}: expected HOST:PORT with port in 1..65535")
    return str(host), port


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS considers free right now (the caller retries if someone takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_reachable(host: str, port: int, what: str, timeout_s: float = 5.0) -> None:
    """Fail fast with one clear line instead of TVM's 60 s connect-retry loop."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise RemoteError(f"{what} {host}:{port} is unreachable: {err.strerror or err}") from None


# --------------------------------------------------------------------------- processes
@dataclasses.dataclass
class ServiceProcess:
    """A tracker or board we started; ``stop()`` ends it and every child by PID."""

    role: str  # "tracker" | "board"
    host: str
    port: int
    popen: subprocess.Popen
    key: str | None = None
    log_path: Path | None = None
    seen_pids: set = dataclasses.field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def descendants(self) -> list:
        import psutil

        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen_pids.update(child.pid for child in children)
        return children

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_process_tree(self.pid, timeout_s)
        self.seen_pids.add(self.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout_s)

    def describe(self) -> str:
        key = f" key {self.key}" if self.key else ""
        return f"{self.role} {self.address}{key} (pid {self.pid})"


def stop_process_tree(pid: int, timeout_s: float = 10.0) -> list[int]:
    """Terminate ``pid`` and all its descendants (collected before anyone dies), then kill."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    procs = [root]
    with contextlib.suppress(psutil.NoSuchProcess):
        procs += root.children(recursive=True)
    for proc in reversed(procs):  # children first, so none is re-parented mid-way
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout_s)
    return [proc.pid for proc in procs]


def _spawn(argv: list[str], log_path: Path | None) -> subprocess.Popen:
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        if log_path:
            log.close()


def _wait_until(predicate, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RemoteError(f"{what} exited with code {proc.returncode} while starting")
        if predicate():
            return
        time.sleep(0.1)
    raise RemoteError(f"{what} did not become ready within {timeout_s:.0f} s")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_tracker(host: str = LOOPBACK, port: int | None = None, timeout_s: float = 120.0,
                  log_path: Path | None = None) -> ServiceProcess:
    """Start ``python -m tvm.exec.rpc_tracker`` on ``host:port`` (a free port if None).

    ``timeout_s`` is generous: importing TVM alone takes 10-30 s on a loaded 2-core machine.
    """
    last_error = None
    for _attempt in range(3):  # a free port can be taken between probing and binding
        chosen = port or free_port(host)
        argv = [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", host,
                "--port", str(chosen), "--port-end", str(chosen + 1), "--silent"]
        service = ServiceProcess("tracker", host, chosen, _spawn(argv, log_path), log_path=log_path)
        try:
            _wait_until(lambda: _port_open(host, chosen), timeout_s, service.describe(), service.popen)
            return service
        except RemoteError as err:
            service.stop()
            last_error = err
            if port is not None or "did not become ready" in str(err):
                raise
    raise RemoteError(f"could not start an RPC tracker on {host} after 3 attempts ({last_error})")


def start_board(tracker, key: str, host: str = LOOPBACK, port: int | None = None,
                fpga_config: str | None = None, timeout_s: float = 180.0,
                log_path: Path | None = None, wait: bool = True, rtl: bool = False,
                rtl_simulator: str = "iverilog") -> ServiceProcess:
    """Start a board (``python -m tvm_qnn serve``) registered at ``tracker`` under ``key``.

    With ``wait`` it returns once the tracker lists the board, so a following request for
    ``key`` can reach it; otherwise call ``wait_for_board`` (lets several boards start at once).
    """
    tracker_host, tracker_port = parse_address(tracker, "tracker")
    chosen = port or free_port(host)
    argv = [sys.executable, "-m", "tvm_qnn", "serve", "--host", host, "--port", str(chosen),
            "--tracker", f"{tracker_host}:{tracker_port}", "--key", key]
    if fpga_config is not None:
        argv += ["--fpga", str(fpga_config)]
    if rtl:  # accelerator layers on the whole core's RTL (serve --rtl)
        argv += ["--rtl", "--rtl-simulator", rtl_simulator]
    service = ServiceProcess("board", host, chosen, _spawn(argv, log_path), key=key,
                             log_path=log_path)
    if wait:
        wait_for_board(service, tracker, timeout_s)
    return service


def wait_for_board(service: ServiceProcess, tracker, timeout_s: float = 180.0) -> None:
    """Block until the tracker lists ``service``; stop it and raise RemoteError otherwise."""
    tracker_host, tracker_port = parse_address(tracker, "tracker")
    try:
        _wait_until(lambda: _tracker_lists(tracker_host, tracker_port, service.port),
                    timeout_s, service.describe(), service.popen)
    except RemoteError as err:
        service.stop()
        log = f"; log: {service.log_path}" if service.log_path else ""
        raise RemoteError(f"{err}{log}") from None
    service.descendants()  # remember TVM's server worker, which really serves


def tracker_summary(tracker, timeout_s: float = 10.0) -> dict:
    """The tracker's own summary (server list and per-key queue), fetched under a watchdog."""
    host, port = parse_address(tracker, "tracker")
    check_reachable(host, port, "tracker", timeout_s)

    def query():
        from tvm import rpc

        session = rpc.connect_tracker(host, port)
        try:
            return session.summary()
        finally:
            session.close()

    return run_with_watchdog(query, timeout_s, f"tracker {host}:{port}")


def _tracker_lists(host: str, port: int, board_port: int) -> bool:
    try:
        summary = tracker_summary((host, port), timeout_s=5.0)
    except RemoteError:
        return False
    return any(int(entry["addr"][1]) == board_port for entry in summary.get("server_info", []))


@dataclasses.dataclass
class LocalCluster:
    """A tracker plus boards on 127.0.0.1 (tests, tutorials, the demo)."""

    tracker: ServiceProcess
    boards: list[ServiceProcess]

    @property
    def tracker_address(self) -> str:
        return self.tracker.address

    def boards_for(self, key: str) -> list[ServiceProcess]:
        return [board for board in self.boards if board.key == key]

    def all_pids(self) -> set[int]:
        pids = set()
        for service in [self.tracker, *self.boards]:
            service.descendants()
            pids |= service.seen_pids | {service.pid}
        return pids

    def stop(self) -> None:
        for service in [*self.boards, self.tracker]:
            service.stop()


@contextlib.contextmanager
def local_cluster(boards: Sequence[tuple[str, str | None]] = (("cpu", None),),
                  log_dir: Path | None = None, rtl_simulator: str | None = None) -> Iterator[LocalCluster]:
    """Start a tracker and one board per ``(key, fpga_config)``; stop them all on exit. With
    ``rtl_simulator`` the boards with an fpga config serve its RTL core (``serve --rtl``) in that simulator."""
    tracker = start_tracker(log_path=_log(log_dir, "tracker"))
    cluster = LocalCluster(tracker, [])
    try:
        for index, (key, fpga_config) in enumerate(boards):  # start all, then wait for all
            rtl = fpga_config is not None and rtl_simulator is not None
            cluster.boards.append(start_board(tracker.address, key, fpga_config=fpga_config,
                                              log_path=_log(log_dir, f"board{index}-{key}"),
                                              wait=False, rtl=rtl, rtl_simulator=rtl_simulator or "iverilog"))
        for board in cluster.boards:
            wait_for_board(board, tracker.address)
        yield cluster
    finally:
        cluster.stop()


def _log(log_dir: Path | None, name: str) -> Path | None:
    if log_dir is None:
        return None
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return Path(log_dir) / f"{name}.log"


# --------------------------------------------------------------------------- watchdog
def run_with_watchdog(fn, timeout_s: float, where: str):
    """Run ``fn()`` in a daemon thread; a RemoteError naming ``where`` if it fails or outlives
    ``timeout_s``. A blocked socket read inside TVM cannot be interrupted, so on timeout the
    thread is abandoned (daemon) and the server side ends the session by its own timeout."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised below as RemoteError
            # the traceback's frames hold the RPC session (and remote tensors): clear them so the
            # session closes now, not whenever the exception is collected
            traceback.clear_frames(err.__traceback__)
            outcome["error"] = err

    worker = threading.Thread(target=target, name=f"tvm-qnn-rpc {where}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise RemoteError(f"{where}: no answer within {timeout_s:g} s (board dead or hung?)")
    if "error" in outcome:
        err = outcome["error"]
        if isinstance(err, RemoteError):
            raise err
        raise RemoteError(f"{where}: {_one_line(err)}") from err
    return outcome["value"]


# TVM's wording of a dropped connection -> what it means for the user
_CONNECTION_LOST = ("kShutdown", "Connection reset", "connection closed", "Broken pipe",
                    "RPCSessionTimeoutError", "socket closed")


def _one_line(err: BaseException) -> str:
    text = str(err)
    for marker in _CONNECTION_LOST:
        if marker.lower() in text.lower():
            return f"connection lost mid-call (board died, was stopped or timed out) [{marker}]"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # TVM errors end with the useful line; tracebacks from the server come first
    return (lines[-1] if lines else type(err).__name__)[:300]


# remote execution lives in its own module; re-exported here as the public entry points
from tvm_qnn.rpc.client import RemoteResult, connect, demo_remote_run, remote  # noqa: E402
from tvm_qnn.rpc.board import serve  # noqa: E402

__all__ = [
    "LOOPBACK",
    "LocalCluster",
    "RemoteResult",
    "ServiceProcess",
    "check_reachable",
    "connect",
    "demo_remote_run",
    "free_port",
    "local_cluster",
    "parse_address",
    "remote",
    "run_with_watchdog",
    "serve",
    "start_board",
    "start_tracker",
    "stop_process_tree",
    "tracker_summary",
    "wait_for_board",
]

"""The board side: TVM's RPC server plus the functions a tvm-qnn client needs on it.

``serve`` runs TVM's own RPC server loop after registering, in the server process,

* ``tvm_qnn.board.info()`` -> JSON: the board's tvm-qnn and TVM versions and its accelerator
  config (name + hash) if any — the client refuses an export the board cannot run;
* ``tvm_qnn.board.sha256(name)`` -> hex digest of an uploaded file, so the client can prove the
  bytes that arrived are the bytes the manifest lists (a corrupt upload is detected);
* ``tvm_qnn.board.prepare(manifest)`` -> lets the export's lowering register its runtime side
  from the uploaded ``runtime/`` files (the FPGA segments' packed functions), as ``load`` does;
* with an FPGA config, the accelerator runtime is imported up front (the functional simulator,
  or with ``rtl`` the whole core's RTL via ``vta_ext.backend``, behind the same packed
  functions), so ``fpga`` modules run remotely.

Every session is a process forked from the server process, so it inherits these registrations.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys

from tvm_qnn.errors import QnnError, RemoteError

BOARD_INFO = "tvm_qnn.board.info"
BOARD_SHA256 = "tvm_qnn.board.sha256"
BOARD_PREPARE = "tvm_qnn.board.prepare"
RUNTIME_DIR = "runtime/"  # tvm_qnn.compiler.RUNTIME_DIR: files a lowering's runtime side reads


def upload_name(name: str) -> str:
    """An export file's name in a session's (flat) upload directory."""
    return str(name).replace("/", "__")


def hw_config_sha256(config_dict: dict) -> str:
    """Identity of a core: every hardware field, not the resource-model coefficients (those
    describe our estimate of the core, and change when the model is re-fitted)."""
    hardware = {k: v for k, v in config_dict.items() if k != "resources"}
    return hashlib.sha256(json.dumps(hardware, sort_keys=True).encode()).hexdigest()


def board_info(fpga_config: str | None) -> dict:
    """What this process can run; the same dict is computed on the client for comparison."""
    import tvm

    import tvm_qnn

    info = {"tvm_qnn": tvm_qnn.__version__, "tvm": tvm.__version__, "fpga": None}
    if fpga_config is not None:
        info["fpga"] = _fpga_identity(fpga_config)
    return info


def _fpga_identity(fpga_config: str) -> dict:
    """Name and content hash of the board's hardware config (exports are built for one)."""
    config = load_hw_config(fpga_config)
    return {"name": str(getattr(config, "name", fpga_config)),
            "sha256": hw_config_sha256(config.to_dict())}


def load_hw_config(fpga_config):
    """An ``HwConfig`` from a preset name (``pynq_z1``), a JSON path, or an HwConfig."""
    try:
        from vta_ext.config import HwConfig
    except ImportError as err:
        raise RemoteError(f"--fpga {fpga_config}: the accelerator package vta_ext is "
                          f"not importable ({err})") from err
    if isinstance(fpga_config, HwConfig):
        return fpga_config
    text = str(fpga_config)
    if text.endswith(".json") or "/" in text or text.lstrip().startswith("{"):
        return HwConfig.from_json(text)
    return HwConfig.preset(text)


def register_fpga_runtime(fpga_config) -> None:
    """Load the accelerator runtime into this process (sessions fork from it, so they start
    with it loaded); each export's segments are registered by ``prepare_export``."""
    load_hw_config(fpga_config)
    try:
        import tvm_qnn.targets.fpga  # noqa: F401 - registers the fpga target and its runtime
    except ImportError as err:
        raise RemoteError(f"--fpga: the fpga runtime (tvm_qnn.targets.fpga) is missing ({err})") from err


def prepare_export(manifest: dict, read_upload) -> None:
    """In a session: let the export's lowering register its runtime side (the FPGA segments'
    packed functions) from the uploaded ``runtime/`` files, as ``tvm_qnn.load`` does locally."""
    from tvm_qnn.targets import Artifact, get_target

    runtime_files = {name[len(RUNTIME_DIR):]: read_upload(upload_name(name))
                     for name in manifest.get("files", {}) if name.startswith(RUNTIME_DIR)}
    artifact = Artifact(None, manifest.get("target_dict") or {}, runtime_files,
                        manifest.get("target_info") or {})
    get_target(manifest["target"]).prepare_runtime(artifact)


def _register_board_functions(fpga_config: str | None) -> None:
    """Server init callback: runs once in TVM's server process before it accepts sessions."""
    import tvm_ffi

    info_json = json.dumps(board_info(fpga_config))
    if fpga_config is not None:
        register_fpga_runtime(fpga_config)

    @tvm_ffi.register_global_func(BOARD_INFO, override=True)
    def _info():
        return info_json

    def read_upload(name):
        # each session has a private upload directory; TVM's server resolves names in it
        workpath = tvm_ffi.get_global_func("tvm.rpc.server.workpath")
        with open(workpath(name), "rb") as uploaded:
            return uploaded.read()

    @tvm_ffi.register_global_func(BOARD_SHA256, override=True)
    def _sha256(name):
        return hashlib.sha256(read_upload(name)).hexdigest()

    @tvm_ffi.register_global_func(BOARD_PREPARE, override=True)
    def _prepare(manifest_json):
        prepare_export(json.loads(manifest_json), read_upload)


def serve(host: str, port: int, tracker=None, key: str = "", fpga_config: str | None = None,
          port_end: int | None = None, silent: bool = True, rtl: bool = False,
          rtl_simulator: str = "iverilog") -> None:
    """Run a board until terminated: TVM's RPC server, registered at ``tracker`` under ``key``.

    ``tracker`` is ``"HOST:PORT"``/``(host, port)`` or None (clients then connect directly).
    With ``fpga_config`` (preset name or JSON path) the accelerator runtime is registered too;
    ``rtl`` runs its layers on the whole core's RTL (``vta_ext.backend``, in ``rtl_simulator``: iverilog or
    verilator) instead of the simulator.
    """
    from tvm.rpc.server import PopenRPCServerState

    from tvm_qnn.rpc import check_reachable, parse_address

    tracker_addr = None
    if tracker is not None:
        tracker_addr = parse_address(tracker, "tracker")
        if not key:
            raise RemoteError("serve: a board registered at a tracker needs --key")
        check_reachable(*tracker_addr, "tracker")
    if fpga_config is not None:
        board_info(fpga_config)  # fail here, in the foreground, on a bad config
    if rtl:
        if fpga_config is None:
            raise RemoteError("serve --rtl runs the accelerator's RTL: it needs --fpga CONFIG")
        from vta_ext.backend import set_backend

        set_backend("rtl", simulator=rtl_simulator)
    _register_board_functions(fpga_config)
    try:
        # TVM's own server loop (what rpc.Server runs in a PopenWorker), run in this process so
        # that each forked session inherits the functions registered above, and one Python
        # interpreter (not two) has to start: importing TVM dominates a board's start-up time.
        state = PopenRPCServerState(host, port, port_end or port + 1, tracker_addr=tracker_addr,
                                    key=key, silent=silent)
    except QnnError:
        raise
    except Exception as err:  # TVM raises bare ValueError/OSError on bind failures
        raise RemoteError(f"serve {host}:{port} key {key!r}: {err}") from err
    # SIGTERM (stop(), systemd, kill) ends the process; sessions are forked children, which
    # the stopper (tvm_qnn.rpc.stop_process_tree) ends by PID
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    registered = f", registered at {tracker_addr[0]}:{tracker_addr[1]}" if tracker_addr else ""
    core = f" (RTL core, {rtl_simulator})" if rtl else ""
    accelerator = f", accelerator {fpga_config}{core}" if fpga_config is not None else ""
    print(f"tvm-qnn board serving on {host}:{state.port} key {key!r}{registered}{accelerator}",
          file=sys.stderr, flush=True)
    state.thread.join()

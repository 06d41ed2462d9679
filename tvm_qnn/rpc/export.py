"""The client's view of an export directory for RPC: which files to upload, their checksums,
the library to load, the versions it was built with, and whether it needs an FPGA board.

The export format itself belongs to ``tvm_qnn.compiler`` (``CompiledModel.export`` /
``tvm_qnn.load``); this module only reads its manifest.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from tvm_qnn.compiler import sha256_file
from tvm_qnn.errors import ExportError, ShapeError

MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class ExportView:
    directory: Path
    manifest: dict

    # -- files ---------------------------------------------------------------------------
    def checksums(self) -> dict:
        """Upload name -> sha256 for every file the manifest lists."""
        files = self.manifest.get("files") or self.manifest.get("sha256") or {}
        if not isinstance(files, dict) or not files:
            raise ExportError(f"{self.directory / MANIFEST}: no 'files' checksums listed")
        return {_upload_name(name): _digest(entry) for name, entry in files.items()}

    def upload_files(self) -> list[tuple[str, Path]]:
        files = self.manifest.get("files") or self.manifest.get("sha256") or {}
        return [(_upload_name(name), self.directory / name) for name in files]

    def verify_local(self) -> None:
        files = self.manifest.get("files") or self.manifest.get("sha256") or {}
        for name, entry in files.items():
            path = self.directory / name
            if not path.is_file():
                raise ExportError(f"export {self.directory}: file {name} listed in the manifest "
                                  f"is missing")
            if sha256_file(path) != _digest(entry):
                raise ExportError(f"export {self.directory}: file {name} does not match its "
                                  f"manifest checksum (corrupt or modified)")

    @property
    def library_name(self) -> str:
        library = self.manifest.get("library")
        if library is None:
            candidates = [name for name in self.checksums() if name.endswith(".so")]
            if len(candidates) != 1:
                raise ExportError(f"{self.directory / MANIFEST}: cannot tell which file is the "
                                  f"library (found {candidates})")
            return candidates[0]
        return _upload_name(library)

    @property
    def entry(self) -> str:
        return str(self.manifest.get("entry", "main"))

    # -- compatibility -------------------------------------------------------------------
    def versions(self) -> dict:
        versions = self.manifest.get("versions", {})
        return {"tvm_qnn": versions.get("tvm_qnn", self.manifest.get("tvm_qnn_version")),
                "tvm": versions.get("tvm", self.manifest.get("tvm_version"))}

    def target_name(self) -> str:
        target = self.manifest.get("target", "cpu")
        if isinstance(target, dict):
            target = target.get("name", target.get("kind", "cpu"))
        return str(target)

    def needs_fpga(self) -> bool:
        return self.target_name().startswith("fpga")

    def hw_config(self) -> dict | None:
        """The accelerator config an fpga export was built for (None for other targets)."""
        return (self.manifest.get("target_info") or {}).get("hw_config")

    def fpga_config_name(self):
        hw = self.hw_config()
        return json.dumps(hw) if hw else "pynq_z1"

    # -- inputs and local run --------------------------------------------------------------
    def input_specs(self) -> list[tuple[tuple, str]]:
        specs = self.manifest.get("inputs") or []
        return [(tuple(spec["shape"]), str(spec.get("dtype", "float32"))) for spec in specs]

    def run_locally(self, arrays) -> list:
        import tvm_qnn

        outputs = tvm_qnn.load(self.directory).run(*arrays)
        if isinstance(outputs, (list, tuple)):
            return [np.asarray(out) for out in outputs]
        return [np.asarray(outputs)]


def _digest(entry) -> str:
    return entry["sha256"] if isinstance(entry, dict) else str(entry)


def _upload_name(name: str) -> str:
    from tvm_qnn.rpc.board import upload_name

    return upload_name(name)


def open_export(model_or_dir, scratch: Path | None) -> ExportView:
    """An ``ExportView`` of an export directory, exporting a ``CompiledModel`` to ``scratch``."""
    if hasattr(model_or_dir, "export") and not isinstance(model_or_dir, (str, Path)):
        source_dir = getattr(model_or_dir, "export_dir", None)  # a model from tvm_qnn.load
        if source_dir is not None:
            return open_export(source_dir, None)
        if scratch is None:
            raise ExportError("a CompiledModel needs a scratch directory to be exported into")
        directory = Path(scratch) / "export"
        try:
            model_or_dir.export(directory)
        except ExportError:
            raise
        except Exception as err:  # TVM cannot re-serialise a library loaded from disk
            raise ExportError(f"cannot export {model_or_dir!r} for upload ({err}); pass its "
                              f"export directory instead") from err
    else:
        directory = Path(model_or_dir)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ExportError(f"{directory} is not an export directory (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise ExportError(f"{manifest_path} is not valid JSON: {err}") from None
    return ExportView(directory, manifest)


def as_arrays(inputs, export: ExportView) -> list:
    """Inputs as a list of numpy arrays; None -> a seeded random input of the export's shape."""
    specs = export.input_specs()
    if inputs is None:
        if not specs:
            raise ShapeError(f"export {export.directory} records no input shapes; pass inputs")
        rng = np.random.default_rng(0)  # uniform in [0, 1), like CompiledModel.example_inputs
        return [rng.random(shape).astype(dtype) for shape, dtype in specs]
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    arrays = [np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
              for x in inputs]
    for index, (array, (shape, dtype)) in enumerate(zip(arrays, specs, strict=False)):
        if tuple(array.shape) != shape or str(array.dtype) != dtype:
            raise ShapeError(f"input {index}: got {array.dtype}{list(array.shape)}, the export "
                             f"expects {dtype}{list(shape)}")
    return arrays

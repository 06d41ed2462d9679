"""Output paths of ``CompiledModel.export``: never destroy a user's file or directory.

An export is written into a staging directory beside its destination and renamed into place.
The destination may be replaced only when it is missing, an empty directory, or an export this
tool wrote (a ``manifest.json`` of the export format listing every file it holds) *and* the
caller passed ``overwrite=True`` (``--force`` on the command line). Anything else -- a regular
file, a directory with the user's files, the working directory -- is refused with an
``ExportError`` naming it, before anything is written.

Staging and retired directories carry the writing process's id in their name
(``.<name>.tvm-qnn-staging.<pid>.<random>``); an export that was killed leaves one behind, and the
next export into the same parent removes those whose process no longer runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ExportError

STAGING_TAG = ".tvm-qnn-staging."
RETIRED_TAG = ".tvm-qnn-old."


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_staging(parent):
    """Remove staging/retired directories in ``parent`` left by exports whose process is gone."""
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        name = entry.name
        for tag in (STAGING_TAG, RETIRED_TAG):
            if not name.startswith(".") or tag not in name or not entry.is_dir() or entry.is_symlink():
                continue
            pid_text = name.split(tag, 1)[1].split(".", 1)[0]
            if pid_text.isdigit() and int(pid_text) != os.getpid() and not _process_alive(int(pid_text)):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def describe_existing(directory, manifest_name, export_format):
    """``None`` if ``directory`` is replaceable by an export, else why it is not (a phrase)."""
    if directory.is_symlink():
        return "is a symbolic link, not an export directory"
    if not directory.is_dir():
        return "is a file, not an export directory"
    entries = sorted(p.name for p in directory.iterdir())
    if not entries:
        return None
    manifest_path = directory / manifest_name
    listed = None
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
            if isinstance(manifest, dict) and manifest.get("format") == export_format \
                    and isinstance(manifest.get("files"), dict):
                listed = {Path(name).parts[0] for name in manifest["files"]} | {manifest_name}
        except (OSError, ValueError):
            listed = None
    if listed is None:
        shown = entries[:5] + (["..."] if len(entries) > 5 else [])
        return f"is not empty and is not a tvm-qnn export (it holds {shown})"
    foreign = [name for name in entries if name not in listed]
    if foreign:
        return f"is a tvm-qnn export but also holds files it did not write ({foreign[:5]})"
    return None


def prepare(directory, overwrite, manifest_name, export_format):
    """Check ``directory`` may be written; create its parent; return ``(directory, parent)``."""
    directory = Path(os.path.abspath(os.fspath(directory)))
    if directory.parent == directory:
        raise ExportError(f"export: {directory} is a filesystem root; name a new directory")
    if directory.exists() or directory.is_symlink():
        why = describe_existing(directory, manifest_name, export_format)
        if why is not None:
            raise ExportError(f"export: {directory} {why}; refusing to replace it (choose a new directory)")
        if any(directory.iterdir()) and not overwrite:
            raise ExportError(f"export: {directory} already holds an export; pass overwrite=True "
                              f"(--force) to replace it")
    parent = directory.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ExportError(f"export: cannot write {directory}: {ancestor} is a file, not a directory")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"export: cannot create the parent directory {parent}: {err.strerror or err}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"export: cannot write into {parent} (no write permission)")
    os.rmdir(make_staging(directory))  # a probe: /proc, read-only mounts... fail here, before any build
    clean_stale_staging(parent)
    return directory, parent


def make_staging(directory):
    """A new staging directory beside ``directory`` (ExportError if the parent refuses it)."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{directory.name}{STAGING_TAG}{os.getpid()}.",
                                     dir=directory.parent))
    except OSError as err:
        raise ExportError(f"export: cannot write into {directory.parent}: {err.strerror or err}") from None


def publish(staging, directory):
    """Move a complete ``staging`` directory to ``directory`` (replacing an old export or empty dir)."""
    try:
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}{RETIRED_TAG}{os.getpid()}.",
                                            dir=directory.parent))
            os.rename(directory, retired / "old")
            os.rename(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, directory)
    except OSError as err:
        raise ExportError(f"export: cannot move the finished export to {directory}: {err.strerror or err}") from None
    return directory

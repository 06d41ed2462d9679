"""``tvm_qnn.compile`` -> ``CompiledModel`` (run / benchmark / export / remote) and ``tvm_qnn.load``.

Export directory layout (written to a staging sibling directory and renamed into place, so a
directory either holds a complete export or nothing):

    model.so        the Relax VM executable (``export_library``)
    recipe.json     the recipe the model was quantized with (absent for a float model)
    runtime/...     extra files of the target's lowering (``Artifact.runtime_files``)
    manifest.json   format, tvm-qnn/TVM versions, target name + dict, input/output shapes and
                    dtypes, the float parameter count, the library name, the SHA-256 of every
                    other file and ``manifest_sha256`` (the digest of the manifest's own content)

Where an export may be written (never over a user's file or directory) is decided by
``tvm_qnn.export_paths``. ``load`` checks the format, the tvm-qnn version, that every listed file
exists with its checksum, that the manifest was not edited, that the library's ELF headers fit
its size (a truncated library would kill the process with SIGBUS when mapped), then asks the
target's lowering to rebuild the artifact (ExportError names the bad file).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from . import __version__, checks, export_paths
from .errors import CompileError, ExportError, QnnError, ShapeError
from .recipe import Recipe
from .recipe import load as load_recipe
from .targets import BuildOptions, get_target, host_target

EXPORT_FORMAT = "tvm-qnn-export/1"
MANIFEST = "manifest.json"
LIBRARY = "model.so"
RECIPE = "recipe.json"
RUNTIME_DIR = "runtime"


# --------------------------------------------------------------------------- signatures
def _tensor_spec(ty, where):
    try:
        return {"shape": [int(d) for d in ty.shape], "dtype": str(ty.dtype)}
    except (AttributeError, TypeError, ValueError) as err:
        raise ShapeError(f"{where}: needs a static tensor shape, got {ty}") from err


def module_signature(mod):
    """``(inputs, outputs)`` specs of ``main``: lists of ``{"name", "shape", "dtype"}``."""
    from tvm import relax

    main = mod["main"]
    num_input = int(main.attrs["num_input"]) if main.attrs is not None and "num_input" in main.attrs else len(main.params)
    if num_input != len(main.params):
        extra = [p.name for p in main.params[num_input:]]
        raise CompileError(f"main still takes weight parameters {extra[:4]}...; pass params= (or quantize first)")
    inputs = [dict(name=p.name, **_tensor_spec(p.ty, f"input {p.name!r}")) for p in main.params]
    ret = main.ret_ty
    fields = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    outputs = [dict(name=f"output{i}", **_tensor_spec(f, f"output {i}")) for i, f in enumerate(fields)]
    return inputs, outputs, isinstance(ret, relax.TupleType)


def _bind_float_params(mod, params):
    from tvm import relax

    from .quantize import check_params

    values = check_params(mod, params)
    bound = relax.transform.BindParams("main", values)(mod)
    return bound


# --------------------------------------------------------------------------- compile
def resolve_target(target):
    """``(lowering, BuildOptions target dict, extras)`` from a name, a target dict or a HwConfig."""
    if isinstance(target, str):
        lowering = get_target(target)
        return lowering, {}, {}
    if isinstance(target, dict):
        if target.get("kind") == "llvm":
            return get_target("cpu"), dict(target), {}
        from vta_ext.config import HwConfig  # validated here: a core that does not fit its part is refused first

        return get_target("fpga"), {}, {"hw_config": HwConfig.from_dict(target)}
    if type(target).__name__ == "HwConfig":
        return get_target("fpga"), {}, {"hw_config": target}
    return get_target(target)  # raises, listing the known targets


def compile(qmod_or_float_mod, target="cpu", recipe=None, params=None, tuning=None,  # noqa: A001 - public API name
            integer_only=False):
    """Build a quantized (or float) Relax module for ``target`` -> :class:`CompiledModel`.

    * a module from ``tvm_qnn.quantize`` compiles as is;
    * a float module (``from_torch``/``from_onnx``) with ``recipe=`` and ``params=`` is quantized first;
    * a float module with ``params=`` and no recipe compiles in float (the baseline).
    ``target``: a registered name (``cpu``, ``cpu-reference``, ``fpga``...), an LLVM target dict, or a
    ``vta_ext.HwConfig``. ``tuning``: a tuning database path/object handed to the lowering.
    ``integer_only=True`` (target ``cpu`` only): DESIGN's integer-only mode on the CPU, outputs
    bit-identical to target ``fpga`` (``tvm_qnn.targets.cpu_int``); passed as ``BuildOptions.extra``.
    ``integer_only=<preset name | HwConfig>`` also partitions as that core does (which layers it
    accepts); ``True`` uses the largest preset.
    """
    lowering, target_dict, extra = resolve_target(target)  # an oversized core is refused before the module is read
    checks.check_module(qmod_or_float_mod, "compile")
    if params is not None and not hasattr(params, "items"):
        raise checks.ArgumentError(f"compile: params must be a dict of weight name -> array, "
                                   f"got {type(params).__name__}")
    if integer_only:
        from .targets.cpu_int import integer_only_lowering

        lowering = integer_only_lowering(lowering)  # UnsupportedOpError for any target but cpu
        extra = dict(extra, integer_only=True)
        if integer_only is not True:  # a preset name / HwConfig / JSON path: partition as that core does
            extra["hw_config"] = integer_only
    from .quantize import PARAM_COUNT_ATTR, parameter_count

    mod = qmod_or_float_mod
    recipe_obj = None
    param_count = parameter_count(dict(params)) if params is not None else None
    if param_count is None and mod.attrs is not None and PARAM_COUNT_ATTR in mod.attrs:
        param_count = int(str(mod.attrs[PARAM_COUNT_ATTR]))
    if recipe is not None:
        from .quantize import quantize

        recipe_obj = load_recipe(recipe)
        mod = quantize(mod, params, recipe_obj)
    elif params is not None:
        mod = _bind_float_params(mod, dict(params))
    elif mod.attrs is not None and "tvm_qnn.recipe" in mod.attrs:  # set by tvm_qnn.quantize
        recipe_obj = Recipe.from_json(json.loads(str(mod.attrs["tvm_qnn.recipe"])))
    inputs, outputs, is_tuple = module_signature(mod)
    options = BuildOptions(target=target_dict or lowering.default_target(), tuning=tuning, extra=extra)
    try:
        artifact = lowering.build(mod, options)
    except QnnError:
        raise
    except Exception as err:
        raise CompileError(f"target {lowering.name!r}: build failed: {err}") from err
    lowering.prepare_runtime(artifact)
    model = CompiledModel(artifact, lowering, inputs, outputs, is_tuple, recipe_obj)
    model.param_count = param_count
    return model


class CompiledModel:
    """A built model: ``run(x)``, ``benchmark()``, ``export(dir)``, ``remote(session)``."""

    def __init__(self, artifact, lowering, inputs, outputs, output_is_tuple=False, recipe=None):
        self.artifact = artifact
        self.lowering = lowering
        self.inputs = inputs
        self.outputs = outputs
        self.output_is_tuple = output_is_tuple
        self.recipe = recipe
        self.export_dir = None  # set by load(): TVM cannot re-serialise a library loaded from disk
        self.param_count = None  # float weight elements of the imported model, when known
        self._vm = None

    @property
    def target(self):
        return self.lowering.name

    # ---------------------------------------------------------------- running
    def _device(self):
        import tvm

        return tvm.cpu(0)

    @property
    def vm(self):
        if self._vm is None:
            from tvm import relax

            self._vm = relax.VirtualMachine(self.artifact.executable, self._device())
        return self._vm

    def _check_inputs(self, args, check_finite=True):
        if len(args) != len(self.inputs):
            raise ShapeError(f"run: got {len(args)} input(s); the model takes {len(self.inputs)}: "
                             f"{[spec['name'] for spec in self.inputs]}")
        arrays = []
        for value, spec in zip(args, self.inputs):
            if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
                value = value.detach().cpu().numpy()
            array = np.asarray(value)
            expected_shape, expected_dtype = tuple(spec["shape"]), spec["dtype"]
            if array.shape != expected_shape:
                raise ShapeError(f"run: input {spec['name']!r} has shape {array.shape}; expected {expected_shape}")
            if str(array.dtype) != expected_dtype:
                raise ShapeError(f"run: input {spec['name']!r} has dtype {array.dtype}; expected {expected_dtype}")
            if check_finite:
                checks.check_finite_input(array, f"run: input {spec['name']!r}")
            arrays.append(np.ascontiguousarray(array))
        return arrays

    def _tvm_inputs(self, arrays):
        import tvm

        return [tvm.runtime.tensor(array, self._device()) for array in arrays]

    def run(self, *args, check_finite=True):
        """Run on numpy arrays or torch tensors (shape and dtype checked) -> numpy (tuple if several).

        Inputs holding NaN or +-inf are refused (QuantizationError naming the input and the count):
        activation codes clip them to finite values, so the output would look normal but be
        wrong. ``check_finite=False`` skips the check (the output is then whatever the kernels make).
        """
        arrays = self._check_inputs(args, check_finite)
        result = self.vm["main"](*self._tvm_inputs(arrays))
        if self.output_is_tuple:
            return tuple(field.numpy() for field in result)
        return result.numpy()

    def example_inputs(self, seed=0):
        """Seeded random inputs of the model's shapes (uniform in [0, 1), like images)."""
        rng = np.random.default_rng(seed)
        return [rng.random(spec["shape"]).astype(spec["dtype"]) for spec in self.inputs]

    def benchmark(self, repeat=10, number=None, inputs=None, min_repeat_ms=0):
        """Time ``main`` with TVM's ``time_evaluator``: ``{"mean_ms", "std_ms", "repeat", "number"}``."""
        repeat = checks.positive_int(repeat, "benchmark: repeat")
        if number is not None:
            number = checks.positive_int(number, "benchmark: number")
        min_repeat_ms = checks.non_negative_int(min_repeat_ms, "benchmark: min_repeat_ms")
        arrays = self._check_inputs(inputs if isinstance(inputs, (list, tuple)) else
                                    ([inputs] if inputs is not None else self.example_inputs()))
        tvm_inputs = self._tvm_inputs(arrays)
        if number is None:  # aim at >= ~20 ms per measurement without a long warm-up search
            import time

            start = time.perf_counter()
            self.vm["main"](*tvm_inputs)
            once = max(time.perf_counter() - start, 1e-6)
            number = max(1, min(100, int(0.02 / once)))
        timer = self.vm.time_evaluator("main", self._device(), number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
        result = timer(*tvm_inputs)
        samples_ms = np.asarray(result.results, dtype=np.float64) * 1e3
        return {"mean_ms": float(samples_ms.mean()), "std_ms": float(samples_ms.std()),
                "repeat": int(repeat), "number": int(number), "target": self.target}

    def profile(self, *args, repeat=5, show=True):
        """Per-kernel wall time of ``main`` with each kernel's kind -> :class:`tvm_qnn.profile.Profile`.

        ``args`` as for ``run`` (default: ``example_inputs()``); printed unless ``show=False``.
        """
        from .profile import profile_vm

        repeat = checks.positive_int(repeat, "profile: repeat")
        arrays = self._check_inputs(args if args else self.example_inputs())
        result = profile_vm(self.artifact.executable, self._device(), self._tvm_inputs(arrays), repeat)
        if show:
            print(result.table())
        return result

    # ---------------------------------------------------------------- export
    def manifest(self, files):
        import tvm

        return {
            "format": EXPORT_FORMAT,
            "versions": {"tvm_qnn": __version__, "tvm": str(tvm.__version__)},
            "target": self.target,
            "target_dict": self.artifact.target,
            "target_info": self.artifact.info,
            "entry": "main",
            "library": LIBRARY,
            "recipe": RECIPE if self.recipe is not None else None,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "output_is_tuple": self.output_is_tuple,
            "param_count": self.param_count,
            "files": files,
            # read by the RPC side to pick a board with the right accelerator (None on CPU targets)
            "hw_config": (self.artifact.info or {}).get("hw_config"),
        }

    def export(self, directory, overwrite=False):
        """Write library + recipe + runtime files + manifest to ``directory`` atomically.

        ``directory`` must be new, an empty directory, or (with ``overwrite=True``) an earlier
        export; a file or a directory holding anything else is refused (``tvm_qnn.export_paths``).
        """
        from .recipe import save as save_recipe

        directory, _ = export_paths.prepare(directory, overwrite, MANIFEST, EXPORT_FORMAT)
        staging = export_paths.make_staging(directory)
        try:
            if self.export_dir is not None:  # a loaded model: copy the checked files it came from
                _copy_export(Path(self.export_dir), staging)
                return export_paths.publish(staging, directory)
            self.artifact.executable.export_library(str(staging / LIBRARY))
            if self.recipe is not None:
                save_recipe(self.recipe, staging / RECIPE)
            for name, data in sorted(self.artifact.runtime_files.items()):
                path = staging / RUNTIME_DIR / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data if isinstance(data, bytes) else str(data).encode())
            files = {str(path.relative_to(staging)): sha256_file(path)
                     for path in sorted(staging.rglob("*")) if path.is_file()}
            (staging / MANIFEST).write_text(json.dumps(seal_manifest(self.manifest(files)), indent=1))
            return export_paths.publish(staging, directory)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise ExportError(f"export: writing {directory} failed: {err}") from err
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def remote(self, session_or_tracker, key=None, **kwargs):
        """Run on an RPC board (delegates to ``tvm_qnn.rpc.client.remote``)."""
        from tvm_qnn.rpc.client import remote

        return remote(self, session_or_tracker, key=key, **kwargs)

    def __repr__(self):
        shapes = ", ".join(f"{s['name']}{tuple(s['shape'])}" for s in self.inputs)
        return f"CompiledModel(target={self.target!r}, inputs=[{shapes}])"


def _copy_export(source, staging):
    """Copy the export ``source`` into ``staging`` (read_manifest checks every file's digest first)."""
    manifest = read_manifest(source)
    for name in sorted(manifest["files"]):
        path, target = source / name, staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    shutil.copyfile(source / MANIFEST, staging / MANIFEST)


def sha256_file(path):
    """Hex SHA-256 of a file's bytes (the export manifest's digests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- load
SEAL_FIELD = "manifest_sha256"


def _manifest_digest(manifest):
    body = {key: value for key, value in manifest.items() if key != SEAL_FIELD}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal_manifest(manifest):
    """``manifest`` plus the SHA-256 of its own content, so an edited manifest is detected on load."""
    return dict(manifest, **{SEAL_FIELD: _manifest_digest(manifest)})


def _check_tensor_specs(specs, field, path):
    if not isinstance(specs, list) or not specs:
        raise ExportError(f"load: {path}: field {field!r} must be a non-empty list of tensor specs")
    for index, spec in enumerate(specs):
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                  for d in shape) or not isinstance(spec.get("dtype"), str):
            raise ExportError(f"load: {path}: {field}[{index}] = {spec!r}; expected "
                              "{'name', 'shape': [positive ints], 'dtype'}")


def read_manifest(directory):
    """The validated manifest of an export directory (ExportError names the bad file/field)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ExportError(f"load: {directory} is not a directory")
    if not path.is_file():
        raise ExportError(f"load: {path} is missing (not an export directory, or a partial one)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"load: {path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"load: {path}: field 'format' is {manifest.get('format') if isinstance(manifest, dict) else None!r}; "
                          f"expected {EXPORT_FORMAT!r}")
    version = manifest.get("versions", {}).get("tvm_qnn")
    if version != __version__:
        raise ExportError(f"load: {path}: exported by tvm-qnn {version!r}; this is tvm-qnn {__version__}")
    for field in ("target", "library", "inputs", "outputs", "files"):
        if field not in manifest:
            raise ExportError(f"load: {path}: field {field!r} is missing")
    for name, digest in manifest["files"].items():
        file_path = directory / name
        if not file_path.is_file():
            raise ExportError(f"load: {file_path} is listed in the manifest but missing (partial export)")
        if sha256_file(file_path) != digest:
            raise ExportError(f"load: {file_path} does not match its SHA-256 in the manifest (corrupt or modified)")
    if manifest["library"] not in manifest["files"]:
        raise ExportError(f"load: {path}: the library {manifest['library']!r} has no checksum entry")
    _check_tensor_specs(manifest["inputs"], "inputs", path)
    _check_tensor_specs(manifest["outputs"], "outputs", path)
    if SEAL_FIELD not in manifest:
        raise ExportError(f"load: {path}: field {SEAL_FIELD!r} is missing (written by an older tvm-qnn, "
                          "or edited by hand); export the model again")
    if manifest[SEAL_FIELD] != _manifest_digest(manifest):
        raise ExportError(f"load: {path} was modified after export (its content does not match "
                          f"{SEAL_FIELD}); export the model again instead of editing it")
    check_library_file(directory / manifest["library"])
    return manifest


_ELF_MAGIC = b"\x7fELF"


def check_library_file(path):
    """Refuse a shared library whose ELF headers point past its end (a truncated file).

    ``dlopen`` maps every ``PT_LOAD`` segment; a segment beyond the end of the file is a SIGBUS
    that kills the process when its page is touched. Reading the headers first turns that into an
    ExportError naming the file (the SHA-256 in the manifest does not help once it was updated).
    """
    import struct

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(64)
        if len(header) < 52 or header[:4] != _ELF_MAGIC:
            raise ExportError(f"load: {path} is not a shared library (no ELF header; {size} bytes)")
        is64, endian = header[4] == 2, "<" if header[5] == 1 else ">"
        if is64:
            if len(header) < 64:
                raise ExportError(f"load: {path} is truncated ({size} bytes: not even an ELF header)")
            phoff, shoff = struct.unpack_from(endian + "QQ", header, 32)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(endian + "HHHH", header, 54)
            segment = endian + "IIQQQQQQ"
        else:
            phoff, shoff = struct.unpack_from(endian + "II", header, 28)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(endian + "HHHH", header, 42)
            segment = endian + "IIIIIIII"
        if phoff + phnum * phentsize > size or (shnum and shoff + shnum * shentsize > size):
            raise ExportError(f"load: {path} is truncated ({size} bytes; its ELF headers need more)")
        for index in range(phnum):
            handle.seek(phoff + index * phentsize)
            fields = struct.unpack(segment, handle.read(struct.calcsize(segment)))
            if is64:
                kind, offset, filesz = fields[0], fields[2], fields[5]
            else:
                kind, offset, filesz = fields[0], fields[1], fields[4]
            if kind == 1 and offset + filesz > size:  # PT_LOAD
                raise ExportError(f"load: {path} is truncated: segment {index} ends at byte "
                                  f"{offset + filesz}, the file has {size}")


def load(directory):
    """Load an export directory written by ``CompiledModel.export`` -> :class:`CompiledModel`."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    lowering = get_target(manifest["target"])
    prefix = RUNTIME_DIR + "/"
    runtime_files = {name[len(prefix):]: (directory / name).read_bytes()
                     for name in manifest["files"] if name.startswith(prefix)}
    try:
        artifact = lowering.load_artifact(str(directory / manifest["library"]), manifest.get("target_dict") or host_target(),
                                          runtime_files)
    except QnnError as err:
        raise ExportError(f"load: {directory / manifest['library']}: {err}") from err
    artifact.info = manifest.get("target_info") or {}
    lowering.prepare_runtime(artifact, directory)
    recipe = None
    if manifest.get("recipe"):
        recipe = load_recipe(directory / manifest["recipe"])
    if recipe is not None and not isinstance(recipe, Recipe):
        raise ExportError(f"load: {directory / RECIPE} is not a recipe")
    model = CompiledModel(artifact, lowering, manifest["inputs"], manifest["outputs"],
                          bool(manifest.get("output_is_tuple")), recipe)
    model.export_dir = directory
    model.param_count = manifest.get("param_count")
    return model

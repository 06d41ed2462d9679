"""A segment: connected accelerator layers compiled together, run by the simulator, saved to disk.

A segment is what one partitioned (``Codegen = "vta_qnn"``) Relax function becomes. Its nodes
are layers in topological order; node inputs are segment inputs (float tensors from the CPU,
quantized to codes on the host with ``reference.act_codes``, zero point included) or other nodes.
A node whose every consumer is another node with the same ``(a_bits, a_clamp, a_zero_point)``
requantizes on the core to those codes (integer-only mode: activations stay codes); other nodes store int32 accumulators that the
host turns into float (``acc * s_a * s_w`` + epilogue). Segment outputs are float32.

``save(dir)`` / ``load(dir)`` write the instruction streams (encoded, ``isa.encode_stream``),
DRAM images, integer parameters and the config: everything the runtime needs, no TVM objects.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvm_qnn import reference
from tvm_qnn.errors import ExportError, ShapeError

from .compiler import LayerProgram, compile_layer
from .config import HwConfig
from .isa import decode_stream, encode_stream
from .backend import run_layer
from .sim.timing import simulate_program
from .tiling import ConvGeometry, Tiling

FORMAT = "tvm-qnn-vta-segment/1"


@dataclass
class SegmentNode:
    program: LayerProgram
    source: tuple  # ("input", k) or ("node", j)
    a_bits: int
    a_clamp: float
    input_is_codes: bool  # the source node already emits this layer's codes
    cycles: int = 0
    timing: object = None
    a_zero_point: int = 0


@dataclass
class Segment:
    name: str
    config: HwConfig
    nodes: list
    outputs: list  # node indices, in the order of the function's outputs
    input_shapes: list = field(default_factory=list)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, name, config, layers, sources, outputs, input_shapes):
        """Compile ``layers`` (QnnLayer, topological order) wired by ``sources`` into a segment."""
        consumers = {i: [] for i in range(len(layers))}
        for j, source in enumerate(sources):
            if source[0] == "node":
                consumers[source[1]].append(j)
        nodes = []
        for i, layer in enumerate(layers):
            users = consumers[i]
            keys = {(layers[j].a_bits, float(layers[j].a_clamp), int(layers[j].a_zero_point)) for j in users}
            chain = bool(users) and i not in outputs and len(keys) == 1
            out_act = next(iter(keys)) if chain else None
            program = compile_layer(layer, config, out_act=out_act)
            source = tuple(sources[i])
            feeds_codes = source[0] == "node" and nodes[source[1]].program.outputs_codes
            timing = simulate_program(program)
            nodes.append(SegmentNode(program, source, layer.a_bits, float(layer.a_clamp), feeds_codes,
                                     timing.cycles, timing, int(layer.a_zero_point)))
        return cls(name, config, nodes, list(outputs), [tuple(s) for s in input_shapes])

    # ------------------------------------------------------------------ running
    def run(self, inputs):
        """Float32 outputs for float32 ``inputs`` (list of arrays), computed by the functional simulator
        (or the RTL core, ``vta_ext.backend.set_backend("rtl")``)."""
        if len(inputs) != len(self.input_shapes):
            raise ShapeError(f"segment {self.name!r} takes {len(self.input_shapes)} inputs, got {len(inputs)}")
        values = []
        for node in self.nodes:
            kind, k = node.source
            x = inputs[k] if kind == "input" else values[k]
            codes = x if node.input_is_codes else reference.act_codes(x, node.a_clamp, node.a_bits, node.a_zero_point)
            codes = np.asarray(codes).reshape(node.program.input_shape)
            out = run_layer(node.program, codes)
            values.append(out if node.program.outputs_codes else node.program.dequantize(out))
        return [np.asarray(values[i], dtype=np.float32) for i in self.outputs]

    def layer_cycles(self):
        return [(node.program.name, node.cycles) for node in self.nodes]

    # ------------------------------------------------------------------ files
    def to_files(self):
        """``{relative name: bytes}``: the manifest, encoded streams and DRAM images of every node."""
        manifest = {"format": FORMAT, "name": self.name, "config": self.config.to_dict(), "outputs": self.outputs,
                    "input_shapes": [list(s) for s in self.input_shapes], "nodes": []}
        files = {}
        for i, node in enumerate(self.nodes):
            p = node.program
            files[f"node{i}.insn"] = encode_stream(p.insns)
            arrays = {f"param_{k}": np.asarray(v) for k, v in p.params.items()
                      if v is not None and not isinstance(v, (int, float))}
            buffer = io.BytesIO()
            np.savez(buffer, dram=p.dram, **arrays)
            files[f"node{i}.npz"] = buffer.getvalue()
            scalars = {k: v for k, v in p.params.items() if v is None or isinstance(v, (int, float))}
            manifest["nodes"].append({
                "name": p.name, "kind": p.kind, "geometry": dataclasses.asdict(p.geometry),
                "tiling": dataclasses.asdict(p.tiling), "regions": {k: list(v) for k, v in p.regions.items()},
                "scalars": scalars, "source": list(node.source), "a_bits": node.a_bits, "a_clamp": node.a_clamp,
                "input_is_codes": node.input_is_codes, "cycles": node.cycles, "a_zero_point": node.a_zero_point,
                "host_padding": list(p.host_padding), "pad_code": p.pad_code})
        files["segment.json"] = json.dumps(manifest, indent=1).encode()
        return files

    @classmethod
    def from_files(cls, files, where="segment"):
        """Inverse of :meth:`to_files`; ``ExportError`` names what is missing or corrupt."""
        if "segment.json" not in files:
            raise ExportError(f"{where}: segment.json is missing: not an accelerator segment")
        try:
            manifest = json.loads(files["segment.json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ExportError(f"{where}: segment.json is corrupt: {err}") from None
        if manifest.get("format") != FORMAT:
            raise ExportError(f"{where}: segment.json has format {manifest.get('format')!r}; expected {FORMAT!r}")
        config = HwConfig.from_dict(manifest["config"])
        nodes = []
        for i, entry in enumerate(manifest["nodes"]):
            try:
                insns = decode_stream(files[f"node{i}.insn"])
                with np.load(io.BytesIO(files[f"node{i}.npz"])) as data:
                    dram = data["dram"]
                    params = {k[len("param_"):]: data[k] for k in data.files if k.startswith("param_")}
            except (KeyError, OSError, ValueError) as err:
                raise ExportError(f"{where}: node {i} files are missing or corrupt: {err!r}") from None
            params.update(entry["scalars"])
            geom = entry["geometry"]
            geometry = ConvGeometry(**{k: tuple(v) if isinstance(v, list) else v for k, v in geom.items()})
            program = LayerProgram(entry["name"], config, geometry, Tiling(**entry["tiling"]), insns, dram,
                                   {k: tuple(v) for k, v in entry["regions"].items()}, entry["kind"], params,
                                   tuple(entry.get("host_padding", (0, 0, 0, 0))), int(entry.get("pad_code", 0)))
            nodes.append(SegmentNode(program, tuple(entry["source"]), entry["a_bits"], entry["a_clamp"],
                                     entry["input_is_codes"], entry["cycles"],
                                     a_zero_point=int(entry.get("a_zero_point", 0))))
        return cls(manifest["name"], config, nodes, manifest["outputs"],
                   [tuple(s) for s in manifest["input_shapes"]])

    def save(self, directory):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.to_files().items():
            (directory / name).write_bytes(data)

    @classmethod
    def load(cls, directory):
        directory = Path(directory)
        files = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()} if directory.is_dir() else {}
        return cls.from_files(files, where=str(directory))

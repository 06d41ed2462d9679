"""The result of the streaming planner (``StreamingPlan``) and its Markdown / JSON views, plus
the ``tvm-qnn-streamgraph/1`` JSON format of a layer graph the CLI reads.

Units are in the names: ``*_cycles`` at the device clock, ``latency_ms``, ``fps``; FIFO depths
are in stream elements (feature-map rows); BRAM is counted in BRAM36 equivalents.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tvm_qnn.errors import ShapeError

from vta_ext.streaming.cost import RESOURCES, DeviceSpec

GRAPH_FORMAT = "tvm-qnn-streamgraph/1"
PLAN_FORMAT = "tvm-qnn-streamplan/1"


@dataclass(frozen=True)
class BlockPlan:
    name: str
    op: str
    device: int
    pe: int
    simd: int
    mmv: int
    ii_cycles: float
    row_cycles: float
    rows_out: int
    in_bits: int
    w_bits: int
    row0_cycles: float  # when row 0 of its output appears (the row-0 schedule of the FIFO sizing)
    resources: dict

    @property
    def lanes(self):
        return self.pe * self.simd * self.mmv


@dataclass(frozen=True)
class FifoPlan:
    src: str
    dst: str
    depth_rows: int
    lag_cycles: float   # how much earlier this input's row 0 arrives than the join's latest input
    row_bits: int
    is_join_input: bool
    crosses_device: bool
    resources: dict

    @property
    def name(self):
        return f"{self.src}->{self.dst}"


@dataclass(frozen=True)
class LinkPlan:
    from_device: int
    to_device: int
    streams: tuple
    bits_per_image: int
    ii_cycles: float


@dataclass(frozen=True)
class StreamingPlan:
    model: str
    device: DeviceSpec
    devices_given: int
    a_bits: int
    w_bits: int
    target_fps: float | None
    target_ii_cycles: float
    period_cycles: float     # cycles per image in steady state: the slowest block or link
    latency_cycles: float    # first input row to last output row, throughput-paced
    blocks: tuple
    fifos: tuple
    links: tuple
    device_resources: tuple  # per used device: {"lut", "ff", "bram", "dsp"}
    cost_model: str
    graph: object = field(default=None, compare=False, repr=False)  # the LayerGraph planned (for streaming.sim)

    # ------------------------------------------------------------------ derived figures
    @property
    def devices_used(self):
        return len(self.device_resources)

    @property
    def fps(self):
        return self.device.clock_mhz * 1e6 / self.period_cycles

    @property
    def time_per_image_ms(self):
        return self.period_cycles / (self.device.clock_mhz * 1e3)

    @property
    def latency_ms(self):
        return self.latency_cycles / (self.device.clock_mhz * 1e3)

    @property
    def bottleneck(self):
        stages = [(b.ii_cycles, b.name) for b in self.blocks] + \
                 [(link.ii_cycles, f"link {link.from_device}->{link.to_device}") for link in self.links]
        slowest = max(ii for ii, _ in stages)
        return next(name for ii, name in stages if ii == slowest)  # the first in pipeline order

    def utilisation(self):
        cap = self.device.capacity()
        return [{r: used[r] / cap[r] if cap[r] else 0.0 for r in RESOURCES} for used in self.device_resources]

    def total_resources(self):
        return {r: sum(used[r] for used in self.device_resources) for r in RESOURCES}

    def block(self, name):
        for block in self.blocks:
            if block.name == name:
                return block
        raise ShapeError(f"plan of {self.model!r} has no block {name!r}")

    def fifo(self, src, dst):
        for fifo in self.fifos:
            if (fifo.src, fifo.dst) == (src, dst):
                return fifo
        raise ShapeError(f"plan of {self.model!r} has no FIFO {src!r} -> {dst!r}")

    def skip_fifo_resources(self):
        """Resources of the FIFOs feeding joins (the price of the skip connections)."""
        return {r: sum(f.resources[r] for f in self.fifos if f.is_join_input) for r in RESOURCES}

    # ------------------------------------------------------------------ views
    def to_dict(self):
        return {
            "format": PLAN_FORMAT, "model": self.model, "device": self.device.to_dict(),
            "devices_given": self.devices_given, "devices_used": self.devices_used,
            "a_bits": self.a_bits, "w_bits": self.w_bits, "target_fps": self.target_fps,
            "period_cycles": self.period_cycles, "fps": self.fps, "time_per_image_ms": self.time_per_image_ms,
            "latency_cycles": self.latency_cycles, "latency_ms": self.latency_ms, "bottleneck": self.bottleneck,
            "cost_model": self.cost_model,
            "blocks": [asdict(b) for b in self.blocks], "fifos": [asdict(f) for f in self.fifos],
            "links": [asdict(link) for link in self.links],
            "device_resources": list(self.device_resources), "utilisation": self.utilisation(),
            "total_resources": self.total_resources(), "skip_fifo_resources": self.skip_fifo_resources(),
        }

    def to_json(self, indent=1):
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self):
        d = self.device
        lines = [
            f"## Streaming plan: {self.model} (w{self.w_bits}a{self.a_bits}) on {self.devices_used} of "
            f"{self.devices_given} x {d.name} ({d.part}, {d.clock_mhz:g} MHz)",
            "",
            f"- throughput: **{self.fps:.1f} fps** ({self.time_per_image_ms:.3f} ms/image, "
            f"{self.period_cycles:.0f} cycles; bottleneck {self.bottleneck})",
            f"- latency: {self.latency_ms:.3f} ms (row-0 schedule, throughput-paced)",
            f"- resource model: {self.cost_model}",
            "",
            "| device | LUT | FF | BRAM36 | DSP | max util |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for index, (used, util) in enumerate(zip(self.device_resources, self.utilisation())):
            lines.append(f"| {index} | {used['lut']:,} | {used['ff']:,} | {used['bram']:,} | {used['dsp']:,} | "
                         f"{max(util.values()):.0%} |")
        lines += ["", "| block | op | dev | PE x SIMD x MMV | bits a/w | II cycles | LUT | BRAM36 | DSP |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for b in self.blocks:
            lines.append(f"| {b.name} | {b.op} | {b.device} | {b.pe} x {b.simd} x {b.mmv} | {b.in_bits}/{b.w_bits or '-'} | "
                         f"{b.ii_cycles:,.0f} | {b.resources['lut']:,} | {b.resources['bram']} | {b.resources['dsp']} |")
        joins = [f for f in self.fifos if f.is_join_input]
        if joins:
            lines += ["", "| join FIFO | depth (rows) | lag cycles | row bits | BRAM36 |", "|---|---:|---:|---:|---:|"]
            for f in joins:
                lines.append(f"| {f.name} | {f.depth_rows} | {f.lag_cycles:,.0f} | {f.row_bits:,} | {f.resources['bram']} |")
        if self.links:
            lines += ["", "| link | streams | Mbit/image | II cycles |", "|---|---|---:|---:|"]
            for link in self.links:
                lines.append(f"| {link.from_device}->{link.to_device} | {', '.join(link.streams)} | "
                             f"{link.bits_per_image / 1e6:.3f} | {link.ii_cycles:,.0f} |")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- graph files
def graph_to_dict(graph):
    keys = ("name", "op", "inputs", "out_channels", "kernel", "stride", "padding", "groups", "shape", "bits", "w_bits")
    return {"format": GRAPH_FORMAT, "model": graph.name,
            "layers": [{k: getattr(layer, k) for k in keys if getattr(layer, k) is not None} for layer in graph.layers]}


def graph_from_dict(data, source="<dict>"):
    from vta_ext.streaming.graph import LayerGraph, StreamLayer

    if not isinstance(data, dict) or data.get("format") != GRAPH_FORMAT:
        raise ShapeError(f"{source}: format={data.get('format') if isinstance(data, dict) else None!r}; "
                         f"expected {GRAPH_FORMAT!r}")
    layers = []
    for index, fields in enumerate(data.get("layers", [])):
        try:
            layers.append(StreamLayer(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}))
        except TypeError as err:
            raise ShapeError(f"{source}: layer #{index} ({fields.get('name')!r}): {err}") from None
    return LayerGraph(str(data.get("model", Path(source).stem)), tuple(layers))


def load_graph(model_name_or_path):
    """A ``LayerGraph`` from a ``netdefs`` network name or a ``tvm-qnn-streamgraph/1`` file."""
    from vta_ext.streaming.netdefs import NETWORKS, get_network

    text = str(model_name_or_path)
    if text in NETWORKS:
        return get_network(text)
    path = Path(text)
    if not path.is_file():
        raise ShapeError(f"model {text!r} is neither a known network {sorted(NETWORKS)} nor a graph file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ShapeError(f"graph file {text!r} is not valid JSON: {err}") from None
    return graph_from_dict(data, text)

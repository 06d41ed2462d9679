"""tvm_qnn.targets.fpga helpers: config resolution, runtime files round trip, errors."""

import numpy as np
import pytest

from tvm_qnn.errors import ExportError, HwConfigError, QnnError
from tvm_qnn.layer import QnnLayer
from tvm_qnn.targets.fpga import hw_config_from, model_report, segments_of
from tvm_qnn.targets import Artifact, get_target
from vta_ext.config import HwConfig
from vta_ext.segment import Segment


def test_hw_config_from_every_spelling(tmp_path):
    preset = HwConfig.preset("ultrascale_plus")
    assert hw_config_from(None) == HwConfig.preset("pynq_z1")
    assert hw_config_from("ultrascale_plus") == preset
    assert hw_config_from(preset.to_dict()) == preset
    assert hw_config_from(preset.to_json(tmp_path / "c.json")) == preset
    assert hw_config_from(str(tmp_path / "c.json")) == preset
    with pytest.raises(HwConfigError, match="known presets"):
        hw_config_from("vu19p")
    with pytest.raises(HwConfigError, match="expected a HwConfig"):
        hw_config_from(3)
    assert get_target("fpga").name == "fpga"


def _segment():
    rng = np.random.default_rng(0)
    layers = [QnnLayer(n, "dense", rng.integers(0, 4, (12, c)).astype(np.uint8), rng.normal(size=(1, 4)).astype(np.float32),
                       None, 2, "kquantile", 3, 1.0, (2, c), out_min=0.0) for n, c in (("a", 20), ("b", 12))]
    return Segment.build("seg", HwConfig.preset("pynq_z1"), layers, [("input", 0), ("node", 0)], [1], [(2, 20)])


def test_segment_files_round_trip_and_run_the_same():
    segment = _segment()
    assert segment.nodes[0].program.outputs_codes and segment.nodes[1].input_is_codes
    x = np.random.default_rng(1).uniform(0, 1.2, (2, 20)).astype(np.float32)
    files = segment.to_files()
    again = Segment.from_files(files)
    np.testing.assert_array_equal(again.run([x])[0], segment.run([x])[0])
    assert again.layer_cycles() == segment.layer_cycles()
    artifact = Artifact(None, {}, {f"vta/sym/{k}": v for k, v in files.items()})
    assert model_report(artifact).cycles == sum(c for _, c in segment.layer_cycles())


def test_corrupt_or_missing_runtime_files_are_named():
    files = _segment().to_files()
    with pytest.raises(ExportError, match="segment.json is missing"):
        Segment.from_files({k: v for k, v in files.items() if k != "segment.json"})
    with pytest.raises(ExportError, match="node 1 files"):
        Segment.from_files({k: v for k, v in files.items() if k != "node1.npz"})
    with pytest.raises(ExportError, match="corrupt"):
        Segment.from_files(dict(files, **{"segment.json": b"{"}))
    with pytest.raises(QnnError, match="no accelerator layers"):
        model_report(Artifact(None, {}, {}))
    assert segments_of(Artifact(None, {}, {})) == {}

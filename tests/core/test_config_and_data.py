"""Configuration rejects typos and bad values; data loading follows the --data contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qdeploy.config import QuantizeConfig, ScaleKind, compile_config
from qdeploy.data import check_array, load_array
from qdeploy.errors import InputDataError, QDeployError
from qdeploy.options import load_config_file, to_jsonable
from qdeploy.target import get_target
from qdeploy.targets.hls4ml.options import IOType


def test_unknown_keys_are_rejected_with_the_valid_ones_named():
    with pytest.raises(QDeployError, match=r"unknown key 'bord'.*options of target 'hls4ml'.*'board'"):
        compile_config({"target": "hls4ml", "bord": "pynq-z2"})
    with pytest.raises(QDeployError, match=r"\[hls4ml\] options: unknown key\(s\) \['bord'\]"):
        compile_config({"target": "onnxruntime", "hls4ml": {"bord": "pynq-z2"}})
    with pytest.raises(QDeployError, match="unknown target 'fpga'; available: .*hls4ml"):
        compile_config({"target": "fpga"})


def test_enums_and_ranges_are_checked():
    hls4ml = get_target("hls4ml")
    assert hls4ml.options({"io_type": "io_stream"}).io_type is IOType.STREAM
    with pytest.raises(QDeployError, match="io_type='io_fast'"):
        compile_config({"target": "hls4ml", "io_type": "io_fast"})
    with pytest.raises(QDeployError, match="reuse_factor=0"):
        hls4ml.options({"reuse_factor": 0})
    with pytest.raises(QDeployError, match="verify_samples=-1"):
        compile_config({"verify_samples": -1})
    with pytest.raises(QDeployError, match="weight_bits=9"):
        QuantizeConfig(weight_bits=9)
    assert QuantizeConfig(scale="float").scale is ScaleKind.FLOAT


def test_config_files_load_and_resolved_config_serialises(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(
        'target = "hls4ml"\nboard = "zcu104"\n[hls4ml]\nstrategy = "Resource"\n[hls4ml.Model]\nReuseFactor = 2\n'
    )
    cfg = compile_config(load_config_file(toml))
    options = get_target("hls4ml").options(cfg.options_for("hls4ml"))
    # flat keys of the selected target, its table, and hls4ml's own sections passed through
    assert options.board == "zcu104" and options.strategy.value == "Resource"
    assert options.hls_config["Model"]["ReuseFactor"] == 2
    resolved = json.loads(json.dumps(to_jsonable(options)))  # enums by value: plain JSON
    assert resolved["strategy"] == "Resource" and resolved["io_type"] == options.io_type.value


def test_npz_prefers_x_then_the_only_array(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.savez(tmp_path / "named.npz", y=a * 0, x=a)
    np.savez(tmp_path / "single.npz", inputs=a)
    np.save(tmp_path / "plain.npy", a)
    for name in ("named.npz", "single.npz", "plain.npy"):
        assert np.array_equal(load_array(tmp_path / name), a)
    np.savez(tmp_path / "two.npz", a=a, b=a)
    with pytest.raises(InputDataError, match="none named 'x'"):
        load_array(tmp_path / "two.npz")


def test_bad_data_files_name_the_file(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        load_array(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputDataError, match="junk.npy"):
        load_array(tmp_path / "junk.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InputDataError, match="not .npy or .npz"):
        load_array(tmp_path / "x.csv")


def test_nan_and_shape_are_checked():
    x = np.zeros((4, 1, 8, 8), dtype=np.float32)
    assert check_array(x, (1, 8, 8), "d").shape == x.shape
    with pytest.raises(InputDataError, match=r"per-sample shape \(8, 8\) but the model expects \(1, 8, 8\)"):
        check_array(x[:, 0], (1, 8, 8), "d")
    x[2, 0, 3, 3] = np.nan
    with pytest.raises(InputDataError, match="NaN or Inf \\(first in sample 2\\)"):
        check_array(x, (1, 8, 8), "d")

"""Data splits and configs: shapes, ranges, seeded halves, clear errors for bad input."""

import pytest
import torch
import yaml

from wsr_bench.config import ConfigError, ExperimentConfig, dump_config, load_config
from wsr_bench.data.datasets import DataError, as_tensors, load_dataset


def test_digits_is_embedded_resized_and_in_unit_range():
    s = load_dataset("digits", image_size=16)
    x, y = as_tensors(s.train_t)
    assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert len(s.train_t) == len(s.train_v) and len(s.test) > 300
    assert set(y.tolist()) == set(range(10)) and s.num_classes == 10


def test_splits_are_seeded_and_disjoint():
    a, b, c = load_dataset("digits", seed=1), load_dataset("digits", seed=1), load_dataset("digits", seed=2)
    assert torch.equal(as_tensors(a.train_t)[0], as_tensors(b.train_t)[0])
    assert not torch.equal(as_tensors(a.train_t)[0], as_tensors(c.train_t)[0])
    assert set(a.train_t.indices).isdisjoint(a.train_v.indices)


def test_synthetic_and_limit():
    s = load_dataset("synthetic", image_size=8, synthetic_size=64, limit=10)
    assert len(s.train_t) == 10 and as_tensors(s.test)[0].shape[-1] == 8


def test_missing_cifar_folder_names_the_path(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} does not exist"):
        load_dataset("cifar10", root=tmp_path / "nope")


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_config_yaml_overrides_and_dump(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  name: synthetic\neval:\n  eps: [0.03, 8/255]\n")
    cfg = load_config(path, ["model.layers=4", "train.epochs=2", "eval.warm_start_steps=5"])
    assert cfg.data.name == "synthetic" and cfg.model.layers == 4 and cfg.train.epochs == 2
    assert cfg.eval.warm_start_steps == 5 and load_config(path).eval.warm_start_steps is None
    assert cfg.eval.sweep == "downward" and load_config(path, ["eval.sweep=bisect"]).eval.sweep == "bisect"
    assert cfg.eval.eps[1] == pytest.approx(8 / 255)
    dump_config(cfg, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["layers"] == 4
    assert isinstance(load_config(None), ExperimentConfig)


@pytest.mark.parametrize("overrides, message", [
    (["data.colour=red"], "unknown config key 'data.colour'"),
    (["nonsense.key=1"], "unknown config key 'nonsense'"),
    (["eval.eps=[8]"], "outside \\(0, 1\\]"),
    (["model.layers=abc"], "must be int"),
    (["data.name=imagenet22k"], "data.name must be one of"),
    (["model.layers"], "not of the form"),
    (["eval.warm_start_steps=0"], "eval.warm_start_steps must be >= 1"),
    (["eval.warm_start_steps=5", "eval.attack=[fgsm]"], "pgd among eval.attack"),
    (["eval.sweep=sideways"], "eval.sweep must be one of upward, downward, bisect"),
])
def test_bad_configs_are_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_malformed_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")

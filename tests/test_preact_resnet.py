"""PreAct-ResNet-18: RobustBench's network (parameter count, state dict, outputs), timm's API, the normalisation inside
the model, export round trips, and the generic ``create``/``build_model`` path that sizes DARTS networks."""

import types

import pytest
import timm
import torch

import wsr_bench._compat  # noqa: F401  (robustbench imports `autoattack`)
import wsr_bench.models  # noqa: F401
from wsr_bench.cli import main
from wsr_bench.config import load_config
from wsr_bench.data.datasets import STATS
from wsr_bench.models import REGISTERED_MODELS, export_model, load_exported
from wsr_bench.models.catalog import create
from wsr_bench.models.preact_resnet import PreActResNet

FM_MEAN, FM_STD = STATS["fashion_mnist"]
# Rice et al. 2020 / RobustBench PreActResNet-18 (final BN-ReLU), width 64, CIFAR-10: RobustBench's
# PreActResNet18() (no final BN, Wong et al. 2020) has 11,171,146; the final BN adds 2 x 512.
GOLDEN_PARAMS = 11_172_170


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def robustbench_pair():
    from robustbench.model_zoo.architectures.resnet import PreActBlockV2, PreActResNet, PreActResNet18

    torch.manual_seed(0)
    reference = PreActResNet(PreActBlockV2, [2, 2, 2, 2], bn_before_fc=True)
    return reference, PreActResNet18()


def test_golden_parameter_count_matches_robustbench(robustbench_pair):
    reference, wong = robustbench_pair
    model = timm.create_model("preact_resnet18", num_classes=10)
    assert _params(model) == _params(reference) == GOLDEN_PARAMS
    assert _params(wong) == 11_171_146 == GOLDEN_PARAMS - 2 * 512  # the same network without the final BN
    assert model.model_args["width"] == 64 and model.num_features == 512


def test_robustbench_state_dict_loads_and_gives_the_same_outputs(robustbench_pair):
    reference = robustbench_pair[0]
    for m in reference.modules():  # non-trivial BN statistics, so the comparison covers them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    reference.eval()
    model = timm.create_model("preact_resnet18", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).eval()
    result = model.load_state_dict(reference.state_dict(), strict=False)
    assert not result.unexpected_keys and sorted(result.missing_keys) == ["normalize.mean", "normalize.std"]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert ours.shape == theirs.shape == (2, 10)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_small_one_channel_network_timm_api():
    model = timm.create_model("preact_resnet18", width=8, in_chans=1, num_classes=10, mean=FM_MEAN, std=FM_STD)
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    feats = model.forward_features(x)
    assert feats.shape == (2, 64, 4, 4) and (feats >= 0).all()  # BN-ReLU before the pool
    assert model.forward_head(feats, pre_logits=True).shape == (2, 64)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert model.get_classifier() is model.linear and model.pretrained_cfg["classifier"] == "linear"
    model.reset_classifier(3)
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 3) and model.num_classes == 3
    assert model.model_args == {"width": 8, "num_classes": 3, "in_chans": 1, "mean": [0.286], "std": [0.353]}


def test_normalisation_inside_the_model():
    model = timm.create_model("preact_resnet18", width=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert torch.allclose(model.normalize(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))
    assert model.pretrained_cfg["mean"] == (0.0, 0.0, 0.0) and model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert set(model.state_dict()) >= {"normalize.mean", "normalize.std"}
    cifar = timm.create_model("preact_resnet18", width=4)
    assert torch.allclose(cifar.normalize.mean.flatten(), torch.tensor(STATS["cifar10"][0]))


def test_export_round_trip_and_local_weights(tmp_path):
    model = timm.create_model("preact_resnet18", width=4, in_chans=1, mean=FM_MEAN, std=FM_STD).eval()
    export_model(model, tmp_path / "m")
    again = load_exported(tmp_path / "m")
    overlay = timm.create_model("preact_resnet18", width=4, in_chans=1, mean=FM_MEAN, std=FM_STD, pretrained=True,
                                pretrained_cfg_overlay=dict(file=str(tmp_path / "m" / "model.safetensors"))).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), again(x)) and torch.equal(model(x), overlay(x))
    assert isinstance(again, PreActResNet) and again.model_args == model.model_args


def test_darts_only_arguments_are_refused_by_timm_and_dropped_by_create():
    with pytest.raises(TypeError, match="unexpected model arguments: init_channels, layers"):
        timm.create_model("preact_resnet18", init_channels=8, layers=5)
    model = create("preact_resnet18", init_channels=8, layers=5, auxiliary=False, drop_path_rate=0.1, width=4,
                   num_classes=10, in_chans=1, mean=FM_MEAN, std=FM_STD)
    assert model.model_args["width"] == 4 and model.model_args["in_chans"] == 1
    with pytest.raises(ValueError, match="width sizes preact_resnet18; racl is sized by init_channels and layers"):
        create("racl", width=8)
    with pytest.raises(ValueError, match="width must be an integer >= 2"):
        create("preact_resnet18", width=1)


def test_training_driver_builds_it():
    from wsr_bench.train.driver import build_model

    cfg = load_config(None, [])
    splits = types.SimpleNamespace(num_classes=10, in_chans=1, mean=FM_MEAN, std=FM_STD)
    model = build_model("preact_resnet18", cfg, splits)  # cfg.model's C/cells/auxiliary/drop-path do not apply
    assert isinstance(model, PreActResNet) and model.model_args["width"] == 64 and model.model_args["in_chans"] == 1


def test_registered_and_listed(capsys, monkeypatch):
    import wsr_bench.models.catalog as catalog

    assert "preact_resnet18" in REGISTERED_MODELS
    monkeypatch.setattr(catalog, "REGISTERED_MODELS", ("racl", "preact_resnet18"))  # the full table builds them all
    rows = catalog.model_table()
    assert rows[1] == {"name": "preact_resnet18", "size": "width=64", "init_channels": None, "layers": None,
                       "width": 64, "params_m": GOLDEN_PARAMS / 1e6, "paper_params_m": None,
                       "source": catalog._SOURCES["preact_resnet18"]}
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "racl             C=36 L=20" in out and "preact_resnet18  width=64     11.172" in out
    assert "published pretrained tags" in out

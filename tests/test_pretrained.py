"""Published pretrained tags: publishing into a weights folder, timm registration from the manifest, offline
``create_model("<architecture>.<tag>", pretrained=True)``, checked files, and tags as model names everywhere."""

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import wsr_bench.data.fashion_mnist as fm
import wsr_bench.models  # noqa: F401
from wsr_bench.cli import main
from wsr_bench.data.datasets import STATS
from wsr_bench.evaluate.model_loading import check_model_spec, exported_image_size, load_eval_model
from wsr_bench.jobs.publishing import publish_weights
from wsr_bench.models import WeightsFileError, pretrained
from wsr_bench.models.catalog import create
from wsr_bench.search_space import known_genotypes

FM_MEAN, FM_STD = STATS["fashion_mnist"]
NAME = "wsrnet_basic.fmnist_test"


@pytest.fixture
def weights(tmp_path):
    """An empty weights folder registered as the active one; the package's is registered again afterwards."""
    folder = tmp_path / "weights"
    folder.mkdir()
    pretrained.register_published(folder)
    yield folder
    pretrained.register_published()


def _tiny(arch="wsrnet_basic", **kwargs):
    torch.manual_seed(1)
    model = timm.create_model(arch, in_chans=1, num_classes=10, mean=FM_MEAN, std=FM_STD, **kwargs)
    for m in model.modules():  # non-trivial BN statistics, so the round trip covers buffers
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    return model.eval()


def _publish(weights, model=None, arch="wsrnet_basic", tag="fmnist_test", **fields):
    model = model if model is not None else _tiny(init_channels=4, layers=3)
    fields = {"dataset": "fashion_mnist", "recipe": "PGD-7 (eps 0.1), 1 epoch", "entry": "lb/e.json", **fields}
    path = publish_weights(model, arch, tag, weights_dir=weights, **fields)
    pretrained.register_published(weights)
    return model, path


def _same(a, b, chans=1, side=28):
    x = torch.rand(3, chans, side, side)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_publish_writes_weights_and_manifest(weights):
    model, path = _publish(weights, clean_accuracy=0.5, avg_robust_accuracy=0.25)
    assert path == weights / f"{NAME}.safetensors" and path.is_file()
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["format"] == "wsr-bench-weights/1" and list(manifest["tags"]) == [NAME]
    record = manifest["tags"][NAME]
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["model_args"] == {"init_channels": 4, "layers": 3, "stem": "cifar", "mean": [0.286],
                                    "std": [0.353]}
    assert (record["architecture"], record["tag"], record["file"], record["num_classes"], record["input_size"]) == (
        "wsrnet_basic", "fmnist_test", path.name, 10, [1, 28, 28])
    assert (record["dataset"], record["license"], record["entry"], record["clean_accuracy"]) == (
        "fashion_mnist", "mit", "lb/e.json", 0.5)
    assert record["params"] == sum(p.numel() for p in model.parameters())
    assert pretrained.published_tags() == manifest["tags"]
    assert pretrained.weights_path(NAME) == path and pretrained.weights_size() == path.stat().st_size
    # a second publication (the accuracies, once evaluated) replaces the record
    _publish(weights, model, clean_accuracy=0.75, avg_robust_accuracy=0.5)
    tags = pretrained.read_manifest(weights)
    assert list(tags) == [NAME] and tags[NAME]["clean_accuracy"] == 0.75


def test_create_model_with_the_tag_loads_the_published_weights(weights):
    model, path = _publish(weights)
    again = timm.create_model(NAME, pretrained=True).eval()
    assert _same(model, again)
    cfg = again.pretrained_cfg
    assert (cfg["architecture"], cfg["tag"], cfg["file"]) == ("wsrnet_basic", "fmnist_test", str(path))
    assert cfg["input_size"] == (1, 28, 28) and cfg["mean"] == (0.0,) and cfg["std"] == (1.0,)
    assert cfg["num_classes"] == 10 and cfg["pool_size"] == (7, 7) and cfg["license"] == "mit"
    assert cfg["notes"] == ("PGD-7 (eps 0.1), 1 epoch", "leaderboard entry: lb/e.json")
    assert "normalises inside" in cfg["description"] and "(0.286,)" in cfg["description"]
    assert again.model_args["init_channels"] == 4 and torch.allclose(again.normalize.mean, torch.tensor(0.286))
    # explicit arguments win over the manifest's; without pretrained nothing is loaded
    assert timm.create_model(NAME, layers=4).model_args["layers"] == 4


def test_list_pretrained_and_the_untagged_name_keep_their_behaviour(weights):
    assert timm.list_pretrained("*fmnist*") == []
    _publish(weights)
    assert timm.list_pretrained("*fmnist*") == [NAME] and timm.is_model_pretrained(NAME)
    plain = timm.create_model("wsrnet_basic", init_channels=4, layers=3)
    assert plain.pretrained_cfg["tag"] == "untrained" and plain.model_args["in_chans"] == 3
    with pytest.raises(ValueError, match=f"published tag \\({NAME}\\).*pretrained_cfg_overlay"):
        timm.create_model("wsrnet_basic", pretrained=True)
    pretrained.register_published(weights.parent)  # a folder without a manifest: no tags
    assert timm.list_pretrained("*fmnist*") == [] and pretrained.published_tags() == {}


def test_generic_wsrnet_tag_brings_its_genotype(weights):
    geno = known_genotypes()["advrush"].genotype
    model, _ = _publish(weights, _tiny("wsrnet", genotype=geno, init_channels=4, layers=3), arch="wsrnet")
    assert pretrained.read_manifest(weights)["wsrnet.fmnist_test"]["model_args"]["genotype"] == geno.to_dict()
    again = timm.create_model("wsrnet.fmnist_test", pretrained=True).eval()
    assert again.genotype == geno and _same(model, again)
    assert timm.create_model("wsrnet.fmnist_test", genotype="racl").genotype.name == "racl"  # explicit wins


def test_preact_resnet_tag(weights):
    model, _ = _publish(weights, _tiny("preact_resnet18", width=4), arch="preact_resnet18")
    assert pretrained.read_manifest(weights)["preact_resnet18.fmnist_test"]["model_args"] == {
        "width": 4, "mean": [0.286], "std": [0.353]}
    again = timm.create_model("preact_resnet18.fmnist_test", pretrained=True).eval()
    assert _same(model, again) and again.pretrained_cfg["pool_size"] == (4, 4)


def test_training_only_parts_are_not_published(weights):
    from safetensors.torch import load_file

    model, path = _publish(weights, _tiny(init_channels=4, layers=3, auxiliary=True, drop_path_rate=0.2))
    assert not any(k.startswith("auxiliary_head.") for k in load_file(str(path)))
    again = timm.create_model(NAME, pretrained=True).eval()
    assert again.auxiliary_head is None and again.drop_path_prob == 0.0 and _same(model, again)
    assert pretrained.published_tags()[NAME]["params"] == sum(p.numel() for p in again.parameters())


def test_publish_refuses_what_would_not_rebuild(weights):
    with pytest.raises(ValueError, match="pretrained tag must be"):
        _publish(weights, tag="a.b")
    with pytest.raises(ValueError, match="not wsrnet_basic's"):
        _publish(weights, _tiny("racl", init_channels=4, layers=3))
    with pytest.raises(ValueError, match="unknown architecture 'resnet_wsr'"):
        _publish(weights, arch="resnet_wsr")
    assert pretrained.read_manifest(weights) == {}


def test_missing_file_is_a_one_line_error(weights):
    _, path = _publish(weights)
    path.unlink()
    with pytest.raises(FileNotFoundError) as exc:
        timm.create_model(NAME, pretrained=True)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message and NAME in message and "missing" in message


def test_damaged_file_is_a_one_line_error(weights):
    _, path = _publish(weights)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError) as exc:
        timm.create_model(NAME, pretrained=True)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message and "is damaged: sha256" in message
    assert "differs from the manifest's" in message
    path.unlink()
    path.mkdir()  # unreadable
    with pytest.raises(WeightsFileError, match="unreadable"):
        timm.create_model(NAME, pretrained=True)


def test_unknown_tag_lists_the_published_ones(weights):
    _publish(weights)
    for call in (lambda: timm.create_model("wsrnet_basic.nope"), lambda: create("wsrnet_basic.nope"),
                 lambda: check_model_spec("wsrnet_basic.nope")):
        with pytest.raises(ValueError) as exc:
            call()
        assert "unknown pretrained tag 'nope' of wsrnet_basic" in str(exc.value) and NAME in str(exc.value)
        assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="published tags of racl: none"):
        create("racl.nope")
    assert create("wsrnet_basic.untrained", init_channels=4, layers=3).pretrained_cfg["tag"] == "untrained"


def test_malformed_manifest(weights):
    (weights / "manifest.json").write_text('{"format": "other", "tags": {}}')
    with pytest.raises(ValueError, match="manifest.json is malformed"):
        pretrained.register_published(weights)
    (weights / "manifest.json").write_text(json.dumps({"format": pretrained.FORMAT, "tags": {
        "racl.x": {"architecture": "racl", "tag": "x", "file": "../evil.safetensors", "sha256": "0",
                   "model_args": {}, "num_classes": 10, "input_size": [1, 28, 28]}}}))
    with pytest.raises(ValueError, match="expected a plain file name"):
        pretrained.read_manifest(weights)


def test_environment_variable_names_the_weights_folder(weights, monkeypatch):
    _publish(weights)
    pretrained.register_published(weights.parent)
    monkeypatch.setenv(pretrained.ENV_VAR, str(weights))
    assert pretrained.register_published() == [NAME] and pretrained.active_weights_dir() == weights


def test_tags_register_at_import(weights):
    """The import-time path (the modules' ``generate_default_cfgs`` dicts), in a fresh interpreter."""
    _publish(weights)
    script = ("import json, timm, wsr_bench.models\n"
              f"m = timm.create_model({NAME!r}, pretrained=True)\n"
              "print(json.dumps([timm.list_pretrained('*fmnist*'), m.model_args['in_chans'], "
              "timm.create_model('wsrnet_basic', init_channels=4, layers=3).pretrained_cfg['tag']]))")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, pretrained.ENV_VAR: str(weights), "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=repo,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[NAME], 1, "untrained"]


def test_catalog_create_and_load_eval_model(weights):
    model, _ = _publish(weights)
    assert _same(model, create(NAME, pretrained=True).eval())
    loaded = load_eval_model(NAME, dataset="fashion_mnist", num_classes=10, in_chans=1, mean=(0.5,), std=(0.5,))
    assert (loaded.name, loaded.architecture, loaded.source) == (NAME, "wsrnet_basic", "timm")
    assert torch.allclose(loaded.model.normalize.mean, torch.tensor(0.286))  # the tag's statistics, not the given
    assert _same(model, loaded.model)
    assert exported_image_size(NAME) == 28 and exported_image_size("wsrnet_basic") is None
    with pytest.raises(ValueError, match="was trained on fashion_mnist .1 channel"):
        load_eval_model(NAME, dataset="cifar10", num_classes=10, in_chans=3)


def _write_fake_fashion(folder, n=12):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        x, y = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
        for stem, array in zip(fm.FILES[split], (x, y), strict=True):
            header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (folder / f"{stem}.gz").write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_cli_eval_of_a_tag_at_its_native_size(weights, tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "no-system-copy")
    _write_fake_fashion(tmp_path / "fm")
    _publish(weights)
    out = tmp_path / "entry.json"
    assert main(["eval", "--model", NAME, "--dataset", "fashion_mnist", "--data-root", str(tmp_path / "fm"), "--eps",
                 "0.1", "--steps", "1", "--n-examples", "4", "--no-progress", "--no-sanity", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())
    assert entry["evaluation"]["image_size"] == 28 and entry["architecture"] == "wsrnet_basic"
    assert entry["model"] == NAME


def test_cli_models_lists_the_published_tags(weights, capsys, monkeypatch):
    import wsr_bench.models.catalog as catalog

    _, path = _publish(weights, clean_accuracy=0.8125, avg_robust_accuracy=0.4375)
    monkeypatch.setattr(catalog, "REGISTERED_MODELS", ("racl",))  # the full table builds every model
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    size_mb = path.stat().st_size / 1e6
    assert f"published pretrained tags: 1, weights {size_mb:.2f} MB in all" in out
    line = next(ln for ln in out.splitlines() if ln.startswith(NAME))
    assert line.split()[1:5] == [f"{catalog.pretrained.published_tags()[NAME]['params'] / 1e6:.3f}",
                                 "fashion_mnist", "81.25", "43.75"]
    assert line.endswith("PGD-7 (eps 0.1), 1 epoch")


def test_shipped_weights_match_their_manifest():
    folder = pretrained.package_weights_dir()
    tags = pretrained.read_manifest(folder)
    assert tags, "the shipped manifest lists no tags: the published zoo is missing from the package"
    for name, record in tags.items():
        path = folder / record["file"]
        assert path.is_file(), f"{name}: {path} is missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"], f"{name}: {path} is damaged"
        assert record["input_size"] == [1, 28, 28] and record["num_classes"] == 10
    assert pretrained.weights_size(folder) <= 20e6

"""Fashion-MNIST: IDX reading, folder lookup, splits, resizing, 1-channel models, and one-line errors through
the CLI. Fake IDX files stand in for the real ones; the real-data test runs where ``make data`` installed them."""

import gzip
import json

import numpy as np
import pytest
import timm
import torch

import wsr_bench.data.fashion_mnist as fm
from wsr_bench.cli import main
from wsr_bench.config import ConfigError, load_config
from wsr_bench.data.datasets import STATS, DataError, as_tensors, load_dataset, make_loader
from wsr_bench.models import NON_DARTS_MODELS, REGISTERED_MODELS

STEMS = [s for pair in fm.FILES.values() for s in pair]


def _idx(array: np.ndarray) -> bytes:
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fake(folder, n_train=40, n_test=20, gz=True, seed=0):
    """Four IDX files of random 28x28 images and labels 0-9 in ``folder``; returns the train images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
        arrays.update({fm.FILES[split][0]: x, fm.FILES[split][1]: y})
    for stem, array in arrays.items():
        data = _idx(array)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return arrays[fm.FILES["train"][0]]


@pytest.fixture
def no_system_copy(tmp_path, monkeypatch):
    """Hide Debian's copy, so lookups see only the test's folders."""
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "no-system-copy")


def test_native_splits_shapes_and_values(tmp_path, no_system_copy):
    x_train = write_fake(tmp_path / "fm")
    s = load_dataset("fashion_mnist", root=tmp_path / "fm", seed=3)
    assert (s.in_chans, s.image_size, s.num_classes, s.mean, s.std) == (1, 28, 10, *STATS["fashion_mnist"])
    assert len(s.train_t) == len(s.train_v) == 20 and len(s.test) == 20
    assert set(s.train_t.indices).isdisjoint(s.train_v.indices)
    x, y = as_tensors(s.train_t)
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    i = s.train_t.indices[0]
    assert torch.equal(x[0, 0], torch.from_numpy(x_train[i]).float() / 255) and int(y[0]) == i % 10
    again = load_dataset("fashion_mnist", root=tmp_path / "fm", seed=3)
    assert again.train_t.indices == s.train_t.indices
    batch = next(iter(make_loader(s.train_t, 8)))  # the batched __getitems__ path
    assert torch.equal(batch[0], x[:8]) and torch.equal(batch[1], y[:8])


def test_resize_and_limit(tmp_path, no_system_copy):
    write_fake(tmp_path / "fm")
    s = load_dataset("fashion_mnist", root=tmp_path / "fm", image_size=16, limit=5)
    x, _ = as_tensors(s.test)
    assert s.image_size == 16 and x.shape == (5, 1, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert len(s.train_t) == len(s.train_v) == 5
    assert load_dataset("fashion_mnist", root=tmp_path / "fm", image_size=28).train_t.dataset.x.dtype == torch.uint8


@pytest.mark.parametrize("layout, gz", [("", True), ("fashion-mnist", True), ("FashionMNIST/raw", False)])
def test_folder_layouts(tmp_path, no_system_copy, layout, gz):
    write_fake(tmp_path / "data" / layout, gz=gz)
    assert fm.find_folder(tmp_path / "data") == tmp_path / "data" / layout
    assert len(load_dataset("fashion_mnist", root=tmp_path / "data").test) == 20


def test_falls_back_to_the_system_copy(tmp_path, monkeypatch):
    write_fake(tmp_path / "system")
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")
    assert fm.find_folder(tmp_path / "empty") == tmp_path / "system"


def _corrupt(folder, kind):
    images = folder / (fm.FILES["train"][0] + ".gz")
    data = gzip.decompress(images.read_bytes())
    if kind == "magic":
        images.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + data[4:]))
    elif kind == "truncated":
        images.write_bytes(gzip.compress(data[:-100]))
    elif kind == "truncated_gzip":
        images.write_bytes(images.read_bytes()[:200])
    elif kind == "counts":
        labels = folder / (fm.FILES["train"][1] + ".gz")
        labels.write_bytes(gzip.compress(_idx(np.zeros(39))))
    elif kind == "partial":
        images.unlink()


ERRORS = {
    "magic": "is not an IDX file of 3-d uint8 data: magic number 2049, expected 2051",
    "truncated": "is truncated or damaged: its header promises 40x28x28",
    "truncated_gzip": "cannot be read",
    "counts": "holds 40 images but .* holds 39 labels",
    "partial": "lacks train-images-idx3-ubyte",
    "missing": "fashion_mnist not found in .* nor in .*no-system-copy; run `make data`",
}


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_bad_files_are_one_line_errors(tmp_path, no_system_copy, kind):
    if kind != "missing":
        write_fake(tmp_path / "fm")
        _corrupt(tmp_path / "fm", kind)
    with pytest.raises(DataError, match=ERRORS[kind]) as info:
        load_dataset("fashion_mnist", root=tmp_path / "fm")
    assert "\n" not in str(info.value)


CLI_ERRORS = {"magic": "is not an IDX file", "counts": "images but", "missing": "fashion_mnist not found in",
              "image_size": "data.image_size must be >= 8 or null"}


@pytest.mark.parametrize("kind", sorted(CLI_ERRORS))
def test_cli_reports_bad_data_with_exit_code_2(tmp_path, no_system_copy, capsys, kind):
    if kind in ("magic", "counts"):
        write_fake(tmp_path / "fm")
        _corrupt(tmp_path / "fm", kind)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("device: cpu\n")
    sets = ["data.name=fashion_mnist", f"data.root={tmp_path / 'fm'}", "data.image_size=0" if kind == "image_size"
            else "data.image_size=16"]
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)]]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and CLI_ERRORS[kind] in last


def test_image_size_zero_is_refused():
    with pytest.raises(DataError, match="image_size must be >= 1"):
        load_dataset("fashion_mnist", image_size=0)
    with pytest.raises(ConfigError, match="data.image_size must be >= 8 or null"):
        load_config(None, ["data.name=fashion_mnist", "data.image_size=-1"])
    cfg = load_config(None, ["data.name=fashion_mnist", "data.image_size=null"])
    assert cfg.data.name == "fashion_mnist" and cfg.data.image_size is None


@pytest.mark.parametrize("name", REGISTERED_MODELS)
def test_every_model_takes_one_channel(name):
    sizing = {"width": 4} if name in NON_DARTS_MODELS else {"init_channels": 4, "layers": 3}
    model = timm.create_model(name, in_chans=1, num_classes=10, **sizing,
                              mean=STATS["fashion_mnist"][0], std=STATS["fashion_mnist"][1]).eval()
    for side in (16, 28):
        out = model(torch.rand(2, 1, side, side))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_cli_train_then_eval_on_fake_fashion(tmp_path, no_system_copy, capsys):
    write_fake(tmp_path / "fm", n_train=24, n_test=12)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"device: cpu\ndata: {{name: fashion_mnist, root: {tmp_path / 'fm'}, image_size: 16, "
                   f"batch_size: 6}}\nmodel: {{init_channels: 4, layers: 3}}\n"
                   f"train: {{epochs: 1, steps: 1, eval_examples: 4, eval_steps: 1}}\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--model", "racl", "--no-progress"]) == 0
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["model_args"]["in_chans"] == 1 and config["model_args"]["mean"] == [0.286]
    assert main(["eval", "--model", str(tmp_path / "run" / "model"), "--dataset", "fashion_mnist", "--data-root",
                 str(tmp_path / "fm"), "--eps", "0.03,0.1", "--steps", "2", "--n-examples", "8", "--no-progress",
                 "--no-sanity", "--out", str(tmp_path / "entry.json")]) == 0
    entry = json.loads((tmp_path / "entry.json").read_text())
    assert entry["dataset"] == "fashion_mnist" and entry["n_examples"] == 8
    assert config["wsr_bench"]["image_size"] == 16 and entry["evaluation"]["image_size"] == 16  # as trained
    args = ["eval", "--dataset", "fashion_mnist", "--data-root", str(tmp_path / "fm"), "--eps", "0.1", "--steps", "1",
            "--n-examples", "4", "--no-progress", "--no-sanity", "--force", "--out", str(tmp_path / "entry.json")]
    assert main(args + ["--model", str(tmp_path / "run" / "model"), "--image-size", "20"]) == 0  # asked for
    assert json.loads((tmp_path / "entry.json").read_text())["evaluation"]["image_size"] == 20
    del config["wsr_bench"]["image_size"]  # an export that does not record its size: Fashion-MNIST's own 28
    (tmp_path / "run" / "model" / "config.json").write_text(json.dumps(config))
    assert main(args + ["--model", str(tmp_path / "run" / "model")]) == 0
    assert json.loads((tmp_path / "entry.json").read_text())["evaluation"]["image_size"] == 28


@pytest.mark.skipif(not fm.SYSTEM_DIR.is_dir(), reason="Fashion-MNIST not installed (make data)")
def test_real_fashion_mnist():
    s = load_dataset("fashion_mnist", root="/nonexistent", seed=0)
    assert (len(s.train_t), len(s.train_v), len(s.test), s.image_size) == (30000, 30000, 10000, 28)
    x = s.train_t.dataset.x.float() / 255
    assert x.shape == (60000, 1, 28, 28) and torch.bincount(s.test.y).tolist() == [1000] * 10
    assert (round(float(x.mean()), 4), round(float(x.std()), 4)) == (STATS["fashion_mnist"][0][0],
                                                                      STATS["fashion_mnist"][1][0])

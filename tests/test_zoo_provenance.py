"""Provenance of the published zoo: every shipped weights file is the one its leaderboard entries evaluated, each tag
loaded through timm predicts what its entry recorded, and every published model comes from the committed config.

These tests read the committed ``wsr_bench/weights/`` and ``leaderboard/`` as they are (an empty manifest fails: the
zoo is published); the prediction test needs Fashion-MNIST (``make data``) and is skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import wsr_bench.models  # noqa: F401  (timm registration)
from wsr_bench.config import load_config
from wsr_bench.leaderboard.entry_files import load_entries
from wsr_bench.models import pretrained

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "zoo_fashion.yaml"


def shipped() -> dict[str, dict]:
    """The shipped manifest's tags; the zoo has published models, so an empty manifest is a lost publication."""
    tags = pretrained.read_manifest(pretrained.package_weights_dir())
    assert tags, "wsr_bench/weights/manifest.json lists no tags: the published zoo is missing from the package"
    return tags


def entries_of(name: str) -> list:
    return [e for e in load_entries(ROOT / "leaderboard") if e.model == name]


def fashion_available() -> bool:
    from wsr_bench.data.datasets import DataError, load_dataset

    try:
        load_dataset("fashion_mnist", root=str(ROOT / "data"), limit=1)
    except DataError:
        return False
    return True


def test_every_shipped_tag_has_entries_that_evaluated_its_file():
    tags = shipped()
    for name, record in tags.items():
        sha = pretrained.file_sha256(pretrained.package_weights_dir() / record["file"])
        assert sha == record["sha256"], f"{name}: the shipped file differs from the manifest"
        found = entries_of(name)
        assert found, f"{name}: no leaderboard entry under leaderboard/entries/"
        for entry in found:
            assert entry.evaluation["weights_sha256"] == sha, f"{name}: an entry evaluated other weights"
            assert entry.evaluation["weights_file"] == record["file"]
        if record["entry"]:
            assert (ROOT / record["entry"]).is_file(), f"{name}: the manifest's entry {record['entry']} is missing"


def test_every_shipped_tag_was_built_from_the_committed_config():
    from wsr_bench.jobs.zoo import member_config, recipe_text

    tags = shipped()
    cfg = load_config(CONFIG)
    members = {m.name: m for m in cfg.zoo.models}
    for name, record in tags.items():
        assert name in members, f"{name} is published but not in {CONFIG.name}"
        recipe = recipe_text(member_config(cfg, members[name]), members[name])
        assert record["recipe"] == recipe, f"{name}: trained with another recipe than the config's"
        assert record["model_args"].get("init_channels", cfg.model.init_channels) == cfg.model.init_channels
        for entry in entries_of(name):
            assert entry.training == record["recipe"]
            assert entry.notes.startswith(f"wsr-bench zoo {cfg.name}:")


def test_each_tag_predicts_what_its_entries_recorded_on_the_first_200_test_images():
    """Each published tag, loaded through timm, classifies the first 200 Fashion-MNIST test images as its entries
    recorded (a changed weights file, model or preprocessing fails here). The only skip: the dataset is not installed,
    so there are no images to predict; `make data` installs it, and CI's `.ci/run` runs `make data` first."""
    tags = shipped()
    if not fashion_available():
        pytest.skip("Fashion-MNIST is not installed (make data); the predictions cannot be compared")
    from wsr_bench.data.datasets import as_tensors, load_dataset

    splits = load_dataset("fashion_mnist", root=str(ROOT / "data"))
    x, y = as_tensors(splits.test, 200)
    for name in tags:
        model = timm.create_model(name, pretrained=True).eval()
        with torch.no_grad():
            correct = (model(x).argmax(1) == y).tolist()
        for entry in entries_of(name):
            s = entry.samples
            assert s is not None and list(s.indices[:200]) == list(range(200))
            recorded = [b is None or b > 0 for b in s.break_eps[:200]]  # 0: misclassified clean
            assert correct == recorded, f"{name}: clean predictions differ from {entry.evaluation.get('suite')!r}"


@pytest.mark.parametrize("page", ["README.md", "docs/zoo.md"])
def test_the_zoo_table_of_the_docs_is_the_one_the_committed_entries_give(page, monkeypatch):
    from wsr_bench.jobs.zoo_summary import summary_filled

    monkeypatch.chdir(ROOT)  # the config names its leaderboard relative to the repository root
    text, regenerated = summary_filled(load_config(CONFIG), page)
    assert text == regenerated, (f"{page}'s zoo table is out of step with leaderboard/entries: run `wsr-bench zoo "
                                 f"configs/zoo_fashion.yaml --write-summary {page}`")

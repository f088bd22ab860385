"""``wsr-bench zoo``: a tiny zoo on digits, end to end: search, training, publication as timm tags, AutoAttack and
PGD entries that name the weights' sha256, the leaderboard with its two sections; a second run skips what is
published; ``--only`` and its errors."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import yaml

from wsr_bench.cli import main
from wsr_bench.config import ConfigError, load_config
from wsr_bench.jobs.zoo import build_zoo, entry_paths, zoo_cost
from wsr_bench.jobs.zoo_summary import write_summary, zoo_summary
from wsr_bench.leaderboard.entry_files import load_entry
from wsr_bench.models import pretrained


def tiny_zoo(tmp_path) -> dict:
    return {
        "name": "tiny-zoo", "seed": 0, "device": "cpu",
        "data": {"name": "digits", "image_size": 16, "batch_size": 64, "eval_batch_size": 64},
        "model": {"init_channels": 4, "layers": 3},
        "train": {"recipe": "pgd", "epochs": 1, "lr": 0.05, "eps": 0.1, "steps": 1, "eval_examples": 0},
        "eval": {"eps": [0.05, 0.2], "steps": 2},
        "search": {"init_channels": 4, "layers": 3, "population": 1, "search_steps": 1, "train_limit": 32,
                   "val_limit": 16, "train_steps": 1, "attack_steps": 1, "ane": {"batch": 4, "fill_batches": 1},
                   "vle": {"warmup_passes": 2, "passes": 1}, "progress": False},
        "zoo": {"models": [{"architecture": "darts_v2", "tag": "tiny_pgd"},
                           {"architecture": "wsrnet", "tag": "tiny_pgd", "genotype": "search"},
                           {"architecture": "darts_v2", "tag": "tiny_clean", "recipe": "clean"}],
                "leaderboard": str(tmp_path / "lb"), "weights_dir": str(tmp_path / "weights"),
                "autoattack_examples": 6, "pgd_examples": 12, "pgd_steps": 2},
    }


def one_model_zoo(tmp_path):
    """The tiny zoo cut to its first model (darts_v2.tiny_pgd), as a loaded config."""
    raw = tiny_zoo(tmp_path)
    raw["zoo"]["models"] = raw["zoo"]["models"][:1]
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@pytest.fixture
def restore_registry():
    yield
    pretrained.register_published(pretrained.default_weights_dir())


def test_tiny_zoo_builds_publishes_and_skips(tmp_path, restore_registry, capsys):
    raw = tiny_zoo(tmp_path)
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    stages = build_zoo(cfg, tmp_path / "run", progress=False)
    assert [s.name for s in stages] == ["darts_v2.tiny_pgd", "wsrnet.tiny_pgd", "darts_v2.tiny_clean"]
    assert not any(s.skipped for s in stages) and all(s.cpu_seconds > 0 for s in stages)
    manifest = pretrained.read_manifest(tmp_path / "weights")
    x = torch.rand(4, 3, 16, 16)
    for s in stages:
        info = manifest[s.name]
        assert pretrained.file_sha256(tmp_path / "weights" / info["file"]) == info["sha256"]
        aa, pgd = load_entry(s.aa_entry), load_entry(s.pgd_entry)
        assert aa.evaluation["weights_sha256"] == pgd.evaluation["weights_sha256"] == info["sha256"]
        assert aa.n_examples == 6 and pgd.n_examples == 12 and pgd.suite == "PGD-2, first 12 test images"
        assert aa.suite == "" and "autoattack" in aa.curves and "pgd" in pgd.curves
        assert info["clean_accuracy"] == pytest.approx(aa.clean_accuracy)
        model = timm.create_model(s.name, pretrained=True).eval()  # the published tag, offline
        assert model(x).shape == (4, 10)
    assert manifest["wsrnet.tiny_pgd"]["model_args"]["genotype"] == json.loads(
        (tmp_path / "run" / "genotype.json").read_text()) | {"name": manifest["wsrnet.tiny_pgd"]["model_args"][
            "genotype"].get("name")}
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert "## digits / Linf / PGD-2, first 12 test images" in readme and "darts_v2.tiny_clean" in readme
    assert zoo_cost(tmp_path / "run")["cpu_seconds"] > 0
    again = build_zoo(cfg, tmp_path / "run", progress=False)
    assert all(s.skipped for s in again)
    assert main(["zoo", str(path), "--out", str(tmp_path / "run"), "--only", "darts_v2.tiny_clean",
                 "--no-progress"]) == 0
    assert "published before" in capsys.readouterr().out


def test_a_damaged_weights_file_is_built_again(tmp_path, restore_registry):
    cfg = one_model_zoo(tmp_path)
    build_zoo(cfg, tmp_path / "run", progress=False)
    weights = tmp_path / "weights" / "darts_v2.tiny_pgd.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    assert not build_zoo(cfg, tmp_path / "run", progress=False)[0].skipped  # republished from the trained run
    info = pretrained.read_manifest(tmp_path / "weights")["darts_v2.tiny_pgd"]
    assert pretrained.file_sha256(weights) == info["sha256"]
    assert load_entry(entry_paths(cfg, "darts_v2.tiny_pgd")[0]).evaluation["weights_sha256"] == info["sha256"]


def test_bad_zoo_configs_and_names_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="architecture wsrnet needs genotype: search"):
        load_config(None, ["zoo.models=[{architecture: wsrnet}]"])
    with pytest.raises(ConfigError, match="zoo.models lists a name twice"):
        load_config(None, ["zoo.models=[{architecture: racl}, {architecture: racl}]"])
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(tiny_zoo(tmp_path)))
    assert main(["zoo", str(path), "--out", str(tmp_path / "run"), "--only", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: --only nope: not in zoo.models (darts_v2.tiny_pgd")


def test_the_autoattack_entries_can_come_in_a_later_run(tmp_path, restore_registry):
    cfg = one_model_zoo(tmp_path)
    first = build_zoo(cfg, tmp_path / "run", progress=False, autoattack=False)[0]
    info = pretrained.read_manifest(tmp_path / "weights")["darts_v2.tiny_pgd"]
    assert first.pgd_entry.is_file() and not first.aa_entry.is_file()
    assert info["evaluation"] == "PGD-2, first 12 test images" and info["clean_accuracy"] is not None
    pgd_clean = f"{100 * load_entry(first.pgd_entry).clean_accuracy:.1f}"
    assert f"| PGD-2, 12 images (AutoAttack to come) | {pgd_clean} |" in zoo_summary(cfg)
    assert build_zoo(cfg, tmp_path / "run", progress=False, autoattack=False)[0].skipped
    second = build_zoo(cfg, tmp_path / "run", progress=False)[0]
    assert not second.skipped and second.aa_entry.is_file()
    info = pretrained.read_manifest(tmp_path / "weights")["darts_v2.tiny_pgd"]
    assert info["evaluation"] == "AutoAttack, first 6 test images"
    assert info["clean_accuracy"] == pytest.approx(load_entry(second.aa_entry).clean_accuracy)


def test_a_clean_member_attacks_at_the_zoo_radius_after_each_epoch(tmp_path, restore_registry):
    raw = tiny_zoo(tmp_path)
    raw["train"]["eval_examples"] = 8  # the end-of-epoch check the published zoo runs
    raw["zoo"]["models"] = raw["zoo"]["models"][2:]
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(raw))
    stage = build_zoo(load_config(path), tmp_path / "run", progress=False, autoattack=False)[0]
    last = json.loads((tmp_path / "run" / "train" / "darts_v2.tiny_clean" / "metrics.jsonl").read_text()
                      .splitlines()[-1])
    assert stage.pgd_entry.is_file() and last["eval_eps"] == 0.1 and "robust_acc" in last


def test_the_summary_table_follows_the_entries_and_fills_only_its_block(tmp_path, restore_registry):
    cfg = one_model_zoo(tmp_path)
    assert zoo_summary(cfg).startswith("0 of 1 models of `tiny-zoo` published")
    assert "| `darts_v2.tiny_pgd` | PGD-1 at 0.1, 1 epochs | not built yet |" in zoo_summary(cfg)
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("# Zoo\n\n<!-- zoo-table -->\nstale\n<!-- /zoo-table -->\n\nafter\n")
    assert write_summary(cfg, page) and not write_summary(cfg, page)  # a second write changes nothing
    text = page.read_text()
    assert "stale" not in text and text.endswith("<!-- /zoo-table -->\n\nafter\n") and "](../lb/README.md)" in text
    stage = build_zoo(cfg, tmp_path / "run", progress=False)[0]
    aa = load_entry(stage.aa_entry)
    assert zoo_summary(cfg).startswith("1 of 1 models")
    assert f"| AutoAttack, 6 images | {100 * aa.clean_accuracy:.1f} |" in zoo_summary(cfg)
    sanity = ", ".join(aa.flags) or "ok"  # the failed sanity checks travel with the row
    assert "| avg | sanity |" in zoo_summary(cfg) and f" | {sanity} |" in zoo_summary(cfg).splitlines()[-1]
    assert write_summary(cfg, page)
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="plain.md: no <!-- zoo-table -->"):
        write_summary(cfg, tmp_path / "plain.md")

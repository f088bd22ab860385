"""`wsr-bench run` end to end on tiny synthetic data: every artefact, resume by stage skipping, bad input."""

import json

import pytest
import timm

from wsr_bench.cli import main
from wsr_bench.models import load_exported

TINY = ["data.name=synthetic", "data.image_size=8", "data.limit=24", "data.batch_size=12",
        "search.init_channels=4", "search.layers=3", "search.population=2", "search.search_steps=1",
        "search.train_steps=1", "search.attack_steps=1", "search.vle.warmup_passes=3", "search.vle.passes=2",
        "search.ane.batch=4", "search.ane.fill_batches=1", "search.progress=false", "search.estimator=wa",
        "model.init_channels=4", "model.layers=3", "train.epochs=1", "train.steps=1", "train.eval_examples=8",
        "train.eval_steps=1", "eval.n_examples=12", "eval.steps=2", "eval.eps=[0.03, 0.25]", "eval.warm_start_steps=1",
        "run.baselines=[racl]"]


def _run(tmp_path, out):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("name: tiny\nseed: 0\ndevice: cpu\n")
    args = ["run", str(cfg), "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    return main(args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    out = tmp / "run"
    assert _run(tmp, out) == 0
    return tmp, out


def test_run_leaves_every_artefact(tiny_run):
    _, out = tiny_run
    for rel in ["config.yaml", "genotype.json", "model/model.safetensors", "model/config.json",
                "leaderboard/README.md", "leaderboard/index.html", "leaderboard/curves.png",
                "leaderboard/leaderboard.csv", "search/metrics.jsonl"]:
        assert (out / rel).is_file(), rel
    entries = sorted(p.stem for p in (out / "leaderboard" / "entries").rglob("*.json"))
    assert entries == ["racl", "wsrnet"]
    entry = json.loads(next((out / "leaderboard" / "entries").rglob("wsrnet.json")).read_text())
    assert 0.0 <= entry["clean_accuracy"] <= 1.0 and entry["dataset"] == "synthetic"
    assert entry["evaluation"]["settings"]["warm_start_steps"] == 1


def test_found_model_loads_with_timm(tiny_run):
    _, out = tiny_run
    model = load_exported(out / "model")
    genotype = json.loads((out / "genotype.json").read_text())
    assert model.genotype.to_dict()["normal"] == genotype["normal"]
    again = timm.create_model("wsrnet", genotype=str(out / "genotype.json"), init_channels=4, layers=3,
                              pretrained=True, pretrained_cfg_overlay={"file": str(out / "model/model.safetensors")})
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())


def test_rerun_skips_finished_stages(tiny_run, capsys):
    tmp, out = tiny_run
    before = (out / "stages.jsonl").read_text().splitlines()
    assert _run(tmp, out) == 0
    after = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()[len(before):]]
    skipped = {r["stage"]: r["skipped"] for r in after}
    assert skipped["search"] and skipped["train:wsrnet"] and skipped["train:racl"]
    assert skipped["eval:wsrnet"] and skipped["eval:racl"] and not skipped["leaderboard"]
    assert "wsrnet" in capsys.readouterr().out


def test_run_with_unknown_baseline_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run:\n  baselines: [resnet_wsr]\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "unknown model 'resnet_wsr'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

"""Wsr-NAS and the naive search end to end on a tiny super-network: outputs, exact resume, determinism, CLI and
bad input."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from wsr_bench.cli import main
from wsr_bench.config import load_config
from wsr_bench.data.datasets import DataError
from wsr_bench.search import PHASES, SearchCheckpointError, run_search
from wsr_bench.search_space.genotype import Genotype

TINY = {
    "name": "tiny", "seed": 0, "device": "cpu",
    "data": {"name": "digits", "image_size": 16, "batch_size": 32, "eval_batch_size": 64},
    "search": {"init_channels": 4, "layers": 3, "population": 2, "search_steps": 2, "train_limit": 64, "val_limit": 32,
               "train_steps": 2, "attack_steps": 2, "ane": {"batch": 4, "fill_batches": 1},
               "vle": {"warmup_passes": 5, "passes": 2}, "arch": {"lr": 0.01}, "progress": False},
}
NAIVE = ["search.method=naive", "search.n1=6", "search.n2=0", "search.estimator=none"]


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny super-network gains nothing from intra-op threads, and on a shared box they spin-wait (10x CPU)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def wsr_run(tiny_yaml, tmp_path_factory):
    out = tmp_path_factory.mktemp("wsr")
    torch.set_num_threads(1)
    genotype = run_search(load_config(tiny_yaml), out)
    return out, genotype


class _Stop(Exception):
    pass


def _stop_after(k):
    def callback(task, record):
        if task == k:
            raise _Stop

    return callback


def test_wsr_run_writes_every_output(wsr_run, tiny_yaml):
    out, genotype = wsr_run
    assert Genotype.from_json((out / "genotype.json").read_text()) == genotype
    tensors = load_file(str(out / "arch_weights.safetensors"))
    assert tensors["arch_weights"].shape == (2, 14, 8)
    assert (out / "arch_weights.png").read_bytes()[:4] == b"\x89PNG"
    assert load_config(out / "config.yaml") == load_config(tiny_yaml)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["warmup"] * 2 + ["population"] * 2 + ["vle_warmup"] + ["search"] * 2
    search = records[-1]
    assert set(search["seconds"]) == set(PHASES) and all(search["seconds"][p] > 0 for p in PHASES)
    assert list(search["losses"]) == ["natural", "0.03", "0.045", "0.06", "0.075", "0.09", "0.105"]
    assert search["objective_pred"] is not None and search["ane_loss"] is not None and search["vle_loss"] >= 0
    assert "search 2" in (out / "search.log").read_text()
    # EWSS moved A away from its near-zero initialisation
    assert tensors["arch_weights"].abs().max() > 0.01


def test_interrupted_run_resumes_to_the_same_genotype(wsr_run, tiny_yaml, tmp_path):
    reference, _ = wsr_run
    cfg = load_config(tiny_yaml)
    with pytest.raises(_Stop):
        run_search(cfg, tmp_path, callback=_stop_after(4))  # stopped after the VLE warm-up
    assert not (tmp_path / "genotype.json").exists()
    with pytest.raises(SearchCheckpointError, match="--resume"):
        run_search(cfg, tmp_path)
    run_search(cfg, tmp_path, resume=True)
    assert (tmp_path / "genotype.json").read_text() == (reference / "genotype.json").read_text()
    assert torch.equal(load_file(str(tmp_path / "arch_weights.safetensors"))["arch_weights"],
                       load_file(str(reference / "arch_weights.safetensors"))["arch_weights"])
    tasks = [json.loads(line)["task"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert tasks == list(range(7))


def test_same_seed_same_genotype_and_resume_checks_config(wsr_run, tiny_yaml, tmp_path):
    reference, _ = wsr_run
    run_search(load_config(tiny_yaml), tmp_path)
    assert (tmp_path / "genotype.json").read_text() == (reference / "genotype.json").read_text()
    with pytest.raises(SearchCheckpointError, match="search.nat_weight"):
        run_search(load_config(tiny_yaml, ["search.nat_weight=0.7", "search.robust_weight=0.3"]), tmp_path,
                   resume=True)
    # later stages' sections may change: resuming a finished search just rewrites its results
    again = run_search(load_config(tiny_yaml, ["train.epochs=3", "eval.steps=5"]), tmp_path, resume=True)
    assert again == Genotype.from_json((reference / "genotype.json").read_text())


def test_naive_search_resumes_and_writes_the_same_files(tiny_yaml, tmp_path):
    cfg = load_config(tiny_yaml, NAIVE + ["search.search_steps=1"])
    with pytest.raises(_Stop):
        run_search(cfg, tmp_path / "a", callback=_stop_after(2))
    resumed = run_search(cfg, tmp_path / "a", resume=True)
    assert run_search(cfg, tmp_path / "b") == resumed
    for name in ("genotype.json", "arch_weights.safetensors", "metrics.jsonl", "search.log", "arch_weights.png",
                 "config.yaml", "checkpoint.pt"):
        assert (tmp_path / "a" / name).exists(), name
    last = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["seconds"]["noise_gen"] > 0 and last["seconds"]["arch_update"] > 0
    assert last["seconds"]["ane"] == 0 and len(last["losses"]) == 7


def test_cli_search_prints_the_genotype(tiny_yaml, tmp_path, capsys):
    assert main(["search", str(tiny_yaml), "--out", str(tmp_path), "--set", "search.search_steps=1", "--set",
                 "search.estimator=wa", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wsr search" in out and "genotype.json" in out and "normal" in out
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r["phase"] == "population"][-1]
    assert last["ane_memory"] == 0 and last["ane_loss"] is None  # WA-ANE: nothing to train, no M_a


def test_cli_missing_dataset_is_one_line_error(tiny_yaml, tmp_path, capsys):
    code = main(["search", str(tiny_yaml), "--out", str(tmp_path / "run"), "--set", "data.name=cifar10",
                 "--set", f"data.root={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cifar10 data folder") and err.count("\n") == 1
    with pytest.raises(DataError):
        run_search(load_config(tiny_yaml, ["data.name=cifar10", f"data.root={tmp_path / 'nowhere'}"]), tmp_path)


@pytest.mark.parametrize(("overrides", "match"), [
    (["search.nat_weight=0.9"], "must equal 1"),
    (["search.strengths=[]"], "strengths is empty"),
    (["search.estimator=none"], "need an AN-Estimator"),
])
def test_cli_bad_search_config_is_one_line_error(tiny_yaml, tmp_path, capsys, overrides, match):
    args = ["search", str(tiny_yaml), "--out", str(tmp_path)]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1

"""``wsr-bench eval`` and ``wsr-bench leaderboard build``: tiny real runs and bad input."""

from __future__ import annotations

import json

import pytest
import timm
from _wsr_eval_fixtures import one_thread  # noqa: F401

import wsr_bench.models as wm
from wsr_bench.cli import main
from wsr_bench.leaderboard import load_entry


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny_wsrnet"
    wm.export_model(timm.create_model("wsrnet_basic", init_channels=4, layers=3, num_classes=10), folder)
    return folder


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_writes_an_entry_and_the_leaderboard_builds(exported, tmp_path, capsys):
    out = tmp_path / "lb" / "entries" / "digits" / "Linf" / "tiny.json"
    code, stdout, err = _run(capsys, "eval", "--model", str(exported), "--dataset", "digits", "--eps", "0.03,8/255",
                             "--attack", "fgsm,pgd", "--steps", "2", "--n-examples", "16", "--out", str(out),
                             "--name", "tiny", "--recipe", "untrained", "--no-progress", "--attack-all")
    assert code == 0, err
    assert "clean" in stdout and "8/255" in stdout and "worst_case" in stdout and f"wrote {out}" in stdout
    entry = load_entry(out)
    assert entry.model == "tiny" and entry.architecture == "wsrnet_basic" and entry.n_examples == 16
    assert entry.worst_case.eps_label == ["0.03", "8/255"] and set(entry.curves) == {"fgsm", "pgd", "worst_case"}
    assert entry.evaluation["model_spec"] == str(exported) and entry.sanity
    assert entry.evaluation["sweep"] == "attack-all" and entry.evaluation["image_size"] == 16
    assert isinstance(json.loads(out.read_text())["clean_accuracy"], float)
    assert "95% CI" in stdout and "clean" in stdout.splitlines()[0] and "[95% CI " in stdout.splitlines()[0]

    code, stdout, err = _run(capsys, "leaderboard", "build", str(tmp_path / "lb"))
    assert code == 0, err
    assert "1 entries" in stdout
    for name in ("README.md", "index.html", "curves.png", "leaderboard.csv"):
        assert (tmp_path / "lb" / name).is_file()
    assert "| tiny |" in (tmp_path / "lb" / "README.md").read_text()


def test_eps_stay_floats_from_the_command_line_to_the_attack(exported, tmp_path, capsys, monkeypatch):
    """``--eps`` is parsed once, in the CLI; the options, the sanity probe and every attack get floats."""
    import wsr_bench.attacks.factory as factory
    import wsr_bench.epsilon as epsilon

    seen: list[object] = []
    real = epsilon.parse_eps

    def spy(value, **kw):
        seen.append(value)
        return real(value, **kw)

    monkeypatch.setattr(epsilon, "parse_eps", spy)
    monkeypatch.setattr(factory, "parse_eps", spy)
    code, _, err = _run(capsys, "eval", "--model", str(exported), "--eps", "8/255,0.1", "--attack", "pgd", "--steps",
                        "1", "--n-examples", "4", "--no-progress")
    assert code == 0, err
    assert seen[:2] == ["8/255", "0.1"]  # the command line's text, parsed once
    assert all(type(v) is float for v in seen[2:]) and len(seen) > 4  # then floats: options, probe, attacks


def test_existing_output_is_refused_without_force(exported, tmp_path, capsys):
    out = tmp_path / "entry.json"
    out.write_text("{}")
    code, _, err = _run(capsys, "eval", "--model", str(exported), "--eps", "0.03", "--out", str(out))
    assert code == 2 and "already exists" in err and "--force" in err
    assert out.read_text() == "{}"
    code, _, err = _run(capsys, "eval", "--model", str(exported), "--eps", "0.03,0.1", "--n-examples", "4",
                        "--steps", "2", "--out", str(out), "--force", "--no-sanity", "--no-progress",
                        "--warm-start-steps", "1")
    assert code == 0, err
    entry = load_entry(out)
    assert entry.n_examples == 4 and entry.evaluation["settings"]["warm_start_steps"] == 1


@pytest.mark.parametrize("args, message", [
    (["--eps", "8"], "did you mean 8/255"),
    (["--eps", "0.03,-0.1"], "must be >= 0"),
    (["--attack", "pgdd"], "unknown attack 'pgdd'"),
    (["--threat-model", "L7"], "unknown threat model"),
    (["--n-examples", "0"], "--n-examples must be >= 1"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--warm-start-steps", "0"], "--warm-start-steps must be >= 1"),
    (["--warm-start-steps", "2", "--attack-all"], "and --attack-all off"),
    (["--sweep", "sideways"], "unknown sweep 'sideways'"),
    (["--sweep", "downward", "--attack-all"], "cannot be combined with --attack-all"),
    (["--image-size", "0"], "--image-size must be >= 1"),
])
def test_bad_eval_arguments_are_one_line_errors(exported, capsys, args, message):
    code, _, err = _run(capsys, "eval", "--model", str(exported), *args)
    assert code == 2 and message in err and err.startswith("error: ") and "Traceback" not in err


def test_bad_models_are_one_line_errors(tmp_path, capsys):
    code, _, err = _run(capsys, "eval", "--model", "robustbench:Carmon2019Unlabled", "--dataset", "cifar10")
    assert code == 2 and "unknown RobustBench model 'Carmon2019Unlabled'" in err and "Carmon2019Unlabeled" in err
    code, _, err = _run(capsys, "eval", "--model", "robustbench:Carmon2019Unlabeled", "--dataset", "cifar10",
                        "--model-dir", str(tmp_path))
    assert code == 2 and str(tmp_path / "cifar10" / "Linf" / "Carmon2019Unlabeled.pt") in err
    code, _, err = _run(capsys, "eval", "--model", "wsrnet_basc")
    assert code == 2 and "did you mean wsrnet_basic" in err
    code, _, err = _run(capsys, "leaderboard", "build", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err

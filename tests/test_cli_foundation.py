"""CLI skeleton: help, models, export, and bad input as one-line errors."""

import pytest

from wsr_bench.cli import main
from wsr_bench.models import load_exported


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "models" in out and "export" in out


def test_models_lists_every_model_with_params(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "wsrnet_basic" in out and "4.545" in out and "advrush_imagenet" in out


def test_export_and_reload(tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["export", "racl", "--init-channels", "4", "--layers", "3", "--out", str(out)]) == 0
    assert "exported racl" in capsys.readouterr().out
    assert load_exported(out).genotype.name == "racl"
    assert main(["export", "racl", "--init-channels", "4", "--layers", "3", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_unknown_model_is_one_line_error(tmp_path, capsys):
    assert main(["export", "resnet9000", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'resnet9000'") and err.count("\n") == 1

"""A light package: ``import wsr_bench``, the config and the leaderboard load without torch or timm (checked in a
fresh interpreter where torch IS importable, from ``sys.modules``), and ``wsr-bench --help`` prints no warning."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_LIGHT = """
import json, sys
import wsr_bench, wsr_bench.config, wsr_bench.leaderboard
from wsr_bench.config import ConfigError, load_config
from wsr_bench.leaderboard import Curve, LeaderboardEntry, load_entry, save_entry

cfg = load_config("configs/demo.yaml")
try:
    load_config("configs/demo.yaml", ["run.baselines=[resnet_wsr]", "data.name=digits"])
except ConfigError as exc:
    assert "unknown model 'resnet_wsr'" in str(exc), exc
else:
    raise AssertionError("an unknown baseline was accepted")
curve = Curve("worst_case", [0.03, 0.1], [0.5, 0.25])
entry = LeaderboardEntry(model="m", architecture="wsrnet_basic", dataset="digits", threat_model="Linf",
                         clean_accuracy=0.9, curves={"pgd": curve, "worst_case": curve}, n_examples=4, seed=0)
path = save_entry(entry, sys.argv[1])
assert load_entry(path).worst_case.at(0.1) == 0.25
print(json.dumps({"name": cfg.name, "heavy": sorted(m for m in ("torch", "timm") if m in sys.modules)}))
"""


def _python(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run(args, capture_output=True, text=True, env=full_env, cwd=REPO, timeout=120)


def test_package_config_and_leaderboard_import_without_torch_or_timm(tmp_path):
    pytest.importorskip("torch")  # the point: torch is importable, and still not imported
    proc = _python([sys.executable, "-c", _LIGHT, str(tmp_path / "entry.json")])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"name": "demo", "heavy": []}


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("wsr-bench")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "wsr_bench.cli"]


@pytest.mark.parametrize("warnings_env", ["", "default"])
def test_help_prints_no_warning(warnings_env):
    proc = _python(_cli() + ["--help"], PYTHONWARNINGS=warnings_env)
    assert proc.returncode == 0 and "eval" in proc.stdout
    assert proc.stderr == "", proc.stderr


def test_third_party_deprecations_are_silenced_by_the_cli_only():
    code = ("import warnings, wsr_bench.cli as cli\n"
            "warnings.simplefilter('error')\n"
            "warnings.warn('pkg_resources is deprecated as an API', UserWarning)\n")
    assert _python([sys.executable, "-c", code]).returncode != 0  # importing the package changes no filter
    code = code.replace("warnings.warn(", "cli.silence_third_party_warnings()\nwarnings.warn(")
    code += ("warnings.warn('`torch.jit.interface` is deprecated. Please use `torch.compile` instead.', "
             "FutureWarning)\nprint('ok')\n")
    proc = _python([sys.executable, "-c", code])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr

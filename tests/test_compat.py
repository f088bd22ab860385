"""The ``autoattack`` bridge: original AutoAttack API on pyautoattack, and RobustBench's benchmark running offline."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _wsr_eval_fixtures import digits, one_thread, trained_model  # noqa: F401  (one_thread: autouse)

import wsr_bench  # noqa: F401  (installs the bridge)
from wsr_bench._compat import is_bridged

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return trained_model()


@pytest.fixture(scope="module")
def data():
    _, _, x, y = digits()
    return x[:12], y[:12]


def test_autoattack_modules_are_importable_with_the_original_api():
    import autoattack
    import autoattack.autopgd_base
    from autoattack import AutoAttack
    from autoattack.state import EvaluationState

    assert is_bridged()
    params = inspect.signature(AutoAttack.__init__).parameters
    for name in ("model", "norm", "eps", "seed", "version", "attacks_to_run", "device", "log_path"):
        assert name in params
    run = inspect.signature(AutoAttack.run_standard_evaluation).parameters
    assert {"x_orig", "y_orig", "bs", "return_labels", "state_path"} <= set(run)
    assert EvaluationState.__name__ == "EvaluationState"
    assert hasattr(autoattack.autopgd_base, "APGDAttack")
    assert autoattack.__version__


def test_run_standard_evaluation_returns_x_adv_or_labels(model, data, tmp_path):
    from autoattack import AutoAttack

    x, y = data
    log = tmp_path / "aa.log"
    adversary = AutoAttack(model, norm="Linf", eps=0.25, version="custom", attacks_to_run=["apgd-ce", "square"],
                           device="cpu", log_path=str(log), seed=0)
    adversary.apgd.n_iter = 10  # attribute access and assignment reach the wrapped pyautoattack object
    adversary.square.n_queries = 20
    assert adversary.apgd.n_iter == 10 and adversary.attacks_to_run == ["apgd-ce", "square"]
    x_adv = adversary.run_standard_evaluation(x, y, bs=6)
    assert isinstance(x_adv, torch.Tensor) and x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= 0.25 + 1e-6
    x_adv2, y_adv = adversary.run_standard_evaluation(x, y, bs=12, return_labels=True)
    assert y_adv.shape == y.shape
    with torch.no_grad():
        assert torch.equal(model(x_adv2).argmax(1)[y_adv != y], y_adv[y_adv != y])
    assert "apgd-ce" in log.read_text()


def test_state_path_and_individual_runs(model, data, tmp_path):
    from autoattack import AutoAttack
    from autoattack.state import EvaluationState

    x, y = data
    adversary = AutoAttack(model, eps=0.25, version="custom", attacks_to_run=["apgd-ce"], device="cpu", seed=0)
    adversary.apgd.n_iter = 5
    state = tmp_path / "state.json"
    adversary.run_standard_evaluation(x, y, bs=12, state_path=state)
    restored = EvaluationState.from_disk(state)
    # upstream serialises the attack sets loosely (lists/str), so compare as sets
    assert set(restored.run_attacks) == {"apgd-ce"} and restored.robust_flags.shape == y.shape
    individual = adversary.run_standard_evaluation_individual(x, y, bs=12)
    assert set(individual) == {"apgd-ce"} and individual["apgd-ce"].shape == x.shape
    with pytest.raises(ValueError, match="TensorFlow"):
        AutoAttack(model, is_tf_model=True)


def test_robustbench_benchmark_runs_offline_on_our_model(model, data, monkeypatch):
    import robustbench.eval as rb_eval

    x, y = data
    calls = []

    def local_loader(dataset, n_examples, data_dir, prepr):
        calls.append((dataset.value, n_examples))
        return x[:n_examples], y[:n_examples]

    monkeypatch.setattr(rb_eval, "load_clean_dataset", local_loader)
    clean, robust = rb_eval.benchmark(model, n_examples=8, dataset="cifar10", threat_model="Linf", eps=0.3,
                                      batch_size=8, device=torch.device("cpu"))
    assert calls == [("cifar10", 8)]
    with torch.no_grad():
        assert clean == pytest.approx((model(x[:8]).argmax(1) == y[:8]).float().mean().item())
    assert robust == 0.0  # eps 0.3 breaks a standard digits model (APGD-CE alone; the rest is skipped)


def _run_python(code: str, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    paths = [str(REPO)] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)


def test_a_real_autoattack_wins(tmp_path):
    fake = tmp_path / "autoattack"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL = True\n")
    proc = _run_python("import sys; sys.modules['torch'] = None; "  # keeps `import wsr_bench` fast here
                       "import wsr_bench, autoattack; assert getattr(autoattack, 'REAL', False), autoattack; "
                       "print('ok')", tmp_path)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_bridge_installs_without_importing_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['timm'] = None; import wsr_bench._compat as c; "
            "assert any(type(f).__name__ == '_BridgeFinder' for f in sys.meta_path); print('ok')")
    proc = _run_python(code)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr

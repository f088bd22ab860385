"""Spectrum sweeps of attack chains (``downward``, ``bisect``, ``upward``): per-eps AutoAttack's curve at a fraction
of its passes, inferred strengths marked per sample, resume and torchrun sharding, and bad names as one-line errors.

AutoAttack runs with a tiny budget here (Square 100 queries, 2 target classes), set through pyautoattack's own
attributes for the per-eps baseline and the sweeps alike, so that the comparison stays exact and fast.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _wsr_eval_fixtures import digits, one_thread, small_autoattack_budget, trained_model  # noqa: F401

from wsr_bench.cli import main
from wsr_bench.config import ConfigError, EvalConfig
from wsr_bench.evaluate import CountingModel, evaluate_spectrum
from wsr_bench.evaluate.entry import result_to_entry
from wsr_bench.evaluate.samples import sample_record
from wsr_bench.leaderboard import LeaderboardEntry
from wsr_bench.leaderboard.schema import SchemaError

EPS = [0.02, 0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def small_autoattack():
    """Every ``AutoAttack(version="standard")`` of this module gets the tiny budget."""
    with small_autoattack_budget():
        yield


@pytest.fixture(scope="module")
def setup(small_autoattack):
    torch.set_num_threads(1)
    _, _, x, y = digits()
    return trained_model(adv_eps=0.05), x[:16], y[:16]


@pytest.fixture(scope="module")
def per_eps(setup):
    """pyautoattack's AutoAttack run separately at each eps, with the image-keyed starts the sweeps use:
    per-sample correctness (n, K) and the passes."""
    from pyautoattack import AutoAttack

    from wsr_bench.attacks.starts import key_autoattack_starts

    model, x, y = setup
    counting, correct = CountingModel(model), []
    for e in EPS:
        adversary = key_autoattack_starts(AutoAttack(counting, device="cpu", eps=e, seed=0, version="standard"))
        adversary.verbose = False
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
        with torch.no_grad():
            correct.append(model(x_adv).argmax(1) == y)
    return torch.stack(correct, 1), counting.count.total


@pytest.fixture(scope="module")
def swept(setup):
    model, x, y = setup
    return {s: evaluate_spectrum(model, x, y, eps=EPS, attack="autoattack", sweep=s, device="cpu", batch_size=16)
            for s in ("downward", "bisect")}


def _correct(result) -> torch.Tensor:
    return result.break_eps[:, None] > torch.tensor(EPS, dtype=result.break_eps.dtype)[None, :]


@pytest.mark.slow
def test_downward_and_bisect_give_the_per_eps_autoattack_curve(per_eps, swept):
    baseline, baseline_passes = per_eps
    assert 0 < baseline[:, -1].sum() < baseline[:, 0].sum()  # a curve that falls, with survivors at the end
    for name, result in swept.items():
        assert [result.robust_accuracy[e] for e in EPS] == baseline.float().mean(0).tolist(), name
        assert torch.equal(_correct(result), baseline), name  # image by image, too
        assert result.sweep == name and result.sweep_per_attack == {"autoattack": name}
        assert result.passes.total < baseline_passes, name
    assert swept["downward"].passes.total < swept["bisect"].passes.total
    assert set(swept["downward"].passes_per_attack) == {"clean", "autoattack.screen", "autoattack"}


@pytest.mark.slow
def test_inferred_strengths_are_marked_per_sample(setup, swept):
    model, x, y = setup
    result = swept["downward"]
    assert sum(text.count("r") for text in result.evidence) > 0
    for text, b, by, correct in zip(result.evidence, result.break_eps.tolist(), result.break_attack,
                                    _correct(result).tolist(), strict=True):
        assert all((c == "r") <= ok and (c == "b") <= (not ok) for c, ok in zip(text, correct, strict=True))
        if "r" in text:  # robust by inference below the last eps where the whole chain ran and held
            anchor = text.rindex("r") + 1
            assert text[anchor] == "a" and correct[anchor - 1]
        assert (by is None) == (b == 0 or math.isinf(b))
        assert by in (None, "autoattack", "autoattack/apgd-ce")
    samples = sample_record(result.break_eps, result.eps, x, y, break_attack=result.break_attack,
                            evidence=result.evidence)
    entry = result_to_entry(result, model_name="tiny", architecture="cnn", dataset="digits", samples=samples)
    again = LeaderboardEntry.from_dict(json.loads(json.dumps(entry.to_dict())))
    assert again.samples.evidence == result.evidence and again.samples.break_attack == result.break_attack
    assert entry.evaluation["sweep"] == "downward"
    assert entry.evaluation["inferred"]["robust_inferred"] == sum(t.count("r") for t in result.evidence)
    old = entry.to_dict()  # an entry from before these fields still loads
    for key in ("evidence", "break_attack"):
        old["samples"].pop(key)
    assert LeaderboardEntry.from_dict(old).samples.evidence is None
    bad = entry.to_dict()
    i = next(i for i, b in enumerate(result.break_eps.tolist()) if 0 < b <= EPS[-1])
    bad["samples"]["evidence"][i] = bad["samples"]["evidence"][i][:-1] + "r"  # "robust" where it is broken
    with pytest.raises(SchemaError, match=r"samples.evidence\[\d+\] says 'r'"):
        LeaderboardEntry.from_dict(bad)


@pytest.mark.slow
def test_chain_steps_do_not_rerun_the_screen(setup, per_eps, monkeypatch):
    """A downward chain step attacks images on which the screen (AutoAttack's own APGD-CE, same image-keyed start)
    has already failed at that eps, so the chain there runs APGD-T, FAB-T and Square only: APGD-CE runs once per
    eps, and the curve is still per-eps AutoAttack's, image by image."""
    from wsr_bench.attacks.starts import KeyedAPGD, KeyedAPGDTargeted

    calls = []
    for cls in (KeyedAPGD, KeyedAPGDTargeted):
        def counted(self, x, *args, _original=cls.perturb, **kwargs):
            calls.append((type(self).__name__, float(self.eps)))
            return _original(self, x, *args, **kwargs)

        monkeypatch.setattr(cls, "perturb", counted)
    model, x, y = setup
    result = evaluate_spectrum(model, x, y, eps=EPS, attack="autoattack", sweep="downward", device="cpu",
                               batch_size=16)
    screens = [eps for name, eps in calls if name == "KeyedAPGD"]
    assert screens and len(screens) == len(set(screens))
    assert any(name == "KeyedAPGDTargeted" for name, _ in calls)  # the rest of the chain did run
    assert torch.equal(_correct(result), per_eps[0])


CHAIN = dict(attack=["fgsm", "pgd"], chain_attacks=True, steps=3, device="cpu", batch_size=4, eps=EPS)


def _same(a, b) -> bool:
    return (torch.equal(a.break_eps, b.break_eps) and a.evidence == b.evidence and a.break_attack == b.break_attack
            and a.passes == b.passes and a.per_attack == b.per_attack)


@pytest.mark.parametrize("sweep", ["downward", "bisect"])
def test_a_chained_attack_list_sweeps_as_one_chain_and_resumes(sweep, tmp_path):
    model = trained_model()
    _, _, x, y = digits()
    x, y = x[:24], y[:24]
    whole = evaluate_spectrum(model, x, y, sweep=sweep, **CHAIN)
    assert set(whole.per_attack) == {"fgsm+pgd"} and set(whole.break_attack) <= {None, "fgsm", "pgd"}
    state = tmp_path / "state"
    first = evaluate_spectrum(model, x, y, sweep=sweep, state_dir=state, **CHAIN)
    assert _same(first, whole)
    files = sorted(state.glob("*/*.pt"))
    assert {p.parent.name for p in files} >= {"fgsm+pgd.screen", "pgd" if sweep == "downward" else "pgd.b0"}
    for path in files[len(files) // 2:]:  # as if killed half-way
        path.unlink()
    resumed = evaluate_spectrum(model, x, y, sweep=sweep, state_dir=state, resume=True, **CHAIN)
    assert _same(resumed, whole)
    other = "bisect" if sweep == "downward" else "downward"
    with pytest.raises(ValueError, match=f"sweep: \"{sweep}\" in the state, \"{other}\" now"):
        evaluate_spectrum(model, x, y, sweep=other, state_dir=state, resume=True, **CHAIN)


def test_other_attacks_sweep_upward_whatever_the_sweep(tmp_path):
    model = trained_model()
    _, _, x, y = digits()
    kw = dict(attack=["fgsm", "pgd"], steps=3, device="cpu", eps=EPS)
    down, up = (evaluate_spectrum(model, x[:24], y[:24], sweep=s, **kw) for s in ("downward", "upward"))
    assert down.sweep_per_attack == {"fgsm": "upward", "pgd": "upward"}
    assert torch.equal(down.break_eps, up.break_eps) and down.passes == up.passes
    assert all(set(text) <= {"a", "b"} for text in down.evidence)  # nothing inferred robust


@pytest.mark.parametrize("kwargs, match", [
    ({"sweep": "sideways"}, "unknown sweep 'sideways': expected one of upward, downward, bisect"),
    ({"sweep": "downward", "attack_all": True}, "cannot be combined with attack_all"),
    ({"sweep": "bisect", "attack": ["minnorm", "pgd"], "chain_attacks": True}, "'minnorm' has no eps"),
])
def test_bad_sweeps_are_clear_errors(kwargs, match):
    _, _, x, y = digits()
    with pytest.raises(ValueError, match=match) as info:
        evaluate_spectrum(trained_model(), x[:4], y[:4], **{"attack": "pgd", "eps": EPS, **kwargs})
    assert len(str(info.value).splitlines()) == 1
    hybrid = evaluate_spectrum(trained_model(), x[:4], y[:4], attack=["minnorm", "pgd"], chain_attacks=True, eps=EPS,
                               steps=2, minnorm_steps=2)  # the default sweep leaves the hybrid chain upward
    assert hybrid.sweep == "upward"


def test_unknown_sweep_is_a_one_line_cli_and_config_error(capsys):
    assert main(["eval", "--model", "wsrnet_basic", "--sweep", "sideways"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown sweep 'sideways': expected one of upward, downward, bisect\n"
    assert main(["eval", "--model", "wsrnet_basic", "--sweep", "bisect", "--attack-all"]) == 2
    assert "cannot be combined with --attack-all" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="eval.sweep must be one of upward, downward, bisect"):
        EvalConfig(sweep="sideways").validate()
    EvalConfig(sweep="bisect").validate()


WORKER = '''
import sys, torch
sys.path.insert(0, sys.argv[2])
from _wsr_eval_fixtures import digits, trained_model
from wsr_bench.infra.distributed import cleanup, is_main_process, setup_distributed
from wsr_bench.evaluate import evaluate_spectrum

setup_distributed("cpu")
torch.set_num_threads(1)
_, _, x, y = digits()
out = {}
for sweep in ("downward", "bisect"):
    r = evaluate_spectrum(trained_model(), x[:24], y[:24], attack=["fgsm", "pgd"], chain_attacks=True, steps=3,
                          device="cpu", batch_size=4, eps=[0.02, 0.05, 0.1, 0.2], sweep=sweep,
                          state_dir=sys.argv[1] + "/" + sweep)
    out[sweep] = {"break_eps": r.break_eps, "evidence": r.evidence, "passes": r.passes.total}
if is_main_process():
    torch.save(out, sys.argv[1] + "/out.pt")
cleanup()
'''


@pytest.mark.slow
def test_chain_sweeps_sharded_over_two_processes_give_the_same_result(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path), str(Path(__file__).parent)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    sharded = torch.load(tmp_path / "out.pt", weights_only=True)
    _, _, x, y = digits()
    for sweep, got in sharded.items():
        ranks = {torch.load(p, weights_only=True)["rank"] for p in (tmp_path / sweep).glob("*/*.pt")}
        assert ranks == {0, 1}, sweep
        single = evaluate_spectrum(trained_model(), x[:24], y[:24], sweep=sweep, **CHAIN)
        assert torch.equal(got["break_eps"], single.break_eps) and got["evidence"] == single.evidence, sweep
        assert got["passes"] == single.passes.total, sweep

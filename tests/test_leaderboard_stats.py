"""Sampling error on the leaderboard: Clopper-Pearson intervals, per-sample records, schema 1 -> 2 migration,
exact McNemar comparisons (``wsr-bench leaderboard compare``) and the page's "not significantly below" marks.

All without torch (the leaderboard package must not need it).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_leaderboard import make_entry

from wsr_bench.cli import main
from wsr_bench.leaderboard import LeaderboardEntry, Samples, SchemaError, build_leaderboard, load_entry, save_entry
from wsr_bench.leaderboard.compare import ComparisonError, compare_entries, format_comparison, top_marks
from wsr_bench.leaderboard.entry_files import entry_path
from wsr_bench.leaderboard.schema import Curve
from wsr_bench.leaderboard.stats import clopper_pearson, correct_at, discordant, mcnemar_exact
from wsr_bench.leaderboard.tables import leaderboard_frame

SHA_A = "a" * 64
SHA_B = "b" * 64
EPS = [0.03, 0.1]


# ------------------------------------------------------------------------------------------------- statistics
def test_clopper_pearson_known_values():
    low, high = clopper_pearson(62, 100)
    assert (low, high) == pytest.approx((0.51746, 0.71523), abs=5e-5)  # R: binom.test(62, 100)$conf.int
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))  # closed form at k=0: 0.3085
    assert clopper_pearson(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0))
    low, high = clopper_pearson(59, 200)  # the demo's 29.5% at eps 0.1 on 200 images spans 13 points
    assert low < 0.295 < high and 0.125 < high - low < 0.135
    for bad in ((5, 4), (-1, 4), (1, 0)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            clopper_pearson(*bad)


def test_mcnemar_exact_on_hand_made_pairs():
    # 9 discordant images, 8 of them favour B: P(X <= 1 | 9, 1/2) * 2 = 2 * (1 + 9) / 512
    assert mcnemar_exact(1, 8) == pytest.approx(20 / 512)
    assert mcnemar_exact(8, 1) == pytest.approx(20 / 512)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    a = [True, True, False, False, True]
    b = [True, False, True, True, True]
    assert discordant(a, b) == (1, 2)
    assert correct_at([0.0, 0.03, 0.1, None], 0.03) == [False, False, True, True]
    assert correct_at([0.0, 0.03, 0.1, None], 0.0) == [False, True, True, True]


# ------------------------------------------------------------------------------------------------- schema 2
def sampled_entry(model: str, break_eps: list, sha: str = SHA_A, indices: list | None = None, **kw
                  ) -> LeaderboardEntry:
    """An entry whose clean accuracy and worst-case curve follow from ``break_eps`` (as the evaluator makes them)."""
    n = len(break_eps)
    samples = Samples(list(range(n)) if indices is None else indices, sha, break_eps)
    acc = [sum(samples.correct_at(e)) / n for e in EPS]
    curves = {"pgd": Curve("pgd", EPS, acc), "worst_case": Curve("worst_case", EPS, acc)}
    kw = {"architecture": "x", "dataset": "digits", "threat_model": "Linf", "date": "2025-01-01", **kw}
    return LeaderboardEntry(model=model, clean_accuracy=sum(samples.correct_at(0.0)) / n, curves=curves,
                            n_examples=n, samples=samples, **kw)


def test_curve_points_carry_intervals_and_round_trip():
    e = make_entry(n_examples=100, acc=(0.62, 0.5, 0.4, 0.2, 0.0))
    wc = e.worst_case
    assert (wc.ci_low[0], wc.ci_high[0]) == pytest.approx(clopper_pearson(62, 100))
    assert wc.ci_low[-1] == 0.0 and wc.ci_high[-1] == pytest.approx(1 - 0.025 ** (1 / 100))
    assert e.clean_accuracy_ci == pytest.approx(list(clopper_pearson(85, 100)))
    d = json.loads(json.dumps(e.to_dict(), allow_nan=False))
    assert d["schema_version"] == 2 and len(d["curves"]["pgd"]["ci_high"]) == 5 and d["samples"] is None
    assert LeaderboardEntry.from_dict(d) == e


def test_a_version_1_entry_still_loads_with_intervals_computed(tmp_path):
    v1 = {"schema_version": 1, "model": "old", "architecture": "wsrnet_basic", "params": 1000, "training": "",
          "dataset": "digits", "threat_model": "Linf", "n_examples": 200, "seed": 0, "clean_accuracy": 0.99,
          "avg_robust_accuracy": None, "auc": 0.5, "auc_max_eps": 0.1,
          "curves": {"worst_case": {"attack": "worst_case", "eps": [0.03, 0.1], "eps_label": ["0.03", "0.1"],
                                    "accuracy": [0.935, 0.295]}},
          "sanity": {"ok": True}, "versions": {}, "date": "2025-01-01", "source": "wsr-bench",
          "evaluation": {"steps": 10}, "notes": ""}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1))
    e = load_entry(path)
    assert e.schema_version == 2 and e.samples is None
    assert (e.worst_case.ci_low[0], e.worst_case.ci_high[0]) == pytest.approx(clopper_pearson(187, 200))
    assert e.clean_accuracy_ci == pytest.approx(list(clopper_pearson(198, 200)))
    save_entry(e, tmp_path / "new.json")
    again = json.loads((tmp_path / "new.json").read_text())
    assert again["schema_version"] == 2 and again["curves"]["worst_case"]["ci_low"][0] == e.worst_case.ci_low[0]


def test_samples_must_agree_with_the_entry():
    e = sampled_entry("m", [0.0, 0.03, 0.1, None, None])
    assert e.clean_accuracy == 0.8 and e.worst_case.accuracy == [0.6, 0.4]
    d = e.to_dict()
    assert d["samples"]["break_eps"] == [0.0, 0.03, 0.1, None, None]
    assert LeaderboardEntry.from_dict(json.loads(json.dumps(d))) == e
    wrong = {**d, "samples": {**d["samples"], "break_eps": [0.0, 0.0, 0.1, None, None]}}
    with pytest.raises(SchemaError, match="clean accuracy 0.600000, but the entry says 0.800000"):
        LeaderboardEntry.from_dict(wrong)
    for change, match in [({"data_sha256": "xyz"}, "64 hex digits"), ({"indices": [0, 1, 2, 3, 3]}, "repeat"),
                          ({"break_eps": [0.0, 0.03]}, "2 break_eps for 5 indices"),
                          ({"break_eps": [0.0, -1, 0.1, None, None]}, "finite numbers >= 0"),
                          ({"extra": 1}, "unknown samples field")]:
        with pytest.raises(SchemaError, match=match):
            LeaderboardEntry.from_dict({**d, "samples": {**d["samples"], **change}})
    with pytest.raises(SchemaError, match="cover 4 images but n_examples is 5"):
        LeaderboardEntry.from_dict({**d, "samples": {**d["samples"], "indices": [0, 1, 2, 3],
                                                     "break_eps": [0.0, 0.03, 0.1, None]}})


# ------------------------------------------------------------------------------------------------- compare
def test_compare_pairs_the_same_images():
    # 10 images; at 0.1 A keeps 6 (images 0-5), B keeps 2 (images 0,1,6,...): discordant 4 vs 0 -> p = 2/16
    a = sampled_entry("A", [None] * 6 + [0.1] * 3 + [0.0])
    b = sampled_entry("B", [None] * 2 + [0.1] * 4 + [0.03] * 3 + [0.0])
    rows = compare_entries(a, b)
    assert [r.label for r in rows] == ["clean", "0.03", "0.1"]
    clean, e03, e10 = rows
    assert (clean.accuracy_a, clean.accuracy_b, clean.only_a, clean.only_b, clean.p_value) == (0.9, 0.9, 0, 0, 1.0)
    assert (e03.accuracy_a, e03.accuracy_b, e03.only_a, e03.only_b) == (0.9, 0.6, 3, 0)
    assert e03.p_value == pytest.approx(2 / 8)
    assert (e10.only_a, e10.only_b, e10.difference) == (4, 0, pytest.approx(0.4))
    assert e10.p_value == pytest.approx(2 / 16)
    text = format_comparison(a, b, rows)
    assert "A = A (A)" in text and "the same 10 test images" in text and SHA_A[:12] in text
    assert "0.1         60.0    20.0      +40.0       4       0     0.1250" in text


def test_compare_refuses_entries_it_cannot_pair():
    a = sampled_entry("A", [None, 0.1, 0.0])
    with pytest.raises(ComparisonError, match="different data .sha256 aaaaaaaaaaaa vs bbbbbbbbbbbb"):
        compare_entries(a, sampled_entry("B", [None, 0.1, 0.0], sha=SHA_B))
    with pytest.raises(ComparisonError, match="not computed on the same images: 3 vs 3 images, different"):
        compare_entries(a, sampled_entry("B", [None, 0.1, 0.0], indices=[5, 6, 7]))
    with pytest.raises(ComparisonError, match="B has no per-sample results"):
        compare_entries(a, make_entry(model="B", dataset="digits"))
    with pytest.raises(ComparisonError, match="is Linf but B is L2"):
        compare_entries(a, sampled_entry("B", [None, 0.1, 0.0], threat_model="L2"))


def test_compare_on_shared_images_pairs_the_images_both_entries_hold():
    # a weak attack on 6 images (indices 0-5) and a strong one on images 2, 3, 4, 9 (in another order): the pairing
    # is by index, and the accuracies are those of the shared images 2-4, not the entries' own
    weak = sampled_entry("pgd20", [None, None, None, None, 0.1, 0.0], sha=SHA_A)
    strong = sampled_entry("aa", [0.0, 0.03, 0.1, 0.03], sha=SHA_B, indices=[9, 4, 3, 2])
    with pytest.raises(ComparisonError, match="not computed on the same images: 6 vs 4 images.*--shared-images"):
        compare_entries(weak, strong)
    rows = compare_entries(weak, strong, shared_images=True)
    by = {r.label: r for r in rows}
    assert (by["clean"].accuracy_a, by["clean"].accuracy_b) == (1.0, 1.0)
    assert (by["0.03"].accuracy_a, by["0.03"].accuracy_b, by["0.03"].only_a, by["0.03"].only_b) == (1.0, 1 / 3, 2, 0)
    assert (by["0.1"].accuracy_a, by["0.1"].accuracy_b, by["0.1"].only_a) == (2 / 3, 0.0, 2)
    text = format_comparison(weak, strong, rows)
    assert "the 3 test images both hold, by index (A has 6, B 4; accuracies on these images only)" in text
    with pytest.raises(ComparisonError, match="share no test image index"):
        compare_entries(weak, sampled_entry("far", [None, 0.0], sha=SHA_B, indices=[7, 8]), shared_images=True)
    with pytest.raises(ComparisonError, match="A is digits/test but B is fashion_mnist/test: no shared images"):
        compare_entries(weak, sampled_entry("B", [None] * 4, sha=SHA_B, dataset="fashion_mnist"),
                        shared_images=True)


def test_compare_command(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_entry(sampled_entry("racl", [None] * 6 + [0.1] * 3 + [0.0]), a)
    entry_b = sampled_entry("wsrnet", [None] * 2 + [0.1] * 4 + [0.03] * 3 + [0.0])
    save_entry(entry_b, b)
    text = b.read_text()  # per-sample lists stay on one line each; the rest is indented
    assert '\n    "indices": [0,1,2,3,4,5,6,7,8,9],\n' in text and '"break_eps": [null,null,0.1,0.1,' in text
    assert '\n  "clean_accuracy": 0.9,\n' in text and load_entry(b) == entry_b
    assert main(["leaderboard", "compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"A = racl ({a})" in out and f"B = wsrnet ({b})" in out and "McNemar p" in out
    assert out.splitlines()[4].split() == ["clean", "90.0", "90.0", "+0.0", "0", "0", "1.0000", "1.0000"]
    other = tmp_path / "other.json"
    save_entry(sampled_entry("x", [None] * 10, sha=SHA_B), other)
    assert main(["leaderboard", "compare", str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not computed on the same images" in err and err.count("\n") == 1
    old = tmp_path / "old.json"
    save_entry(make_entry(), old)
    assert main(["leaderboard", "compare", str(old), str(a)]) == 2
    assert "has no per-sample results" in capsys.readouterr().err
    subset = tmp_path / "subset.json"
    save_entry(sampled_entry("racl", [None] * 3 + [0.03], sha=SHA_B, indices=[0, 1, 7, 8]), subset)
    assert main(["leaderboard", "compare", "--shared-images", str(a), str(subset)]) == 0
    out = capsys.readouterr().out
    assert "the 4 test images both hold" in out and out.splitlines()[5].split()[:3] == ["0.03", "100.0", "75.0"]


# ------------------------------------------------------------------------------------------------- page marks
def test_marks_use_mcnemar_on_shared_images_and_interval_overlap_otherwise():
    best = sampled_entry("best", [None] * 9 + [0.0] * 11)  # 45% everywhere
    close = sampled_entry("close", [None] * 8 + [0.0] * 12)  # 40%, 1 discordant image -> p = 1
    far = sampled_entry("far", [0.0] * 20)  # 0%, 9 discordant -> p = 2/512
    elsewhere = sampled_entry("elsewhere", [None] * 1 + [0.0] * 19, sha=SHA_B)  # 5% on other images: intervals
    marks = top_marks([close, best, far, elsewhere])
    assert marks[1]["0.1"].method == "best" and marks[1]["0.1"].tied
    assert marks[0]["0.1"].method == "paired" and marks[0]["0.1"].tied and marks[0]["0.1"].p_value == 1.0
    assert marks[2]["0.1"].method == "paired" and not marks[2]["0.1"].tied
    assert marks[2]["0.1"].p_value == pytest.approx(2 / 512)
    m = marks[3]["0.1"]  # 1/20 -> [0.1%, 24.9%] vs 9/20 -> [23.1%, 68.5%]: overlap
    assert m.method == "overlap" and m.tied and m.best == "best"


def test_tables_page_and_csv_show_intervals_and_marks(tmp_path):
    entries = [sampled_entry("best", [None] * 9 + [0.0] * 11), sampled_entry("far", [0.0] * 20),
               sampled_entry("close", [None] * 8 + [0.0] * 12), make_entry(model="old", dataset="digits",
                                                                             eps=EPS, acc=(0.3, 0.3), n_examples=20)]
    df = leaderboard_frame(entries)
    assert {"ci_low@0.1", "ci_high@0.1", "tied@0.1", "test@0.1", "clean_ci_low"} <= set(df.columns)
    for e in entries:
        save_entry(e, entry_path(tmp_path, e))
    res = build_leaderboard(tmp_path)
    readme = res.readme.read_text()
    assert "Clopper-Pearson" in readme and "McNemar" in readme
    assert "| **45.0** (23.1–68.5) |" in readme  # best
    assert "| **40.0** (19.1–63.9) |" in readme  # same images, p = 1
    assert "| 0.0 (0.0–16.8) |" in readme  # significantly below (p = 0.004)
    assert "| **30.0**† (11.9–54.3) |" in readme  # a version-1 style entry: decided by interval overlap
    html = res.index.read_text()
    assert 'data-tied="paired"' in html and 'data-tied="overlap"' in html and 'class="ci">23.1–68.5<' in html
    assert "exact McNemar on the same images, p=0.00391" in html
    csv = pd.read_csv(res.csv)
    row = csv[csv["model"] == "far"].iloc[0]
    assert row["acc@0.1"] == 0.0 and row["ci_high@0.1"] == pytest.approx(1 - 0.025 ** (1 / 20))
    assert res.curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

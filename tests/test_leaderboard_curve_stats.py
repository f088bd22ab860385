"""Issue 36's statistics, each against a hand computation or a library value: Holm, the simultaneous band (and its
coverage), the Welch-Satterthwaite seed term, per-image AUC/average scores, the paired bootstrap, the sign-flip
test, the planted shift that only the whole-curve test finds, rows of several training seeds, documented seed SDs,
the nesting count, and the page at laptop width. All without torch except the nesting count's traces.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta, t
from test_leaderboard import make_entry

from wsr_bench.epsilon import PAPER_SPECTRUM
from wsr_bench.leaderboard import LeaderboardEntry, Samples, build_leaderboard, load_entries, save_entry
from wsr_bench.leaderboard.compare import compare_entries, format_comparison, whole_curve_entries
from wsr_bench.leaderboard.consistency import nesting_text, nesting_violations
from wsr_bench.leaderboard.entry_files import entry_path
from wsr_bench.leaderboard.html import short_text
from wsr_bench.leaderboard.marks import row_band, row_interval, section_marks
from wsr_bench.leaderboard.schema import Curve
from wsr_bench.leaderboard.seeds import Row, SeedNoise, group_rows, load_seed_noise, seed_noise_from_power
from wsr_bench.leaderboard.stats import clopper_pearson, combined_df, holm, simultaneous_band, t_interval, t_test
from wsr_bench.leaderboard.tables import leaderboard_frame
from wsr_bench.leaderboard.whole_curve import (
    auc_scores,
    average_scores,
    correctness,
    paired_bootstrap_ci,
    sign_flip_p,
)

ROOT = Path(__file__).resolve().parents[1]
GRID = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.12, 0.15, 0.17, 0.2, 0.25, 0.3]  # the zoo's grid


def entry_from_breaks(model: str, breaks: list[float | None], eps=GRID, sha: str = "a" * 64, **evaluation):
    """An entry whose worst-case curve and clean accuracy follow from per-image breaking strengths."""
    n = len(breaks)
    acc = [sum(b is None or b > e + 1e-6 for b in breaks) / n for e in eps]
    clean = sum(b is None or b > 0 for b in breaks) / n
    curves = {"worst_case": Curve("worst_case", list(eps), acc)}
    return LeaderboardEntry(model=model, architecture="cnn", dataset="fashion_mnist", threat_model="Linf",
                            clean_accuracy=clean, curves=curves, n_examples=n, training="PGD",
                            evaluation=dict(evaluation), samples=Samples(list(range(n)), sha, list(breaks)))


# ------------------------------------------------------------------------------------------------- Holm
def test_holm_matches_a_hand_computation():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(0.06, 1*0.04): in input order
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.001, 0.5, 0.04]) == pytest.approx([0.4, 0.004, 0.5, 0.12])
    assert holm([]) == [] and holm([0.7]) == [0.7] and holm([0.6, 0.6]) == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        holm([1.5])


def test_holm_unbolds_a_cell_that_is_significant_only_before_correction():
    # 20 images, four strengths: 6 images only the best row gets right at 0.03 (raw p = 2/64 = 0.031), none
    # discordant elsewhere (p = 1): four tests in the family, Holm multiplies the smallest p by 4
    best = entry_from_breaks("best", [None] * 10 + [0.0] * 10, eps=[0.03, 0.1, 0.17, 0.25])
    other = entry_from_breaks("other", [0.03] * 6 + [None] * 4 + [0.0] * 10, eps=[0.03, 0.1, 0.17, 0.25])
    strength, _ = section_marks([Row([best]), Row([other])])
    m = strength[1]["0.03"]
    assert m.p_value == pytest.approx(2 / 64) and m.p_value < 0.05
    assert m.p_holm == pytest.approx(4 * 2 / 64) and m.tied  # 4 tests in the section's family


# ------------------------------------------------------------------------------------------------- bands
def test_simultaneous_band_is_clopper_pearson_at_the_bonferroni_level():
    counts, n = [90, 70, 30, 0], 100
    band = simultaneous_band(counts, n)
    level = 1 - 0.05 / 4
    for (low, high), k in zip(band, counts, strict=True):
        hand_low = 0.0 if k == 0 else beta.ppf((1 - level) / 2, k, n - k + 1)
        hand_high = beta.ppf(1 - (1 - level) / 2, k + 1, n - k)
        assert (low, high) == pytest.approx((hand_low, hand_high))
        assert low <= clopper_pearson(k, n)[0] and high >= clopper_pearson(k, n)[1]  # wider than pointwise


def test_simultaneous_band_covers_a_whole_true_curve_at_least_95_percent_of_the_time():
    """Simulate nested curves (each image has a breaking strength) from a known curve: the band covers all points
    at once in >= 95% of the draws; the pointwise intervals do so less often."""
    rng = np.random.default_rng(0)
    true = np.array([0.9, 0.8, 0.6, 0.45, 0.3, 0.2])  # P(break > eps) at eps 0, 0.02, 0.05, 0.1, 0.15, 0.2
    n, draws = 120, 600
    both, pointwise = 0, 0
    for _ in range(draws):
        u = rng.random(n)  # an image survives eps_j iff u < true_j: nested verdicts
        counts = (u[:, None] < true[None, :]).sum(0)
        band = simultaneous_band(counts.tolist(), n)
        both += all(lo <= p <= hi for (lo, hi), p in zip(band, true, strict=True))
        pointwise += all(clopper_pearson(int(k), n)[0] <= p <= clopper_pearson(int(k), n)[1]
                         for k, p in zip(counts, true, strict=True))
    assert both / draws >= 0.95 - 2 * math.sqrt(0.95 * 0.05 / draws)
    assert pointwise < both


# ------------------------------------------------------------------------------------------------- seed term
def test_welch_satterthwaite_and_the_t_interval_by_hand():
    # images 1e-4 (inf df) + seeds 1e-4 (10 df): df = (2e-4)^2 / ((1e-4)^2 / 10) = 40
    terms = [(1e-4, math.inf), (1e-4, 10.0)]
    assert combined_df(terms) == pytest.approx(40.0)
    low, high = t_interval(0.5, terms)
    assert high - 0.5 == pytest.approx(t.ppf(0.975, 40) * math.sqrt(2e-4))
    assert t_test(0.03, terms) == pytest.approx(2 * t.sf(0.03 / math.sqrt(2e-4), 40))
    assert combined_df([(1e-4, math.inf)]) == math.inf and t_test(0.0, [(0.0, 5.0)]) == 1.0


def test_a_row_of_three_seeds_has_mean_sd_and_an_interval_with_the_seed_term():
    n = 200
    breaks = [[None] * k + [0.05] * (n - k) for k in (100, 110, 120)]  # 50%, 55%, 60% at 0.1
    entries = [entry_from_breaks(f"net-seed{s}", b, eps=[0.05, 0.1], training_seed=s) for s, b in enumerate(breaks)]
    rows = group_rows(entries + [entry_from_breaks("other", [None] * n, eps=[0.05, 0.1])])
    assert [r.n_seeds for r in rows] == [3, 1] and rows[0].model == "net"
    row = rows[0]
    assert row.mean(0.1) == pytest.approx(0.55)
    var, df, how, sd = row.seed_term(0.1)
    assert (sd, df, how) == (pytest.approx(0.05), 2.0, "measured") and var == pytest.approx(0.05 ** 2 / 3)
    scores = np.mean([correctness(b, [0.1])[:, 0] for b in breaks], axis=0)
    image = (float(np.var(scores, ddof=1)) / n, n - 1.0)
    assert row_interval(row, 0.1) == pytest.approx(t_interval(0.55, [image, (var, 2.0)]))
    frame = leaderboard_frame(entries)
    assert len(frame) == 1 and frame.loc[0, "seeds"] == 3 and frame.loc[0, "seed_sd@0.1"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="training seed"):
        group_rows([entries[0], entry_from_breaks("net_s0", breaks[1], eps=[0.05, 0.1], training_seed=0)])


def test_a_documented_seed_sd_ties_a_difference_that_the_images_alone_call_significant():
    n = 1000
    best = entry_from_breaks("best", [None] * 450 + [0.0] * 550, eps=[0.1])
    other = entry_from_breaks("other", [None] * 400 + [0.0] * 600, eps=[0.1])  # 50 images only best: p ~ 1e-15
    plain, _ = section_marks([Row([best]), Row([other])])
    assert plain[1]["0.1"].test == "McNemar" and not plain[1]["0.1"].tied
    noise = SeedNoise("fashion_mnist", "Linf", {"0.1": 0.03}, 51.0, "test")
    rows = group_rows([best, other], {("fashion_mnist", "Linf"): noise})
    seeded, _ = section_marks(rows)
    m = seeded[1]["0.1"]
    d = np.ones(50).tolist() + [0.0] * 950
    hand = t_test(0.05, [(float(np.var(d, ddof=1)) / n, n - 1.0), (0.03 ** 2, 51.0), (0.03 ** 2, 51.0)])
    assert (m.test, m.seed) == ("t+seed", "documented") and m.p_value == pytest.approx(hand) and m.tied
    low, high = row_interval(rows[0], 0.1)
    assert high - low > 4 * 0.03  # the seed term widens the Clopper-Pearson interval (about 6 points wide)


def test_the_committed_zoo_seed_sd_is_the_power_benchmarks():
    noise = load_seed_noise(ROOT / "leaderboard")[("fashion_mnist", "Linf")]
    results = json.loads((ROOT / "benchmarks" / "results" / "search_quality_power.json").read_text())
    again = seed_noise_from_power(results, "fashion_mnist", "Linf", noise.source, keep=list(noise.sd), note=noise.note)
    assert again == noise
    assert noise.sd["avg"] == pytest.approx(results["seed_noise"]["within_sd"])  # the benchmark's own number
    assert noise.df == results["seed_noise"]["within_df"] and noise.at(0.1) == pytest.approx(0.011156, abs=1e-6)
    assert noise.at(0.17) is None and "0.17" in noise.note  # left out, and said why


# ------------------------------------------------------------------------------------------------- whole curve
def test_per_image_scores_average_to_the_entrys_auc_and_paper_average():
    for entry in load_entries(ROOT / "leaderboard"):
        breaks = entry.samples.break_eps
        assert auc_scores(breaks, entry.worst_case.eps).mean() == pytest.approx(entry.auc, abs=1e-6)
        assert average_scores(breaks).mean() == pytest.approx(entry.avg_robust_accuracy, abs=1e-6)
    # one image broken at 0.1 on the grid 0.1, 0.2: right at 0 (1), wrong at 0.1 and 0.2 -> area 0.05 / 0.2
    assert auc_scores([0.1], [0.1, 0.2]).tolist() == [0.25] and average_scores([0.17]).tolist() == [0.5]
    assert list(PAPER_SPECTRUM) == [0.03, 0.1, 0.17, 0.25]


def test_sign_flip_p_is_the_exact_share_of_sign_patterns():
    assert sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.25)  # 2 of 8 patterns reach |sum| 6
    d = np.array([0.3, -0.1, 0.25, 0.05, 0.2, 0.0, 0.15, -0.05, 0.1, 0.3, 0.0])  # 9 nonzero: 512 patterns, exact
    nonzero = d[d != 0]
    sums = [abs(sum(s * v for s, v in zip(signs, nonzero, strict=True)))
            for signs in itertools.product((1, -1), repeat=len(nonzero))]
    hand = sum(s >= abs(nonzero.sum()) - 1e-12 for s in sums) / len(sums)
    assert sign_flip_p(d) == pytest.approx(hand)
    assert sign_flip_p(np.zeros(5)) == 1.0 and sign_flip_p(np.array([0.0, 0.4])) == 1.0


def test_paired_bootstrap_ci_agrees_with_the_normal_interval_on_many_images():
    rng = np.random.default_rng(1)
    d = rng.choice([-0.2, 0.0, 0.0, 0.1, 0.3], size=4000)
    low, high = paired_bootstrap_ci(d)
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert low == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert high == pytest.approx(d.mean() + half, abs=0.15 * half)
    assert paired_bootstrap_ci(np.full(10, 0.2)) == (0.2, 0.2)


def planted_pair(n: int = 1300) -> tuple[LeaderboardEntry, LeaderboardEntry]:
    """B's images break evenly over the grid (index 12: never); A holds 6% of them one strength longer and 3% one
    strength shorter: a small shift spread over every strength."""
    levels = [*GRID, None]
    b_idx = [i % len(levels) for i in range(n)]
    a_idx = [min(k + 1, 12) if i % 100 < 6 else max(k - 1, 0) if i % 100 < 9 else k for i, k in enumerate(b_idx)]
    return (entry_from_breaks("A", [levels[k] for k in a_idx]), entry_from_breaks("B", [levels[k] for k in b_idx]))


def test_the_whole_curve_test_finds_a_planted_shift_that_every_per_strength_test_misses():
    a, b = planted_pair()
    rows = compare_entries(a, b)
    assert all(r.p_value >= 0.05 for r in rows)  # not one strength, even before Holm
    assert all(r.p_holm >= 0.05 for r in rows)
    auc, avg = whole_curve_entries(a, b)
    assert auc.name == "AUC" and auc.difference > 0 and auc.p_value < 0.01 and auc.ci_low > 0
    assert auc.a_higher > auc.b_higher
    text = format_comparison(a, b, rows, ("A", "B"), [auc, avg])
    assert "sign-flip p" in text and "Holm p" in text
    _, whole = section_marks([Row([a]), Row([b])])
    assert whole[0]["auc"].method == "best" and not whole[1]["auc"].tied


# ------------------------------------------------------------------------------------------------- nesting
def test_nesting_violations_count_images_robust_above_their_break():
    import torch

    from wsr_bench.evaluate.batches import Trace
    from wsr_bench.evaluate.spectrum import nesting_violations as count

    eps = [0.1, 0.2, 0.3]
    ran = torch.tensor([[True, True, True], [True, True, True], [True, False, False], [False, False, True]])
    hit = torch.tensor([[False, True, False], [False, False, False], [True, False, False], [False, False, False]])
    first = torch.tensor([0.2, math.inf, 0.1, math.inf])
    trace = Trace(first, ran, hit, [None] * 4, {}, "attack-all")
    # image 0: fooled at 0.2 but the attack ran at 0.3 and failed -> 1; image 2 never ran above its break -> 0
    assert count(first, [trace], eps) == 1
    other = Trace(first, torch.ones(4, 3, dtype=torch.bool), torch.zeros(4, 3, dtype=torch.bool), [None] * 4, {},
                  "attack-all")
    assert count(first, [trace, other], eps) == 1  # every attack must have run and failed there
    entry = entry_from_breaks("x", [None, 0.1], eps=[0.1], nesting_violations=3)
    assert nesting_violations(entry) == (3, "recorded") and nesting_text(entry) == "non-nested 3"
    old = entry_from_breaks("x", [None, 0.1], eps=[0.1], sweep="downward")
    assert nesting_violations(old) == (0, "downward sweep: by construction")
    naive = entry_from_breaks("x", [None, 0.1], eps=[0.1], sweep="attack-all", settings={"attack_all": True})
    assert nesting_violations(naive) == (None, "not recorded") and nesting_text(naive) == "non-nested ?"


# ------------------------------------------------------------------------------------------------- pages
def test_band_and_marks_reach_the_csv_and_the_pages(tmp_path):
    a, b = planted_pair(260)
    for e in (a, b):
        save_entry(e, entry_path(tmp_path, e))
    res = build_leaderboard(tmp_path)
    import pandas as pd

    csv = pd.read_csv(res.csv).set_index("model")
    row = Row([a])
    band = row_band(row)
    assert csv.loc["A", "band_low@0.1"] == pytest.approx(band[GRID.index(0.1) + 1][0])
    assert csv.loc["A", "clean_band_high"] == pytest.approx(band[0][1])
    assert {"p@0.1", "p_holm@0.1", "seed_sd@0.1", "avg_tied", "auc_test", "nesting_violations"} <= set(csv.columns)
    readme = res.readme.read_text()
    assert "Holm-adjusted" in readme and "simultaneous 95% band" in readme and "sign-flip p" in readme
    assert short_text("PGD-3 (eps 0.1), 3 epochs, SGD lr 0.1 (cosine), batch 128") == "PGD-3 (eps 0.1)…"
    assert short_text("PGD-3 (eps 0.1), 3 epochs, SGD", limit=28) == "PGD-3 (eps 0.1), 3 epochs…"
    assert short_text("short") == "short" and short_text("x" * 40) == "x" * 24 + "…"
    html = res.index.read_text()
    assert 'class="scroll"' in html and "position: sticky" in html and 'title="PGD"' in html


def test_make_entry_rows_are_unchanged_without_samples():
    frame = leaderboard_frame([make_entry()])
    assert frame.loc[0, "seeds"] == 1 and frame.loc[0, "tied@0.1"] == "best"

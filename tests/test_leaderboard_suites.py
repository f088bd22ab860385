"""Leaderboard sections per evaluation suite, published numbers from papers beside RobustBench's, and paired
comparisons against each section's top row in the generated README (all without torch)."""

from __future__ import annotations

import json
import struct

import pandas as pd
import pytest
from test_leaderboard import make_entry
from test_leaderboard_stats import SHA_B, sampled_entry

from wsr_bench.leaderboard import LeaderboardEntry, SchemaError, build_leaderboard, load_references, save_entry
from wsr_bench.leaderboard.build import paired_comparisons
from wsr_bench.leaderboard.compare import compare_entries, format_comparison, top_marks, whole_curve_entries
from wsr_bench.leaderboard.curves import plot_curves
from wsr_bench.leaderboard.entry_files import entry_path
from wsr_bench.leaderboard.reference import SOURCE_LABEL, parse_reference
from wsr_bench.leaderboard.tables import (
    leaderboard_frame,
    section_entries,
    section_name,
    sections,
    select_references,
)

PGD = "PGD-20, all 10,000 test images"
FM = "fashion_mnist / Linf"
FM_PGD = f"{FM} / {PGD}"
PAPER = {"eps": "0.1", "clean_acc": 90.5, "robust_acc": 30.0, "attack": "PGD-40, 100 restarts",
         "source": "published paper", "name": "A paper on Fashion-MNIST", "link": "https://example.org/paper",
         "architecture": "CNN"}


def _suite(entry: LeaderboardEntry, suite: str) -> LeaderboardEntry:
    entry.evaluation["suite"] = suite
    return entry


def zoo() -> dict[str, LeaderboardEntry]:
    """Main section (no suite): A best, B on the same images, C on other images, D without per-sample results.
    PGD-20 section: the same two model names on 40 other images, where B is far better than A."""
    fm = {"dataset": "fashion_mnist"}
    return {
        "entries/fashion_mnist/Linf/A.json": sampled_entry("A", [None] * 9 + [0.0] * 11, **fm),  # 45%
        "entries/fashion_mnist/Linf/B.json": sampled_entry("B", [None] * 8 + [0.0] * 12, **fm),  # 40%, paired
        "entries/fashion_mnist/Linf/C.json": sampled_entry("C", [None] * 7 + [0.0] * 13, sha=SHA_B, **fm),
        "entries/fashion_mnist/Linf/D.json": make_entry(model="D", dataset="fashion_mnist", eps=[0.03, 0.1],
                                                        acc=(0.2, 0.1), n_examples=20),
        "entries/fashion_mnist/Linf/pgd20/A.json": _suite(sampled_entry("A", [None] * 4 + [0.0] * 36, sha=SHA_B,
                                                                        **fm), PGD),  # 10%
        "entries/fashion_mnist/Linf/pgd20/B.json": _suite(sampled_entry("B", [None] * 20 + [0.0] * 20, sha=SHA_B,
                                                                        **fm), PGD),  # 50%
        "entries/digits/Linf/solo.json": sampled_entry("solo", [None] * 5 + [0.0] * 5),
    }


@pytest.fixture
def built(tmp_path):
    entries = zoo()
    for rel, e in entries.items():
        save_entry(e, tmp_path / rel)
    ref = tmp_path / "reference" / "fashion_mnist" / "Linf"
    ref.mkdir(parents=True)
    (ref / "Paper2020.json").write_text(json.dumps(PAPER))
    return entries, build_leaderboard(tmp_path)


def _section_text(readme: str, name: str) -> str:
    return readme.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]


# ------------------------------------------------------------------------------------------------- suites
def test_suite_is_read_from_the_evaluation_and_checked():
    e = make_entry(evaluation={"suite": "  PGD-20,\n all 10,000 test images "})
    assert e.suite == PGD and make_entry().suite == "" and make_entry(evaluation={"suite": None}).suite == ""
    assert LeaderboardEntry.from_dict(json.loads(json.dumps(e.to_dict()))).suite == PGD
    with pytest.raises(SchemaError, match="evaluation.suite must be a string"):
        make_entry(evaluation={"suite": 20})
    assert section_name("fashion_mnist", "Linf", PGD) == FM_PGD and section_name("fashion_mnist", "Linf") == FM


def test_sections_order_marks_and_sources(built):
    entries, res = built
    csv = pd.read_csv(res.csv)
    assert list(dict.fromkeys(csv["section"])) == ["digits / Linf", FM, FM_PGD]  # the suite right after its base
    assert list(csv[csv["section"] == FM]["model"]) == ["A", "B", "C", "D", "Paper2020"]
    assert list(csv[csv["section"] == FM_PGD]["model"]) == ["B", "A"]
    readme = res.readme.read_text()
    assert [line[3:] for line in readme.splitlines() if line.startswith("## ")] == ["digits / Linf", FM, FM_PGD]
    html = res.index.read_text()
    assert html.index(f"<h2>{FM}</h2>") < html.index(f"<h2>{FM_PGD}</h2>")
    # marks compare rows only within a section: A is the best of the main section, B of the PGD-20 one
    main, pgd = csv[csv["section"] == FM].set_index("model"), csv[csv["section"] == FM_PGD].set_index("model")
    assert main.loc["A", "tied@0.1"] == "best" and main.loc["B", "tied@0.1"] == "paired"
    assert main.loc["C", "tied@0.1"] == "overlap" and pd.isna(main.loc["Paper2020", "tied@0.1"])
    assert pgd.loc["B", "tied@0.1"] == "best" and pd.isna(pgd.loc["A", "tied@0.1"])  # significantly below B
    assert "significantly below B (exact McNemar" in pgd.loc["A", "test@0.1"]
    marks = top_marks(list(entries.values()))
    assert marks[0]["0.1"].best == "A" and marks[4]["0.1"].best == "B" and marks[6]["0.1"].method == "best"
    # the paper's row: its source, its attack, its link; only in the suite-less section
    paper = main.loc["Paper2020"]
    assert paper["source"] == "published paper" and paper["acc@0.1"] == 0.3 and paper["clean"] == 0.905
    assert paper["training"] == "A paper on Fashion-MNIST (attack: PGD-40, 100 restarts)"
    assert paper["provenance"].startswith("https://example.org/paper (file ")
    assert paper["provenance"].endswith("Paper2020.json)")
    assert (csv["model"] == "Paper2020").sum() == 1
    fm_table = _section_text(readme, FM)
    assert "| [published paper](https://example.org/paper) | CNN |" in fm_table
    assert "numbers taken from RobustBench's leaderboard or from the cited paper" in readme
    assert "*published paper*" in readme
    assert "numbers taken from RobustBench&#39;s leaderboard or from the cited paper" in html
    assert 'class="reference" title="https://example.org/paper (file ' in html
    assert res.curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_comparisons_follow_each_table(built):
    entries, res = built
    readme = res.readme.read_text()
    fm = _section_text(readme, FM).strip("\n")
    table, block = fm.split("\n\n", 1)
    assert table.splitlines()[2].startswith("| 1 | A |")  # the top row
    names = ("entries/fashion_mnist/Linf/A.json", "entries/fashion_mnist/Linf/B.json")
    a, b = entries[names[0]], entries[names[1]]
    expected = format_comparison(a, b, compare_entries(a, b, names), names, whole_curve_entries(a, b, names))
    assert "Holm p" in expected and "whole curve" in expected
    assert block.startswith("**Paired comparisons against the top row** (A, `entries/fashion_mnist/Linf/A.json`)")
    assert f"```text\n{expected}\n```" in block
    assert block.count("```text") == 1  # C (other images) and D (no per-sample results) are not compared
    lines = [line for line in block.splitlines() if line.startswith("- ")]
    assert len(lines) == 2
    assert lines[0].startswith("- C (`entries/fashion_mnist/Linf/C.json`): not compared: ")
    assert "not computed on the same images" in lines[0] and "sha256 aaaaaaaaaaaa vs bbbbbbbbbbbb" in lines[0]
    assert lines[1].startswith("- D (`entries/fashion_mnist/Linf/D.json`): not compared: ")
    assert "has no per-sample results" in lines[1]
    pgd = _section_text(readme, FM_PGD)
    assert "(B, `entries/fashion_mnist/Linf/pgd20/B.json`)" in pgd
    assert "A = B (entries/fashion_mnist/Linf/pgd20/B.json)" in pgd
    assert "B = A (entries/fashion_mnist/Linf/pgd20/A.json)" in pgd and "the same 40 test images" in pgd
    assert "Paired comparisons" not in _section_text(readme, "digits / Linf")  # one entry only
    assert "Paired comparisons" not in res.index.read_text()


def test_suite_sections_show_the_same_models_under_the_main_evaluation(built):
    # A and B have a PGD-20 entry (40 images, indices 0-39) and a main entry (20 images, 0-19): paired on the 20
    # shared images. B: 100% -> 40% (12 discordant, p = 2/4096, *); A: 20% -> 45% (5 discordant, p = 1/16, no *)
    _, res = built
    readme = res.readme.read_text()
    pgd = _section_text(readme, FM_PGD)
    assert f"**The same models in the main table**: their entry of this section ({PGD}; left of the arrow)" in pgd
    rows = [line for line in pgd.splitlines() if line.startswith("| B | 20 |") or line.startswith("| A | 20 |")]
    assert [r[:24] for r in rows] == ["| B | 20 | 100.0 → 40.0 ", "| A | 20 | 20.0 → 45.0 |"]
    assert rows[0].startswith("| B | 20 | 100.0 → 40.0 * |")
    assert "The same models in the main table" not in _section_text(readme, FM)


def test_section_entries_match_the_table_order():
    entries = list(zoo().values())
    df = leaderboard_frame(entries)
    by_section = dict(section_entries(entries))
    assert list(by_section) == [name for name, _ in sections(df)]
    for name, part in sections(df):
        assert [entries[i].model for i in by_section[name]] == list(part["model"])


def test_paired_comparisons_text_and_escaping():
    a = sampled_entry("A", [None] * 9 + [0.0] * 11)
    assert paired_comparisons([a], ["a.json"]) == ""
    b = sampled_entry("B`x*", [None] * 8 + [0.0] * 12)
    text = paired_comparisons([a, b], ["a.json", "b```.json"])
    assert "\n````text\n" in text and text.endswith("\n````")  # the fence outruns the name's backticks
    old = make_entry(model="<i>old</i>", dataset="digits", eps=[0.03, 0.1], acc=(0.2, 0.1), n_examples=20)
    line = paired_comparisons([a, old], ["a.json", "old.json"]).splitlines()[-1]
    assert line.startswith("- &lt;i&gt;old&lt;/i&gt; (`old.json`): not compared: old.json has no per-sample")


def test_curves_get_one_panel_per_section():
    entries = list(zoo().values())
    _, height = struct.unpack(">II", plot_curves(entries)[16:24])  # digits, fashion_mnist, fashion_mnist / PGD-20
    _, one = struct.unpack(">II", plot_curves([e for e in entries if e.dataset == "digits"])[16:24])
    assert 2.5 * one < height < 3.5 * one  # three panels one above the other, each legend outside its axes


# ------------------------------------------------------------------------------------------------- references
def test_paper_reference_files(tmp_path):
    ref = tmp_path / "cifar10" / "Linf"
    ref.mkdir(parents=True)
    (ref / "Paper2020.json").write_text(json.dumps({**PAPER, "eps": "8/255", "robust_acc": "5.0"}))
    (ref / "Bartoldson2024Adversarial_WRN-94-16.json").write_text(json.dumps({  # overrides a packaged file
        "eps": "8/255", "clean_acc": "93.68", "autoattack_acc": "73.71", "name": "x", "attack": "AutoAttack"}))
    refs = load_references("cifar10", "Linf", extra_dir=tmp_path)
    paper = next(r for r in refs if r.model == "Paper2020")
    assert (paper.source, paper.attack, paper.robust_accuracy, paper.autoattack_accuracy) == (
        "published paper", "PGD-40, 100 restarts", 0.05, None)
    assert {r.source for r in refs if r.model != "Paper2020"} == {SOURCE_LABEL}
    chosen = select_references([make_entry()], refs, top=1)  # the top RobustBench row plus every paper's row
    assert [(r.model, r.source) for r in chosen] == [("Bartoldson2024Adversarial_WRN-94-16", SOURCE_LABEL),
                                                     ("Paper2020", "published paper")]
    assert chosen[0].attack == "AutoAttack"
    assert select_references([make_entry(dataset="digits")], refs, top=1) == []  # only sections we have
    df = leaderboard_frame([make_entry()], chosen)
    assert list(df["model"]) == ["WsrNet-Basic", "Bartoldson2024Adversarial_WRN-94-16", "Paper2020"]
    assert list(df["training"])[1] == "x (attack: AutoAttack)"


@pytest.mark.parametrize("change, match", [
    ({"source": None}, "robust_acc needs a \"source\""),
    ({"autoattack_acc": "30.0"}, "either robust_acc .* or autoattack_acc/external"),
    ({"source": 3}, "source must be a non-empty string"),
    ({"attack": ""}, "attack must be a non-empty string"),
    ({"robust_acc": "n/a"}, "needs numeric clean_acc and autoattack_acc .or robust_acc"),
])
def test_bad_paper_files_are_refused(change, match):
    d = {k: v for k, v in {**PAPER, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        parse_reference(d, "P", "fashion_mnist", "Linf", "P.json")


# ------------------------------------------------------------------------------------------------- as before
def test_a_leaderboard_without_suites_or_papers_renders_as_before(tmp_path):
    """Golden README (made by the code before suites and papers existed, updated for issue 36: Holm-adjusted marks,
    whole-curve marks, simultaneous bands, seeds and nesting columns) and CSV header; no comparisons with one entry
    per section, RobustBench's sentence alone in both pages."""
    evil = make_entry(model="<b>x</b>", dataset="digits", training="a|b")
    for e in (make_entry(), evil):
        save_entry(e, entry_path(tmp_path, e))
    res = build_leaderboard(tmp_path, reference_top=2)
    assert res.readme.read_text() == GOLDEN_README
    assert pd.read_csv(res.csv).columns.tolist() == GOLDEN_CSV_COLUMNS
    html = res.index.read_text()
    assert "cited paper" not in html and "RobustBench rows are not compared. In the plot, the darker shade" in html
    assert html.count('<tr class="reference"') == 2


GOLDEN_README = (
    '# wsr-bench wide-spectrum leaderboard\n'
    '\n'
    '<!-- generated by `wsr-bench leaderboard build`; do not edit by hand -->\n'
    '\n'
    'Robust accuracy (%) over the perturbation strength eps (Linf eps on the [0,1] image scale;'
    ' worst case over the attacks, per sample). `avg(0.03,0.1,0.17,0.25)` is the mean over the '
    "paper's spectrum; AUC is the normalised area under the curve from eps 0 (clean) to the lar"
    "gest evaluated eps. Rows marked *RobustBench (published)* are RobustBench's leaderboard nu"
    'mbers at their single eps.\n'
    '\n'
    '95% intervals in parentheses (Clopper-Pearson, test images only; ‡: with the training-seed'
    ' term of a documented seed SD, the row having one seed). Bold: not significantly below the'
    ' best of our rows at that eps, by a paired test on the same images (exact two-sided McNema'
    'r; a t test where a seed term is known) whose p-value is Holm-adjusted over all the sectio'
    "n's per-eps tests (adjusted p >= 0.05); † marks a cell decided instead by overlap of the t"
    'wo 95% intervals, used when the images differ or an entry has no per-sample results. A bol'
    "d average or AUC is not significantly below the best row's by the whole-curve test (a pair"
    'ed sign-flip permutation test on the per-image scores, or t with the seed term; Holm over '
    "the section's rows). RobustBench rows are not compared. In the plot, the darker shade arou"
    'nd each curve is its pointwise 95% interval and the lighter one its simultaneous 95% band '
    '(all strengths at once: Clopper-Pearson at the Bonferroni level 1 - 0.05/m for m points; t'
    'he CSV has it as band_low@/band_high@).\n'
    '\n'
    '![robustness curves](curves.png)\n'
    '\n'
    '## cifar10 / Linf\n'
    '\n'
    '| # | model | source | architecture | params | training | clean (%) | 0.03 | 8/255 | 0.1 |'
    ' 0.17 | 0.25 | avg(0.03,0.1,0.17,0.25) | AUC | n | seeds | sanity |\n'
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
    '| 1 | WsrNet-Basic | wsr-bench | wsrnet_basic | 3.5M | PGD-7 AT, eps 8/255 | 85.0 (82.6–87'
    '.2) | **70.0** (67.1–72.8) | **66.0** (63.0–68.9) | **40.0** (36.9–43.1) | **20.0** (17.6–'
    '22.6) | **10.0** (8.2–12.0) | **35.0** | **37.4** | 1000 | 1 | ok; non-nested ? |\n'
    '| 2 | Bartoldson2024Adversarial_WRN-94-16 | RobustBench (published) | WideResNet-94-16 | –'
    ' | Adversarial Robustness Limits via Scaling-Law and Human-Alignment Studies | 93.7 | – | '
    '73.7 | – | – | – | – | – | – | – |  |\n'
    '| 3 | Amini2024MeanSparse_S-WRN-94-16 | RobustBench (published) | MeanSparse WideResNet-94'
    '-16 | – | MeanSparse: Post-Training Robustness Enhancement Through Mean-Centered Feature S'
    'parsification | 93.6 | – | 73.1 | – | – | – | – | – | – | – |  |\n'
    '\n'
    '## digits / Linf\n'
    '\n'
    '| # | model | source | architecture | params | training | clean (%) | 0.03 | 8/255 | 0.1 |'
    ' 0.17 | 0.25 | avg(0.03,0.1,0.17,0.25) | AUC | n | seeds | sanity |\n'
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
    '| 1 | &lt;b&gt;x&lt;/b&gt; | wsr-bench | wsrnet_basic | 3.5M | a\\|b | 85.0 (82.6–87.2) | *'
    '*70.0** (67.1–72.8) | **66.0** (63.0–68.9) | **40.0** (36.9–43.1) | **20.0** (17.6–22.6) |'
    ' **10.0** (8.2–12.0) | **35.0** | **37.4** | 1000 | 1 | ok; non-nested ? |\n'
    '\n'
    'RobustBench reference data: https://github.com/RobustBench/robustbench at commit 78fcc9e, '
    'model_info/<dataset>/<threat_model>/<Model>.json (MIT (RobustBench repository)).\n')
GOLDEN_CSV_COLUMNS = [
    'section', 'dataset', 'threat_model', 'model', 'source', 'architecture', 'params', 'training', 'n_examples',
    'seeds', 'clean', 'clean_ci_low', 'clean_ci_high', 'clean_band_low', 'clean_band_high', 'clean_seed_sd',
    'acc@0.03', 'ci_low@0.03', 'ci_high@0.03', 'band_low@0.03', 'band_high@0.03', 'tied@0.03', 'p@0.03',
    'p_holm@0.03', 'seed_sd@0.03', 'test@0.03', 'acc@8/255', 'ci_low@8/255', 'ci_high@8/255', 'band_low@8/255',
    'band_high@8/255', 'tied@8/255', 'p@8/255', 'p_holm@8/255', 'seed_sd@8/255', 'test@8/255', 'acc@0.1',
    'ci_low@0.1', 'ci_high@0.1', 'band_low@0.1', 'band_high@0.1', 'tied@0.1', 'p@0.1', 'p_holm@0.1',
    'seed_sd@0.1', 'test@0.1', 'acc@0.17', 'ci_low@0.17', 'ci_high@0.17', 'band_low@0.17', 'band_high@0.17',
    'tied@0.17', 'p@0.17', 'p_holm@0.17', 'seed_sd@0.17', 'test@0.17', 'acc@0.25', 'ci_low@0.25',
    'ci_high@0.25', 'band_low@0.25', 'band_high@0.25', 'tied@0.25', 'p@0.25', 'p_holm@0.25', 'seed_sd@0.25',
    'test@0.25', 'avg', 'avg_tied', 'avg_test', 'auc', 'auc_tied', 'auc_test', 'nesting_violations', 'sanity',
    'date', 'provenance',
]

"""Leaderboard: entry schema, JSON I/O, RobustBench reference rows, tables, HTML, curves, CSV (all without torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from wsr_bench.leaderboard import (
    Curve,
    LeaderboardEntry,
    build_leaderboard,
    entry_path,
    load_entries,
    load_entry,
    load_references,
    save_entry,
)
from wsr_bench.leaderboard.reference import SOURCE_LABEL, find_reference, provenance
from wsr_bench.leaderboard.schema import SchemaError, area_under_curve
from wsr_bench.leaderboard.tables import eps_columns, leaderboard_frame, select_references

REPO = Path(__file__).resolve().parents[1]


def make_entry(model="WsrNet-Basic", dataset="cifar10", eps=(0.03, 8 / 255, 0.10, 0.17, 0.25),
               acc=(0.7, 0.66, 0.4, 0.2, 0.1), **kw) -> LeaderboardEntry:
    curves = {"pgd": Curve("pgd", list(eps), list(acc)), "worst_case": Curve("worst_case", list(eps), list(acc))}
    defaults = dict(architecture="wsrnet_basic", dataset=dataset, threat_model="Linf", clean_accuracy=0.85,
                    curves=curves, n_examples=1000, seed=0, params=3_500_000, training="PGD-7 AT, eps 8/255",
                    sanity={"nonzero_gradients": True}, versions={"torch": "x"}, date="2025-01-01")
    return LeaderboardEntry(model=model, **{**defaults, **kw})


# ------------------------------------------------------------------------------------------------- schema
def test_entry_round_trips_through_json():
    e = make_entry()
    d = json.loads(json.dumps(e.to_dict(), allow_nan=False))
    assert d["schema_version"] == 2 and isinstance(d["clean_accuracy"], float)
    assert d["curves"]["worst_case"]["eps_label"] == ["0.03", "8/255", "0.1", "0.17", "0.25"]
    assert LeaderboardEntry.from_dict(d) == e
    assert e.avg_robust_accuracy == pytest.approx((0.7 + 0.4 + 0.2 + 0.1) / 4)  # 8/255 is not 0.03


def test_average_and_auc():
    partial = make_entry(eps=(0.03, 0.1), acc=(0.5, 0.25))
    assert partial.avg_robust_accuracy is None  # 0.17 and 0.25 were not evaluated
    c = Curve("worst_case", [0.1, 0.2], [0.5, 0.0])
    # trapezoids: (0..0.1) mean 0.75, (0.1..0.2) mean 0.25 -> area 0.1, normalised by 0.2
    assert area_under_curve(1.0, c) == pytest.approx(0.5)


@pytest.mark.parametrize("change, match", [
    ({"schema_version": 3}, "unsupported schema_version 3"),
    ({"clean_accuracy": 85.0}, r"fraction in \[0,1\]"),
    ({"clean_accuracy": "0.85"}, "must be a number"),
    ({"curves": {"pgd": {"attack": "pgd", "eps": [0.1], "accuracy": [0.5]}}}, "no 'worst_case' curve"),
    ({"curves": {"worst_case": {"attack": "w", "eps": [0.2, 0.1], "accuracy": [0.5, 0.4]}}}, "strictly increasing"),
    ({"colour": "red"}, "unknown entry field"),
    ({"model": ""}, "must not be empty"),
])
def test_bad_entries_are_refused(change, match):
    d = {**make_entry().to_dict(), **change}
    with pytest.raises(SchemaError, match=match):
        LeaderboardEntry.from_dict(d)


def test_save_refuses_to_overwrite_and_load_names_bad_files(tmp_path):
    e = make_entry()
    path = entry_path(tmp_path, e)
    assert path == tmp_path / "entries" / "cifar10" / "Linf" / "WsrNet-Basic.json"
    save_entry(e, path)
    with pytest.raises(FileExistsError, match="--force"):
        save_entry(e, path)
    save_entry(make_entry(clean_accuracy=0.9), path, force=True)
    assert load_entry(path).clean_accuracy == 0.9
    assert sorted(p.name for p in path.parent.iterdir()) == ["WsrNet-Basic.json"]  # no temp files left
    bad = tmp_path / "entries" / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: invalid JSON"):
        load_entries(tmp_path)
    bad.write_text(json.dumps({**e.to_dict(), "schema_version": 99}))
    with pytest.raises(ValueError, match="bad.json: unsupported schema_version"):
        load_entries(tmp_path)


# ------------------------------------------------------------------------------------------------- references
def test_reference_data_keeps_provenance_and_numbers():
    refs = load_references()
    assert len(refs) == 188
    assert provenance()["commit"] == "78fcc9e"
    z = find_reference("Zhang2019Theoretically", "cifar10", "Linf")
    assert (z.eps, z.eps_label, z.clean_accuracy, z.robust_accuracy) == (0.031, "0.031", 0.8492, 0.5308)
    assert z.provenance == "RobustBench/robustbench@78fcc9e:model_info/cifar10/Linf/Zhang2019Theoretically.json"
    amini = find_reference("Amini2024MeanSparse_S-WRN-70-16", "cifar10", "L2")
    assert amini.robust_accuracy == 0.8433 and amini.autoattack_accuracy == 0.8728  # 'external' wins, as upstream
    assert {r.eps_label for r in load_references("imagenet", "Linf")} == {"4/255"}


def test_reference_selection_top_k_plus_our_robustbench_models():
    ours = [make_entry(), make_entry(model="robustbench:Zhang2019Theoretically"), make_entry(dataset="digits")]
    chosen = select_references(ours, load_references(), top=3)
    assert {(r.dataset, r.threat_model) for r in chosen} == {("cifar10", "Linf")}
    assert len(chosen) == 4 and "Zhang2019Theoretically" in {r.model for r in chosen}


# ------------------------------------------------------------------------------------------------- tables / build
def test_frame_puts_reference_numbers_in_their_eps_column():
    refs = [find_reference("Zhang2019Theoretically", "cifar10", "Linf"),
            find_reference("Carmon2019Unlabeled", "cifar10", "Linf")]
    df = leaderboard_frame([make_entry(), make_entry(model="B", acc=(0.8, 0.7, 0.5, 0.3, 0.2))], refs)
    assert eps_columns(df) == ["acc@0.03", "acc@0.031", "acc@8/255", "acc@0.1", "acc@0.17", "acc@0.25"]
    assert list(df["model"][:2]) == ["B", "WsrNet-Basic"]  # ours first, best average first
    zhang = df[df["model"] == "Zhang2019Theoretically"].iloc[0]
    assert zhang["source"] == SOURCE_LABEL and zhang["acc@0.031"] == 0.5308 and pd.isna(zhang["acc@8/255"])


def _build(tmp_path, *entries, **kw):
    for e in entries:
        save_entry(e, entry_path(tmp_path, e))
    return build_leaderboard(tmp_path, **kw)


def test_build_writes_readme_html_png_and_csv(tmp_path):
    evil = make_entry(model="<script>alert(1)</script>", training="a | b & <i>c</i>", dataset="digits")
    res = _build(tmp_path, make_entry(), evil, reference_top=2)
    assert res.n_entries == 2 and res.n_references == 2
    readme = res.readme.read_text()
    assert "## cifar10 / Linf" in readme and "## digits / Linf" in readme
    assert "| 8/255 |" in readme and SOURCE_LABEL in readme and "78fcc9e" in readme
    assert "<script>" not in readme and "&lt;script&gt;" in readme and "a \\| b &amp;" in readme
    html = res.index.read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;i&gt;c&lt;/i&gt;" in html and 'src="curves.png"' in html
    assert html.count('class="sortable') >= 2 * 6  # clean, eps..., avg, AUC, n per section
    assert 'data-v="0.7"' in html and "function" in html  # numeric sort keys and the sorting script
    assert res.curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = pd.read_csv(res.csv)
    assert {"model", "source", "acc@8/255", "avg", "auc"} <= set(csv.columns)
    assert (csv["source"] == SOURCE_LABEL).sum() == 2


def test_build_with_no_entries_and_extra_reference_files(tmp_path):
    res = _build(tmp_path)
    assert res.n_entries == 0 and "No entries yet" in res.readme.read_text()
    extra = tmp_path / "reference" / "cifar10" / "Linf"
    extra.mkdir(parents=True)
    (extra / "MyPaper2025.json").write_text(json.dumps({"eps": "8/255", "clean_acc": "91.0",
                                                        "autoattack_acc": "99.0", "architecture": "X"}))
    res = _build(tmp_path, make_entry(), reference_top=1)
    assert "MyPaper2025" in res.readme.read_text()
    with pytest.raises(FileNotFoundError):
        build_leaderboard(tmp_path / "missing")


def test_leaderboard_builds_without_torch(tmp_path):
    """The leaderboard package must not need torch: block it and build a real leaderboard."""
    save_entry(make_entry(), entry_path(tmp_path, make_entry()))
    # an import hook refuses torch and timm (not sys.modules[...] = None: scipy.stats, which the intervals and tests
    # use, looks sys.modules['torch'] up to recognise tensors and fails on None)
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'timm'):\n"
            "            raise ModuleNotFoundError(f'blocked: {name}')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from wsr_bench.leaderboard import build_leaderboard\n"
            f"res = build_leaderboard({str(tmp_path)!r}); assert res.n_entries == 1\n"
            "assert 'torch' not in sys.modules; print('ok')")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr

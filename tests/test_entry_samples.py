"""Entries record the images they were computed on (indices + data hash) and each image's breaking eps, so two
real evaluations on the same images compare pairwise with ``wsr-bench leaderboard compare``."""

from __future__ import annotations

import pytest
import timm
import torch
from _wsr_eval_fixtures import digits, one_thread, tiny_cnn  # noqa: F401

import wsr_bench.models as wm
from wsr_bench.cli import main
from wsr_bench.evaluate import evaluate_to_entry
from wsr_bench.evaluate.entry import load_eval_data
from wsr_bench.evaluate.samples import data_sha256, snap_break_eps
from wsr_bench.leaderboard import load_entry


def test_data_hash_sees_pixels_order_and_labels_but_not_float_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 4, 4), generator=g).float() / 255
    y = torch.arange(6)
    h = data_sha256(x, y)
    assert len(h) == 64 and h == data_sha256(x.double() + 1e-4, y)  # same uint8 pixels
    assert h != data_sha256(x[[1, 0, 2, 3, 4, 5]], y[[1, 0, 2, 3, 4, 5]])
    bumped = x.clone()
    bumped[0, 0, 0, 0] = (bumped[0, 0, 0, 0] * 255 + (1 if bumped[0, 0, 0, 0] < 1 else -1)) / 255
    assert h != data_sha256(bumped, y)
    assert h != data_sha256(x, torch.tensor([0, 1, 2, 3, 4, 0]))
    assert h != data_sha256(x.reshape(6, 3, 2, 8), y)  # the shape is hashed too
    with pytest.raises(ValueError, match="N images and N labels"):
        data_sha256(x, y[:5])


def test_break_eps_are_snapped_onto_the_grid():
    grid = [0.03, 0.1, 0.17]
    b = torch.tensor([0.0, 0.1, float("inf"), 0.17], dtype=torch.float32)  # float32 0.1 != 0.1
    assert snap_break_eps(b, grid) == [0.0, 0.1, None, 0.17]
    with pytest.raises(ValueError, match="not on the evaluated grid"):
        snap_break_eps(torch.tensor([0.05]), grid)


def test_evaluate_to_entry_records_samples_that_reproduce_the_curve():
    _, _, x, y = digits()
    x, y = x[:24], y[:24]
    entry = evaluate_to_entry(tiny_cnn(), x, y, model_name="cnn", architecture="cnn", dataset="digits",
                              eps=[0.03, 0.1, 0.3], steps=2, batch_size=24, sanity=False, sample_indices=range(10, 34))
    s = entry.samples
    assert s.indices == list(range(10, 34)) and s.data_sha256 == data_sha256(x, y) and s.split == "test"
    for eps, acc in zip(entry.worst_case.eps, entry.worst_case.accuracy, strict=True):
        assert sum(s.correct_at(eps)) / 24 == acc
    assert all(b is None or b in (0.0, 0.03, 0.1, 0.3) for b in s.break_eps)
    low, high = entry.worst_case.ci_low[0], entry.worst_case.ci_high[0]
    assert low <= entry.worst_case.accuracy[0] <= high and high - low > 0.05


def test_two_real_evaluations_compare_and_a_different_image_set_is_refused(tmp_path, capsys):
    folder = tmp_path / "tiny"
    wm.export_model(timm.create_model("wsrnet_basic", init_channels=4, layers=3, num_classes=10), folder)
    common = ["--dataset", "digits", "--eps", "0.03,0.1", "--attack", "pgd", "--steps", "2", "--no-progress",
              "--no-sanity"]
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert main(["eval", "--model", str(folder), "--n-examples", "12", "--out", str(a), *common]) == 0
    assert main(["eval", "--model", "darts_v2", "--n-examples", "12", "--out", str(b), *common]) == 0
    assert main(["eval", "--model", "darts_v2", "--n-examples", "10", "--out", str(c), *common]) == 0
    capsys.readouterr()
    x, y, _ = load_eval_data("digits", 12)
    ea = load_entry(a)
    assert ea.samples.indices == list(range(12)) and ea.samples.data_sha256 == data_sha256(x, y)
    assert main(["leaderboard", "compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("digits / Linf: the same 12 test images in both")
    assert [line.split()[0] for line in out[4:7]] == ["clean", "0.03", "0.1"]
    assert main(["leaderboard", "compare", str(a), str(c)]) == 2
    assert "not computed on the same images: 12 vs 10 images" in capsys.readouterr().err

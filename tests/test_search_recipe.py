"""The official search recipe as defaults, what M_v stores and the EWSS queries, the naive baseline's white-box
noise, collapse diagnostics, the P-DARTS cap, and bad input to the search."""

import json

import pytest
import torch
import yaml
from test_search import TINY as SEARCH_TINY

import wsr_bench.search.naive as naive_module
import wsr_bench.search.wsr_nas as wsr_module
from wsr_bench.cli import main
from wsr_bench.config import SearchConfig, load_config
from wsr_bench.search import run_search
from wsr_bench.search.diagnostics import cell_counts, collapse_warning, search_report
from wsr_bench.search_space.genotype import Genotype, known_genotypes
from wsr_bench.search_space.ops import PRIMITIVES
from wsr_bench.search_space.supernet import SuperNet, derive_genotype

#: The official code's settings (shared/reference/official_search.md), by config key.
OFFICIAL = {
    "tau": 0.1, "arch.init_std": 1e-3, "arch.lr": 3e-5, "arch.betas": [0.5, 0.999], "arch.weight_decay": 1e-3,
    "weights.lr": 0.1, "weights.lr_min": 0.001, "weights.lr_schedule": "search_cosine", "weights.momentum": 0.9,
    "weights.weight_decay": 3e-4, "weights.grad_clip": 5.0, "warmup_recipe": "pgd", "train_eps": 0.03,
    "train_steps": 7, "attack_steps": 7, "attack_random_start": False, "population": 100, "search_steps": 200,
    "vle.memory": 100, "vle.store": "soft", "vle.hidden": 16, "vle.input_noise": 0.01, "vle.lr": 1e-3,
    "vle.weight_decay": 1e-3, "vle.batch": 64, "vle.warmup_passes": 500, "vle.passes": 500, "ewss_query": "stored",
    "objective_form": "squared", "nat_weight": 0.8, "robust_weight": 0.2, "ane.memory": 600, "ane.fill_batches": 11,
    "ane.batch": 64, "ane.targets": "leave_one_out", "ane.passes": 1, "ane.train_batch": 64, "ane.lr": 5e-4,
    "ane.weight_decay": 1e-4, "ane.lr_warmup": 4000, "genotype_rule": "alpha", "max_skip_normal": None,
    "init_channels": 16, "layers": 8,
}

TINY = {**SEARCH_TINY, "search": {**SEARCH_TINY["search"], "train_steps": 1, "attack_steps": 1,
                                  "vle": {**SEARCH_TINY["search"]["vle"], "warmup_passes": 3}}}


def _value(cfg, dotted: str):
    """``cfg.<key>`` or ``cfg.<section>.<key>``."""
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.parametrize("path", ["configs/search_basic.yaml", "configs/search_plus.yaml", None])
def test_official_recipe_is_the_default_and_in_the_shipped_configs(path):
    cfg = load_config(path).search if path else SearchConfig()
    for key, value in OFFICIAL.items():
        assert _value(cfg, key) == value, key
    assert cfg.vle.output == "standardised"  # the one deliberate difference of the VLE (docs/fidelity.md)


@pytest.mark.parametrize("name", ["search_naive_1", "search_naive_3", "search_naive_6"])
def test_naive_configs_share_the_recipe(name):
    cfg = load_config(f"configs/{name}.yaml").search
    assert cfg.method == "naive"
    for key in ("tau", "arch.lr", "weights.lr", "warmup_recipe", "population", "search_steps", "attack_random_start",
                "objective_form", "genotype_rule"):
        assert _value(cfg, key) == OFFICIAL[key], key


def test_mv_entries_are_where_the_ewss_queries(tiny_yaml, tmp_path, monkeypatch):
    """M_v stores softmax((A + xi) / tau) of the trained draw and the EWSS differentiates the VLE at that very
    point (the same Gumbel noise xi), not at fresh samples."""
    seen = []
    original = wsr_module.arch_step

    def spy(arch_weights, H, vle, objective, optimizer, maximize=False):
        seen.append((arch_weights.detach().clone(), H.detach().clone()))
        return original(arch_weights, H, vle, objective, optimizer, maximize=maximize)

    monkeypatch.setattr(wsr_module, "arch_step", spy)
    engines = []
    monkeypatch.setattr(wsr_module.WsrSearch, "build", _recording(wsr_module.WsrSearch.build, engines))
    run_search(load_config(tiny_yaml), tmp_path / "run")
    assert len(seen) == TINY["search"]["search_steps"]
    H_mem, _ = engines[0].vle_memory.tensors()
    _, queried = seen[-1]
    assert queried.shape[0] == 1 and torch.allclose(H_mem[-1], queried[0], atol=1e-6)
    assert not torch.equal(H_mem[-1], H_mem[-1].round())  # soft weights, not the one-hot sub-network


def _recording(build, engines):
    def wrapped(self):
        engines.append(self)
        return build(self)

    return wrapped


def test_naive_attacks_the_architecture_it_differentiates(tiny_yaml, tmp_path, monkeypatch):
    """Per D_v batch, the PGD noise is crafted on the very H through which the architecture gradient flows."""
    attacked, differentiated = [], []
    original_pgd = naive_module.pgd_noise

    def spy_pgd(model, x, y, eps, **kwargs):
        attacked.append(model.H.detach().clone())
        return original_pgd(model, x, y, eps, **kwargs)

    original_forward = SuperNet.forward

    def spy_forward(self, x, H=None):
        if H is not None and H.requires_grad and H.is_leaf:
            differentiated.append(H.detach().clone())
        return original_forward(self, x, H)

    monkeypatch.setattr(naive_module, "pgd_noise", spy_pgd)
    monkeypatch.setattr(SuperNet, "forward", spy_forward)
    cfg = load_config(tiny_yaml, ["search.method=naive", "search.n1=6", "search.n2=0", "search.estimator=none"])
    run_search(cfg, tmp_path / "naive")
    n_losses = 1 + len(cfg.search.strengths)
    assert attacked and len(differentiated) == n_losses * len(attacked)
    for k, H in enumerate(attacked):
        for H_grad in differentiated[k * n_losses:(k + 1) * n_losses]:
            assert torch.equal(H, H_grad)
    assert not all(torch.equal(attacked[0], H) for H in attacked[1:])  # a fresh draw per batch


def test_report_counts_on_a_hand_made_genotype():
    darts_v2 = known_genotypes()["darts_v2"].genotype
    assert cell_counts(darts_v2.normal) == {"edges": 8, "parameter_free": 2,
                                            "ops": {"skip_connect": 2, "sep_conv_3x3": 5, "dil_conv_3x3": 1}}
    counts = torch.zeros(2, len(PRIMITIVES), dtype=torch.long)
    counts[0, PRIMITIVES.index("skip_connect")] = 3
    counts[0, PRIMITIVES.index("sep_conv_3x3")] = 1
    alpha = torch.zeros(2, 14, len(PRIMITIVES))
    alpha[0, 0] = torch.tensor([0.0] * 7 + [50.0])  # one decided edge: entropy ~ 0
    report = search_report(darts_v2, alpha, counts)
    normal, reduce = report["cells"]["normal"], report["cells"]["reduce"]
    assert normal["parameter_free"] == 2 and not normal["collapsed"]
    assert reduce["parameter_free"] == 8 and reduce["collapsed"]  # DARTS-V2's reduction cell: pooling and skips
    assert normal["sampled"]["skip_connect"] == 3 and normal["sampled_parameter_free_share"] == 0.75
    assert normal["edge_entropy"][0] < 1e-3 and normal["edge_entropy"][1] == pytest.approx(report["max_entropy"])
    warning = collapse_warning(report)
    assert warning.startswith("warning:") and "reduce cell 8/8" in warning and "\n" not in warning
    good = Genotype(normal=darts_v2.normal, normal_concat=(2, 3, 4, 5), reduce=darts_v2.normal,
                    reduce_concat=(2, 3, 4, 5))
    assert collapse_warning(search_report(good, alpha, counts)) is None


def test_p_darts_cap_and_the_official_derivation_rule():
    alpha = torch.zeros(2, 14, len(PRIMITIVES))
    alpha[0, :, PRIMITIVES.index("skip_connect")] = 1.0 + 0.01 * torch.arange(14)  # skip wins every edge
    alpha[0, :, PRIMITIVES.index("sep_conv_3x3")] = 0.5
    alpha[:, :, PRIMITIVES.index("none")] = 5.0  # never derived
    free = derive_genotype(alpha, 4, "alpha")
    assert [op for op, _ in free.normal] == ["skip_connect"] * 8
    capped = derive_genotype(alpha, 4, "alpha", max_skip_normal=2)
    ops = [op for op, _ in capped.normal]
    assert ops.count("skip_connect") == 2 and ops.count("sep_conv_3x3") == 6
    assert capped.reduce == free.reduce  # the cap touches only the normal cell
    alpha[0, :, PRIMITIVES.index("max_pool_3x3")] = 0.9  # pooling is next in line once skip is capped
    pooled = derive_genotype(alpha, 4, "alpha", max_skip_normal=2)
    assert sum(op in ("skip_connect", "max_pool_3x3") for op, _ in pooled.normal) == 8
    both = derive_genotype(alpha, 4, "alpha", max_skip_normal=2, max_parameter_free_normal=3)
    ops = [op for op, _ in both.normal]
    assert ops.count("skip_connect") <= 2 and ops.count("skip_connect") + ops.count("max_pool_3x3") == 3
    assert ops.count("sep_conv_3x3") == 5
    # raw A and softmax(A) rank a node's inputs differently when the strongest edge is split between two ops:
    # node 3 has edges 2, 3, 4 from inputs 0, 1, 2
    a = torch.zeros(2, 14, len(PRIMITIVES))
    a[:, 2, 4], a[:, 2, 5] = 2.0, 1.9  # raw max 2.0, softmax max 0.37
    a[:, 3, 4] = 1.9  # raw 1.9, softmax 0.49
    a[:, 4, 4] = 1.8  # raw 1.8, softmax 0.46
    assert derive_genotype(a, 4, "alpha").normal[2:4] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
    assert derive_genotype(a, 4, "softmax").normal[2:4] == (("sep_conv_3x3", 1), ("sep_conv_3x3", 2))


def test_search_writes_report_and_picture_and_warns_in_one_line(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["search", str(tiny_yaml), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    report = json.loads((out / "search_report.json").read_text())
    assert set(report["cells"]) == {"normal", "reduce"}
    assert (out / "genotype.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "collapse check:" in captured.out and "collapse check:" in (out / "search.log").read_text()
    collapsed = any(c["collapsed"] for c in report["cells"].values())
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: derived cell")]
    assert len(warnings) == (1 if collapsed else 0)
    sampled = sum(report["cells"]["normal"]["sampled"].values())
    assert sampled == 14 * (TINY["search"]["population"] + TINY["search"]["search_steps"])


@pytest.mark.parametrize(("override", "match"), [
    ("search.max_skip_normal=-1", "max_skip_normal must be null or an edge count in 0..8"),
    ("search.max_skip_normal=9", "max_skip_normal must be null or an edge count in 0..8"),
    ("search.max_parameter_free_normal=9", "max_parameter_free_normal must be null or an edge count in 0..8"),
    ("search.tau=0", "search.tau must be > 0"),
    ("search.vle.output=sigmoid", "search.vle.output must be one of"),
    ("search.search_steps=0", "search.search_steps must be >= 1"),
    ("search.arch.lr=-0.1", "search.arch.lr must be > 0"),
    ("search.vle.ridge=0", "search.vle.ridge must be > 0"),
    ("search.vle.model=mlp", "search.vle.model must be one of lstm | additive"),
    ("search.ewss_query=mean", "search.ewss_query must be one of stored | fresh | expected"),
    ("search.direction=up", "search.direction must be one of minimize | maximize"),
    ("search.vle_modle=additive", "vle_modle"),
    ("search.vle.covariates=true", "terms of the additive VLE"),
])
def test_bad_recipe_values_are_one_line_errors(tiny_yaml, tmp_path, capsys, override, match):
    out = tmp_path / "bad"
    assert main(["search", str(tiny_yaml), "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and match in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_genotype_with_a_wrong_op_is_a_one_line_error(tmp_path, capsys):
    bad = known_genotypes()["darts_v2"].genotype.to_dict()
    bad["normal"][0][0] = "sep_conv_9x9"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    out = tmp_path / "train"
    assert main(["train", "configs/demo.yaml", "--model", str(path), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "sep_conv_9x9" in err and len(err.strip().splitlines()) == 1
    assert not (out / "checkpoint.pt").exists()


def test_resume_with_a_changed_recipe_key_is_refused_and_overwrites_nothing(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["search", str(tiny_yaml), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args + ["--set", "search.search_steps=1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(args + ["--resume", "--set", "search.search_steps=1", "--set", "search.tau=0.5"]) == 2
    err = capsys.readouterr().err
    assert "search.tau" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

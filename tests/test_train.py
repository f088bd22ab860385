"""Adversarial training: recipes, train_epoch / eval_epoch, the driver (checkpoints, exact resume, NaN, wrong
model), augmentation and the ``wsr-bench train`` command. Tiny models and synthetic 16x16 data, CPU only."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from wsr_bench.cli import main
from wsr_bench.config import ConfigError, config_from_dict, load_config
from wsr_bench.data.datasets import as_tensors, get_synthetic, load_dataset, make_loader
from wsr_bench.search_space.ops import Normalize
from wsr_bench.train import (
    RECIPES,
    NonFiniteLossError,
    ResumeError,
    TrainingDivergedError,
    TrainRecipe,
    adversarial_examples,
    build_model,
    eval_epoch,
    recipe_loss,
    train_epoch,
    train_model,
)
from wsr_bench.train.augment import cutout, make_augment, random_crop, random_flip


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cnn(bn: bool = True) -> nn.Module:
    norm = nn.BatchNorm2d(8) if bn else nn.Identity()
    return nn.Sequential(Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), nn.Conv2d(3, 8, 3, padding=1), norm,
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def toy_loader():
    x, y = get_synthetic(n=64, image_size=8, seed=1)
    return make_loader(TensorDataset(x, y), batch_size=16, shuffle=True, seed=0)


def tiny_cfg(**train):
    return config_from_dict({
        "seed": 0, "device": "cpu", "data": {"name": "synthetic", "batch_size": 64, "eval_batch_size": 64},
        "model": {"init_channels": 4, "layers": 3},
        "train": {"recipe": "pgd", "epochs": 2, "lr": 0.05, "steps": 2, "eval_examples": 16, "eval_steps": 2,
                  **train}})


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic", image_size=16, seed=0)


# ---------------------------------------------------------------------------------------------------- recipes
def test_recipe_validation_and_step_sizes():
    with pytest.raises(ValueError, match="unknown training recipe 'fgsm'; expected one of pgd, trades, fgsm_rs"):
        TrainRecipe(name="fgsm")
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        TrainRecipe(eps=8)
    with pytest.raises(ValueError, match="steps"):
        TrainRecipe(steps=0)
    with pytest.raises(ValueError, match="multi_eps entry"):
        TrainRecipe(name="multi", multi_eps=(0.03, 2.0))
    assert TrainRecipe(eps=0.07, steps=7).attack_step_size() == pytest.approx(0.025)
    assert TrainRecipe(name="fgsm_rs", eps=0.04).attack_step_size() == pytest.approx(0.05)
    assert TrainRecipe(step_size=0.01).attack_step_size() == 0.01
    assert TrainRecipe(name="clean", eps=0.0).label == "clean"
    assert RECIPES == ("pgd", "trades", "fgsm_rs", "multi", "clean")
    with pytest.raises(ConfigError, match="unknown training recipe train.recipe='free'"):
        load_config(None, ["train.recipe=free"])


def test_adversarial_examples_stay_in_the_ball_restore_mode_and_keep_bn_stats():
    torch.manual_seed(0)
    model = tiny_cnn()
    x, y = get_synthetic(n=16, image_size=8, seed=2)
    model.train()
    running = model[2].running_mean.clone()
    x_adv = adversarial_examples(model, x, y, eps=0.1, steps=5)
    assert model.training and torch.equal(model[2].running_mean, running)  # eval mode during the attack
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    adversarial_examples(model, x, y, eps=0.1, steps=1)
    assert not model.training
    assert torch.equal(adversarial_examples(model, x, y, eps=0.0, steps=3), x)


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_trains_one_short_epoch(name, toy_loader):
    torch.manual_seed(0)
    model = tiny_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    recipe = TrainRecipe(name=name, eps=0.05, steps=2, multi_eps=(0.02, 0.05))
    stats = train_epoch(model, toy_loader, opt, recipe, grad_clip=5.0, max_steps=2)
    assert set(stats) >= {"loss", "acc", "n", "steps", "seconds", "attack_seconds"}
    assert stats["steps"] == 2 and stats["n"] == 32 * (2 if name == "multi" else 1)
    assert torch.isfinite(torch.tensor(stats["loss"])) and 0 <= stats["acc"] <= 1
    assert stats["attack_seconds"] > 0 and (name != "clean" or stats["attack_seconds"] < 0.5 * stats["seconds"])
    assert model.training and any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_trades_loss_is_natural_ce_plus_beta_kl():
    torch.manual_seed(0)
    model = tiny_cnn().eval()  # eval: both forwards see the same BN statistics
    x, y = get_synthetic(n=8, image_size=8, seed=3)
    x_adv = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)

    def forward(inp, aux):
        return model(inp), None

    for beta in (0.0, 6.0):
        loss, logits = recipe_loss(TrainRecipe("trades", trades_beta=beta), forward, x, y, x_adv, y)
        kl = F.kl_div(F.log_softmax(model(x_adv), 1), F.softmax(model(x), 1), reduction="batchmean")
        assert loss.item() == pytest.approx((F.cross_entropy(model(x), y) + beta * kl).item(), rel=1e-6)
        assert torch.allclose(logits, model(x_adv))


def test_nan_loss_raises_and_leaves_the_weights_alone(toy_loader):
    class NaNNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 10)

        def forward(self, x):
            return self.fc(x.flatten(1)) * float("nan")

    model = NaNNet()
    w = model.fc.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss .nan. at step 0") as info:
        train_epoch(model, toy_loader, opt, TrainRecipe("clean", eps=0.0))
    assert isinstance(info.value, ValueError) and torch.equal(model.fc.weight, w)


def test_eval_epoch_clean_versus_pgd_and_callbacks(toy_loader):
    torch.manual_seed(0)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen = []
    stats = train_epoch(model, toy_loader, opt, TrainRecipe("clean", eps=0.0),
                        step_callback=lambda step, info: seen.append((step, info["n"])) or step == 1)
    assert seen == [(0, 16), (1, 16)] and stats["steps"] == 2  # a truthy return ends the epoch
    clean = eval_epoch(model, toy_loader)
    robust = eval_epoch(model, toy_loader, attack=TrainRecipe(eps=0.3, steps=5))
    assert model.training and clean["n"] == robust["n"] == 64
    assert robust["acc"] <= clean["acc"] and robust["loss"] > clean["loss"]
    assert robust["eps"] == 0.3 and robust["attack_steps"] == 5


def test_auxiliary_head_loss_and_its_input_size_check(splits):
    torch.manual_seed(0)
    data = load_dataset("synthetic", image_size=32, seed=0, synthetic_size=32)
    cfg = tiny_cfg()
    cfg.model.auxiliary = True
    model = build_model("darts_v2", cfg, data)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    aux_before = model.auxiliary_head[-1].weight.detach().clone()
    train_epoch(model, make_loader(data.train_t, 8), opt, TrainRecipe("clean", eps=0.0), aux_weight=0.4, max_steps=1)
    assert not torch.equal(aux_before, model.auxiliary_head[-1].weight)
    with pytest.raises(ValueError, match="forward_with_aux"):
        train_epoch(tiny_cnn(), make_loader(data.train_t, 8), opt, TrainRecipe("clean", eps=0.0), aux_weight=0.4)
    with pytest.raises(ValueError, match="model.auxiliary needs 32x32 inputs"):
        train_model(cfg, build_model("darts_v2", cfg, splits), splits, "unused-folder")


def test_augmentations():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    crop = random_crop(x, 2)
    assert crop.shape == x.shape and (crop == 0).any()
    assert torch.equal(random_crop(x, 0), x)
    flipped = random_flip(x)
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x, strict=True))
    holes = (cutout(torch.ones(4, 1, 8, 8), 4) == 0).sum(dim=(1, 2, 3))
    assert ((holes > 0) & (holes <= 16)).all()
    assert make_augment(tiny_cfg().train) is None
    assert make_augment(tiny_cfg(augment="crop_flip", cutout=2).train)(x).shape == x.shape


# ---------------------------------------------------------------------------------------------------- driver
def _train(cfg, splits, out, model="darts_v2", **kw):
    torch.manual_seed(cfg.seed)
    return train_model(cfg, build_model(model, cfg, splits), splits, out, device="cpu", progress=False, **kw)


def test_resume_is_exact_and_writes_metrics_log_and_export(tmp_path, splits):
    from wsr_bench.models import load_exported

    cfg = tiny_cfg(augment="crop_flip", cutout=4)
    cfg.model.drop_path_rate = 0.2
    full = _train(cfg, splits, tmp_path / "a")
    part = _train(cfg, splits, tmp_path / "b", stop_after=1)
    assert not part.finished and part.model_dir is None and not (tmp_path / "b" / "model").exists()
    rest = _train(cfg, splits, tmp_path / "b", resume=True)
    assert rest.start_epoch == 1 and rest.finished and full.finished
    a, b = (load_exported(tmp_path / d / "model").state_dict() for d in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(ln) for ln in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and [r["drop_path_prob"] for r in lines] == [0.0, 0.1]
    resumed = [json.loads(ln) for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in lines]
    assert {"clean_acc", "robust_acc", "lr", "train_acc", "attack_seconds"} <= set(lines[-1])
    assert "epoch 2/2" in (tmp_path / "a" / "train.log").read_text()
    config = json.loads((tmp_path / "a" / "model" / "config.json").read_text())
    assert config["architecture"] == "darts_v2" and config["wsr_bench"]["recipe"].startswith("PGD-2")


def test_a_clean_run_at_eps_0_checks_clean_accuracy_only(tmp_path, splits):
    """A clean recipe may say eps 0: the end-of-epoch check then has no radius to attack at and reports clean
    accuracy alone (it used to build a PGD attack at eps 0 and stop with an error)."""
    res = _train(tiny_cfg(recipe="clean", eps=0.0, epochs=1), splits, tmp_path / "c")
    last = json.loads((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()[-1])
    assert res.finished and "clean_acc" in last and "robust_acc" not in last
    assert "test clean" in (tmp_path / "c" / "train.log").read_text()


def test_bad_resumes_and_nan_keep_the_checkpoint(tmp_path, splits):
    cfg = tiny_cfg(steps=1, eval_examples=0)
    out = tmp_path / "run"
    _train(cfg, splits, out, stop_after=1)
    ckpt = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(FileExistsError, match="pass --resume"):
        _train(cfg, splits, out)
    with pytest.raises(ResumeError, match=r"written for darts_v2 \(init_channels=4.*model to train is racl"):
        _train(cfg, splits, out, model="racl", resume=True)
    cfg.model.init_channels = 6
    with pytest.raises(ResumeError, match="init_channels=6"):
        _train(cfg, splits, out, resume=True)
    cfg = tiny_cfg(steps=1, eval_examples=0)
    x, y = as_tensors(splits.train_v)
    x[5] = float("nan")  # one poisoned image: the batch holding it has a NaN loss
    poisoned = dataclasses.replace(splits, train_v=TensorDataset(x, y))
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch 2/2, step \d/4: the loss is nan; the last "
                                                    r"good checkpoint .*after epoch 1\) is kept"):
        _train(cfg, poisoned, out, resume=True)
    assert (out / "checkpoint.pt").read_bytes() == ckpt
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.jsonl", "train.log"]


def test_resume_with_a_new_lr_scales_the_rest_of_the_schedule(tmp_path, splits):
    cfg = tiny_cfg(steps=1, eval_examples=0, epochs=3, lr=0.05)
    _train(cfg, splits, tmp_path, stop_after=1)
    cfg.train.lr = 0.01  # e.g. after a divergence
    summary = _train(cfg, splits, tmp_path, resume=True, stop_after=2)
    assert summary.final["epoch"] == 2
    assert summary.final["lr"] == pytest.approx(0.01 * 0.25)  # cosine at 2/3 of the run, from the new lr


def test_cli_train_runs_and_reports_errors(tmp_path, capsys):
    import yaml

    from wsr_bench.models import load_exported

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump({"device": "cpu", "data": {"name": "synthetic", "batch_size": 64},
                                        "model": {"init_channels": 4, "layers": 3},
                                        "train": {"epochs": 1, "steps": 1, "eval_examples": 16, "eval_steps": 1}}))
    out = tmp_path / "run"
    args = ["train", str(cfg_path), "--out", str(out), "--model", "darts_v2", "--no-progress"]
    assert main(args + ["--set", "train.recipe=fgsm_rs"]) == 0
    printed = capsys.readouterr().out
    assert "trained darts_v2" in printed and "FGSM-RS (eps 0.031)" in printed and "PGD-1@0.031" in printed
    assert load_config(out / "config.yaml").train.recipe == "fgsm_rs"
    assert load_exported(out / "model")(torch.rand(2, 3, 16, 16)).shape == (2, 10)
    assert main(args) == 2
    assert "already holds a training checkpoint" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0  # finished run: nothing to train, export refreshed
    assert main(args + ["--resume", "--set", "model.init_channels=6"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert load_config(out / "config.yaml").model.init_channels == 4  # a refused resume changes nothing
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "x"), "--set", "train.recipe=bogus"]) == 2
    assert "error: unknown training recipe train.recipe='bogus'" in capsys.readouterr().err

"""channels_last by default, contiguous on request, bf16 autocast for training only: layouts, precision, layout-free
checkpoints and exports, and the bad-input errors.

The tests that take the ``device`` fixture run on ``$WSR_BENCH_TEST_DEVICE`` (default ``cpu``);
``benchmarks/gpu_check.py`` runs them again with ``cuda``.
"""

from __future__ import annotations

import os

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import wsr_bench.models  # noqa: F401  (timm registration)
from wsr_bench.cli import main
from wsr_bench.config import ConfigError, config_from_dict, load_config
from wsr_bench.data.datasets import as_tensors, load_dataset
from wsr_bench.evaluate.spectrum import evaluate_spectrum
from wsr_bench.infra.runtime import amp_autocast, check_amp, memory_format_of, set_memory_format
from wsr_bench.models import export_model, load_exported
from wsr_bench.search.wsr_nas import WsrSearch
from wsr_bench.train import LoopOptions, TrainRecipe, train_epoch, train_model


@pytest.fixture(scope="module")
def device() -> str:
    """The device these tests run on: ``$WSR_BENCH_TEST_DEVICE`` (``cpu`` unless the GPU check sets ``cuda``)."""
    name = os.environ.get("WSR_BENCH_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"WSR_BENCH_TEST_DEVICE={name} but torch sees no CUDA device")
    return name


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic", image_size=16, seed=0)


def tiny(name: str = "wsrnet_basic", seed: int = 0) -> nn.Module:
    """A tiny DARTS network with every kind of op the layouts touch (dilated, strided, pooled)."""
    torch.manual_seed(seed)
    return timm.create_model(name, init_channels=4, layers=3, num_classes=10)


def conv_dtypes(model: nn.Module) -> tuple[list[torch.dtype], list]:
    """Record the output dtype of every Conv2d call of ``model``; returns the list and the hook handles."""
    seen: list[torch.dtype] = []
    handles = [m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
               for m in model.modules() if isinstance(m, nn.Conv2d)]
    return seen, handles


# ------------------------------------------------------------------------------------------------ layouts
def test_channels_last_converts_weights_and_inputs_and_contiguous_undoes_it():
    model = tiny()
    x = torch.rand(4, 3, 16, 16)
    ref = model.eval()(x)
    set_memory_format(model, "channels_last")
    set_memory_format(model, "channels_last")  # idempotent: one hook
    assert memory_format_of(model) == "channels_last" and len(model._forward_pre_hooks) == 1
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    seen = []
    conv.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)
    assert seen and all(seen)  # inputs arrive as NHWC although x is NCHW
    set_memory_format(model, "contiguous")
    assert memory_format_of(model) == "contiguous" and not model._forward_pre_hooks
    assert conv.weight.is_contiguous()
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)


def test_avg_pool_and_strided_dilated_convs_match_their_reference_ops():
    """The two ops rewritten for speed in channels_last compute what DARTS' originals compute."""
    from wsr_bench.search_space.ops import AvgPool3x3, DepthwiseConv2d

    torch.manual_seed(0)
    for size in (5, 7, 14, 16):
        x = torch.randn(2, 6, size, size, dtype=torch.float64)
        for stride in (1, 2):
            ref = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
            torch.testing.assert_close(AvgPool3x3(stride)(x), ref)
            torch.testing.assert_close(AvgPool3x3(stride)(x.contiguous(memory_format=torch.channels_last)), ref)
        for k in (3, 5):
            conv = DepthwiseConv2d(6, 6, k, 2, k - 1, dilation=2, groups=6, bias=False).double()
            ref = F.conv2d(x, conv.weight, None, 2, k - 1, 2, 6)
            torch.testing.assert_close(conv(x), ref)
            out = conv(x.requires_grad_(True))
            (g,) = torch.autograd.grad(out.square().sum(), x)
            (g_ref,) = torch.autograd.grad(F.conv2d(x, conv.weight, None, 2, k - 1, 2, 6).square().sum(), x)
            torch.testing.assert_close(g, g_ref)
            x = x.detach()


def test_a_model_saved_in_either_layout_loads_into_either(tmp_path):
    ref_model = tiny().eval()
    x = torch.rand(3, 3, 16, 16)
    ref = ref_model(x)
    for saved in ("channels_last", "contiguous"):
        folder = export_model(set_memory_format(tiny(), saved), tmp_path / saved)
        for loaded in ("channels_last", "contiguous"):
            model = set_memory_format(load_exported(folder), loaded)
            torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)
            state = model.state_dict()
            assert all(torch.equal(state[k].contiguous(), v.contiguous()) for k, v in ref_model.state_dict().items())


def test_a_checkpoint_written_in_one_layout_resumes_in_the_other(splits, tmp_path, device):
    raw = {"seed": 0, "device": device, "data": {"name": "synthetic", "batch_size": 64, "eval_batch_size": 64},
           "model": {"init_channels": 4, "layers": 3},
           "train": {"recipe": "pgd", "epochs": 2, "lr": 0.05, "steps": 1, "eval_examples": 16, "eval_steps": 1}}
    cl = config_from_dict({**raw, "memory_format": "channels_last"})
    contiguous = config_from_dict({**raw, "memory_format": "contiguous"})
    torch.manual_seed(0)
    first = train_model(cl, tiny(), splits, tmp_path, device=device, progress=False, stop_after=1)
    assert first.epochs_done == 1 and not first.finished
    model = tiny(seed=5)
    done = train_model(contiguous, model, splits, tmp_path, resume=True, device=device, progress=False)
    assert done.finished and done.start_epoch == 1 and memory_format_of(model) == "contiguous"
    assert torch.isfinite(torch.tensor(done.final["train_loss"]))


# ------------------------------------------------------------------------------------------------ precision
@pytest.mark.parametrize("memory_format", ["channels_last", "contiguous"])
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_training_runs_in_every_layout_and_precision(memory_format, amp, splits, device):
    model = set_memory_format(tiny().to(device), memory_format)
    x, y = as_tensors(splits.train_t, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen, handles = conv_dtypes(model)
    stats = train_epoch(model, [(x, y)], opt, TrainRecipe("pgd", eps=0.03, steps=2), LoopOptions(amp=amp),
                        device=device)
    for h in handles:
        h.remove()
    assert stats["n"] == 32 and torch.isfinite(torch.tensor(stats["loss"]))
    expected = torch.bfloat16 if amp == "bf16" else torch.float32
    assert seen and set(seen) == {expected}  # the training attack and the forward pass alike
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32


def test_evaluation_stays_float32_and_both_layouts_give_the_same_verdicts(splits, device):
    x, y = as_tensors(splits.test, 24)
    model = tiny().eval()
    seen, handles = conv_dtypes(model)
    results = [evaluate_spectrum(model, x, y, device=device, memory_format=fmt, eps=[0.01, 0.03, 0.1],
                                 attack="pgd", steps=3) for fmt in ("contiguous", "channels_last")]
    for h in handles:
        h.remove()
    assert set(seen) == {torch.float32}
    torch.testing.assert_close(results[0].break_eps, results[1].break_eps)
    assert memory_format_of(model) == "contiguous"  # the caller's model is given back as it was


def test_evaluation_gives_the_callers_models_back_in_their_layout_and_mode(splits, device):
    """evaluate_spectrum runs in channels_last (its default) but changes neither the layout nor the training mode of
    the model (or the surrogate) it was given: they come back as they went in, only on ``device``."""
    x, y = as_tensors(splits.test, 8)
    model, surrogate = tiny(seed=0).train(), set_memory_format(tiny(seed=1), "channels_last").eval()
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1)
    layouts: list[bool] = []
    conv.register_forward_pre_hook(lambda m, a: layouts.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    evaluate_spectrum(model, x, y, device=device, eps=[0.03], attack="pgd,transfer", steps=2, surrogate=surrogate)
    assert layouts and all(layouts)  # it ran in channels_last ...
    assert memory_format_of(model) == "contiguous" and conv.weight.is_contiguous() and model.training  # ... and back
    assert memory_format_of(surrogate) == "channels_last" and not surrogate.training
    layouts.clear()
    evaluate_spectrum(model, x, y, device=device, eps=[0.03], steps=2, memory_format="contiguous")
    assert layouts and not any(layouts) and memory_format_of(model) == "contiguous"


def test_search_bf16_trains_in_bf16_and_measures_in_float32(tmp_path, device, monkeypatch):
    cfg = config_from_dict({
        "seed": 0, "device": device, "data": {"name": "digits", "image_size": 16, "batch_size": 16,
                                                "eval_batch_size": 32},
        "search": {"init_channels": 4, "layers": 3, "population": 1, "search_steps": 1, "train_limit": 16,
                   "val_limit": 16, "train_steps": 1, "attack_steps": 1, "ane": {"batch": 4},
                   "vle": {"passes": 1, "warmup_passes": 1}, "amp": "bf16", "progress": False}})
    engine = WsrSearch(cfg, tmp_path, device)
    assert memory_format_of(engine.supernet) == "channels_last"
    seen, handles = conv_dtypes(engine.supernet)
    with monkeypatch.context() as m:  # BatchNorm re-estimation around the training is forward-only, float32
        m.setattr(engine, "recalibrate_bn", lambda H: None)
        engine.train_arch(engine.population[0].hard, engine.pgd_recipe(), desc="t")
    trained = set(seen)
    seen.clear()
    times: dict[str, float] = {}
    losses = engine.measure(engine.population[0].hard, times)
    for h in handles:
        h.remove()
    assert trained == {torch.bfloat16} and set(seen) == {torch.float32}
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_memory_format_or_amp_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="memory_format must be one of channels_last, contiguous, got 'nhwc'"):
        config_from_dict({"memory_format": "nhwc"})
    with pytest.raises(ConfigError, match="train.amp must be one of none, bf16, got 'fp16'"):
        config_from_dict({"train": {"amp": "fp16"}})
    with pytest.raises(ConfigError, match=r"search.amp must be one of none \| bf16, got 'fp16'"):
        config_from_dict({"search": {"amp": "fp16"}})
    with pytest.raises(ValueError, match="memory_format must be one of"):
        set_memory_format(tiny(), "nhwc")
    with pytest.raises(ValueError, match="amp must be one of none, bf16"):
        check_amp("fp16", "cpu")
    with pytest.raises(ValueError, match="amp must be one of"):
        amp_autocast("cpu", "fp8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  amp: half\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == "error: train.amp must be one of none, bf16, got 'half'"
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg), "--out", str(tmp_path / "o"), "--memory-format", "nhwc"])
    assert exc.value.code == 2
    assert "invalid choice: 'nhwc' (choose from 'channels_last', 'contiguous')" in capsys.readouterr().err
    assert load_config(None, ["memory_format=contiguous"]).memory_format == "contiguous"

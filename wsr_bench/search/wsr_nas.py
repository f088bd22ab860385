"""Wsr-NAS (paper Algorithm 1): a one-shot search over many adversarial strengths, made cheap by the AN-Estimator
(noise at ``N2`` strengths estimated from PGD anchors at ``N1``) and the EWSS (architecture gradient through a
validation-loss estimator instead of through the super-network on the adversarial validation sets).

Tasks (each followed by a checkpoint):

1. ``warmup`` x N: train population architecture ``H_i`` for ``warmup_epochs`` (lines 3-5).
2. ``population`` x N: adversarially train ``H_i`` one epoch on D_t (line 8); push ``ane.fill_batches`` batches of
   D_t images with their PGD anchors and a PGD noise at a random strength into M_a (leave-one-out targets, as the
   official code) and train the AN-Estimator ``ane.passes`` passes over M_a (9-10); on D_v generate PGD anchors at
   the ``N1`` PGD strengths and estimated noise at the ``N2`` others, measure the clean and per-strength
   validation losses (11-15) and push ``(H_i, L)`` into M_v (16).
3. ``vle_warmup``: train the VLE ``vle.warmup_passes`` (= K_v) passes over M_v (18).
4. ``search`` x T: sample ``H`` from GumbelSoftmax(A, xi, tau), do step 2 for it (20-22), train the VLE
   ``vle.passes`` passes (23) and update ``A`` with the EWSS (24), querying the VLE at the soft weights of the
   same draw ``xi`` that was just trained and stored in M_v (official code).

What is trained and attacked is always the one-hot sub-network; what M_v stores (``vle.store``) is, by default, the
soft weights ``softmax((A + xi) / tau)`` of the same draw, so the EWSS queries the VLE where it was trained.

Before ``H`` is trained, the VLE's prediction of its objective is recorded (``objective_pred``) beside the
measured one (``objective``): a running out-of-sample check of the estimator.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from wsr_bench.config import ExperimentConfig
from wsr_bench.estimators.noise import NoiseMemory, build_estimator, pgd_noise, train_estimator
from wsr_bench.estimators.val_loss import LossMemory, build_vle, fit_vle
from wsr_bench.infra.distributed import joined_process_group
from wsr_bench.infra.runtime import resolve_device
from wsr_bench.rules import SEARCH_METHODS
from wsr_bench.search.engine import ArchSample, SearchEngine, Task, TaskCallback
from wsr_bench.search.objective import arch_step, ewss_query_points
from wsr_bench.search_space.genotype import Genotype

logger = logging.getLogger(__name__)

__all__ = ["WsrSearch", "run_search"]


class WsrSearch(SearchEngine):
    """Algorithm 1 with the AN-Estimator and the EWSS (see module docstring)."""

    method = "wsr"

    def build(self) -> None:
        s, sp = self.scfg, self.splits
        _, edges, ops = self.supernet.arch_weights.shape
        self.vle = build_vle(s.vle.model, edges, ops, len(self.strengths) + 1, hidden=s.vle.hidden,
                             output=s.vle.output, ridge=s.vle.ridge,
                             op_ridge=s.vle.op_ridge).to(self.device)
        params = list(self.vle.parameters())  # the additive VLE is fitted in closed form: nothing to optimise
        self.vle_opt = torch.optim.Adam(params, lr=s.vle.lr, weight_decay=s.vle.weight_decay) if params else None
        self.vle_memory = LossMemory(s.vle.memory)
        self.vle_ready = False
        self.ane, self.ane_opt, self.ane_sched, self.ane_memory = None, None, None, None
        if self.est_eps:
            self.ane = build_estimator(s.estimator, in_chans=sp.in_chans, image_size=sp.image_size,
                                       strength=s.ane.strength_feed).to(self.device)
            if self.ane.param_count():
                self.ane_opt = torch.optim.AdamW(self.ane.parameters(), lr=s.ane.lr, weight_decay=s.ane.weight_decay)
                warm = max(s.ane.lr_warmup, 1)
                self.ane_sched = torch.optim.lr_scheduler.LambdaLR(self.ane_opt, lambda k: min(1.0, (k + 1) / warm))
            self.ane_memory = NoiseMemory(s.ane.memory)
        # position of every (sorted) strength in cat([pgd noises, estimated noises])
        order = self.pgd_eps + self.est_eps
        self.perm = [order.index(e) for e in self.strengths]

    def tasks(self) -> list[Task]:
        n, t = self.scfg.population, self.scfg.search_steps
        return ([Task("warmup", i) for i in range(n)] + [Task("population", i) for i in range(n)]
                + [Task("vle_warmup", 0)] + [Task("search", i) for i in range(t)])

    def run_task(self, task: Task) -> dict[str, Any]:
        if task.phase == "warmup":
            return self.warmup(task.index)
        if task.phase == "vle_warmup":
            t0 = self.now()
            loss = fit_vle(self.vle, self.vle_memory, self.vle_opt, self.scfg.vle.warmup_passes, self.scfg.vle.batch,
                           self.generator, self.scfg.vle.input_noise)
            self.vle_ready = True
            return {"vle_loss": loss, "seconds": {"vle_train": self.now() - t0}}
        sample = self.population[task.index] if task.phase == "population" else self.sample_arch()
        return self.iteration(sample, search=task.phase == "search")

    def stored(self, sample: ArchSample) -> torch.Tensor:
        """What M_v keeps of a draw (and where the VLE is queried for it): its soft weights or its one-hot H."""
        return sample.soft if self.scfg.vle.store == "soft" else sample.hard

    def iteration(self, sample: ArchSample, search: bool) -> dict[str, Any]:
        """Lines 8-16 (and 23-24 when ``search``) for the drawn architecture ``sample``."""
        times: dict[str, float] = {}
        H = sample.hard
        pred = self.predict(self.stored(sample)) if self.vle_ready else None
        t0 = self.now()
        train = self.train_arch(H, self.pgd_recipe(), desc="adv. train")
        times["adv_train"] = self.now() - t0
        ane_loss = self.update_ane(H, times)
        losses = self.measure(H, times)
        self.vle_memory.push(self.stored(sample), losses, self.covariates(trained=True))
        extra = self.measure_more(times)
        record: dict[str, Any] = {"train": train, "losses": self.loss_dict(losses),
                                  "objective": float(self.objective(losses)), "objective_pred": pred,
                                  "ane_loss": ane_loss, "ane_memory": len(self.ane_memory or ()),
                                  "ane_inference_seconds": times.pop("ane_inference")}
        if extra:
            record["extra_objectives"] = extra
        if search:
            t0 = self.now()
            record["vle_loss"] = fit_vle(self.vle, self.vle_memory, self.vle_opt, self.scfg.vle.passes,
                                         self.scfg.vle.batch, self.generator, self.scfg.vle.input_noise)
            times["vle_train"] = self.now() - t0
            t0 = self.now()
            record["arch_objective"] = self.arch_update(sample)
            self.sync_arch_weights()
            times["arch_update"] = self.now() - t0
        record["seconds"] = times
        return record

    def measure_more(self, times: dict[str, float]) -> list[float]:
        """``search.vle.measure_draws - 1`` more draws from A, measured as lines 11-15 measure the trained one (their
        BatchNorm statistics re-estimated first) and pushed into M_v: more architectures for the VLE per epoch of
        training, at the cost of their validation passes only. Returns their measured objectives."""
        objectives = []
        for _ in range(self.scfg.vle.measure_draws - 1):
            other = self.sample_arch()
            self.recalibrate_bn(other.hard)
            losses = self.measure(other.hard, times)
            self.vle_memory.push(self.stored(other), losses, self.covariates(trained=False))
            objectives.append(float(self.objective(losses)))
        return objectives

    def covariates(self, trained: bool) -> torch.Tensor | None:
        """With ``search.vle.covariates``, what a measured loss depends on besides the architecture: whether the draw
        was the one just trained (measured right after its epoch of training, it scores far better than a draw
        that was not), and the search's progress ``t`` and ``t^2`` (the fraction of weight-training epochs done; the
        super-network improves as it trains, and the ops drawn late would otherwise get the credit)."""
        if not self.scfg.vle.covariates:
            return None
        t = self.epoch / max(self.total_epochs, 1)
        return torch.tensor([float(trained), t, t * t])

    def arch_update(self, sample: ArchSample) -> float:
        """Line 24: one EWSS step on A, the VLE queried where ``search.ewss_query`` says (the stored draw, fresh
        draws, or softmax(A)); ``search.direction: maximize`` ascends (the anti-search control)."""
        s, A = self.scfg, self.supernet.arch_weights
        H = ewss_query_points(A, s.ewss_query, s.tau, s.arch.samples, self.generator, noise=sample.noise)
        return arch_step(A, H, self.vle, self.objective, self.a_opt, maximize=s.direction == "maximize")

    @torch.no_grad()
    def predict(self, H: torch.Tensor) -> float:
        """The VLE's estimate of the objective of ``H`` (as stored in M_v; before it is trained and measured)."""
        return float(self.objective(self.vle(H.to(self.device))))

    def update_ane(self, H: torch.Tensor, times: dict[str, float]) -> float | None:
        """Lines 9-10: push ``ane.fill_batches`` batches of random D_t images into M_a, each with its PGD anchors and
        a PGD noise at a random strength (official: uniform in [0, 0.15)), then train the AN-Estimator
        ``ane.passes`` passes over M_a. With ``leave_one_out`` targets (official) each of these noises is in turn
        the target of the other three; with ``random`` only the random-strength noise is. WA-ANE has nothing to
        train, so it skips the memory and its PGD."""
        if self.ane is None or self.ane_opt is None:
            return None
        t0, s = self.now(), self.scfg
        for _ in range(s.ane.fill_batches):
            idx = torch.randperm(len(self.train_set), generator=self.generator)[:s.ane.batch].tolist()
            x, y = (torch.stack([torch.as_tensor(self.train_set[i][j]) for i in idx]).to(self.device) for j in (0, 1))
            lo, hi = s.ane.target_range
            target = max(lo + (hi - lo) * float(torch.rand(1, generator=self.generator)), 1e-3)
            noise = pgd_noise(self.view(H), x, y, self.pgd_eps + [target], steps=s.attack_steps,
                              random_start=s.attack_random_start)
            self.push_ane(x, noise, self.pgd_eps + [target])
        steps = s.ane.passes * -(-len(self.ane_memory) // s.ane.train_batch)
        loss = train_estimator(self.ane, self.ane_memory, self.ane_opt, iters=steps, batch_size=s.ane.train_batch,
                               generator=self.generator, scheduler=self.ane_sched)
        times["ane"] = times.get("ane", 0.0) + self.now() - t0
        return loss

    def push_ane(self, x: torch.Tensor, noise: torch.Tensor, eps: list[float]) -> None:
        """Push PGD noises ``(B, N1 + 1, ...)`` at ``eps`` (anchors, then the random strength) into M_a."""
        n1 = len(self.pgd_eps)
        held_out = range(n1 + 1) if self.scfg.ane.targets == "leave_one_out" else [n1]
        for k in held_out:
            rest = sorted((i for i in range(n1 + 1) if i != k), key=lambda i: eps[i])
            self.ane_memory.push(x, noise[:, rest], [eps[i] for i in rest], [eps[k]], noise[:, k:k + 1])

    def measure(self, H: torch.Tensor, times: dict[str, float]) -> torch.Tensor:
        """Lines 11-15: PGD anchors and estimated noises on D_v, then the mean clean and per-strength CE losses
        ``(N+1,)`` of sub-network ``H`` (eval mode, as the attacks)."""
        model = self.view(H)
        n_out = len(self.strengths) + 1
        sums, n = torch.zeros(n_out, dtype=torch.float64), 0
        for key in ("noise_gen", "ane", "ane_inference", "eval"):
            times.setdefault(key, 0.0)
        for x, y in self.val_batches("noise + eval"):
            t0 = self.now()
            noise = pgd_noise(model, x, y, self.pgd_eps, steps=self.scfg.attack_steps,
                              random_start=self.scfg.attack_random_start)
            t1 = self.now()
            if self.ane is not None:
                with torch.no_grad():
                    noise = torch.cat([noise, self.ane(x, noise, self.pgd_eps, self.est_eps)], dim=1)
            t2 = self.now()
            sums += self.batch_losses(model, x, y, noise[:, self.perm])
            n += len(y)
            times["noise_gen"] += t1 - t0
            times["ane"] += t2 - t1
            times["ane_inference"] += t2 - t1  # the part of "ane" that grows with N2 (marginal cost of a strength)
            times["eval"] += self.now() - t2
        return (sums / max(n, 1)).float()

    @torch.no_grad()
    def batch_losses(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     noise: torch.Tensor) -> torch.Tensor:
        """Summed CE of the clean batch and of ``x + noise[:, i]`` for each strength -> ``(N+1,)`` float64."""
        model.eval()
        inputs = torch.cat([x.unsqueeze(1), (x.unsqueeze(1) + noise).clamp(0, 1)], dim=1)  # (B, N+1, C, H, W)
        logits = model(inputs.transpose(0, 1).flatten(0, 1))
        ce = F.cross_entropy(logits, y.repeat(inputs.shape[1]), reduction="none")
        return ce.view(inputs.shape[1], -1).sum(1).double().cpu()

    def extra_state(self) -> dict[str, Any]:
        state = {"vle": self.vle.state_dict(), "vle_memory": self.vle_memory.state_dict(),
                 "vle_ready": self.vle_ready}
        if self.vle_opt is not None:
            state["vle_opt"] = self.vle_opt.state_dict()
        if self.ane is not None:
            state.update(ane=self.ane.state_dict(), ane_memory=self.ane_memory.state_dict())
            if self.ane_opt is not None:
                state.update(ane_opt=self.ane_opt.state_dict(), ane_sched=self.ane_sched.state_dict())
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.vle.load_state_dict(state["vle"])
        if self.vle_opt is not None:
            self.vle_opt.load_state_dict(state["vle_opt"])
        self.vle_memory.load_state_dict(state["vle_memory"])
        self.vle_ready = bool(state["vle_ready"])
        if self.ane is not None:
            self.ane.load_state_dict(state["ane"])
            self.ane_memory.load_state_dict(state["ane_memory"])
            if self.ane_opt is not None:
                self.ane_opt.load_state_dict(state["ane_opt"])
                self.ane_sched.load_state_dict(state["ane_sched"])


def run_search(cfg: ExperimentConfig, out_dir: str | Path, resume: bool = False, device: str | None = None,
               callback: TaskCallback | None = None) -> Genotype:
    """Run the search ``cfg.search.method`` describes (``wsr`` or ``naive``) into ``out_dir``; return the genotype.

    Args:
        cfg: a validated experiment config (``data`` and ``search`` sections are used).
        out_dir: run folder (see :mod:`wsr_bench.search.state` for what it receives).
        resume: continue from the folder's checkpoint; without it an existing search there is an error.
        device: ``cpu``/``cuda[:N]``; ``None`` resolves ``cfg.device``.
        callback: ``callback(task_index, record)`` after each task's checkpoint (e.g. to stop a run).
    """
    from wsr_bench.search.naive import NaiveSearch

    engines = dict(zip(SEARCH_METHODS, (WsrSearch, NaiveSearch), strict=True))
    if cfg.search.method not in engines:
        raise ValueError(f"unknown search method {cfg.search.method!r}; expected one of {', '.join(engines)}")
    with joined_process_group(resolve_device(device or cfg.device)) as info:  # one process unless under torchrun
        return engines[cfg.search.method](cfg, out_dir, info.device).run(resume=resume, callback=callback)

"""Random starts keyed by the image, not by its place in the batch, for pyautoattack's APGD, APGD-T and Square.

pyautoattack re-seeds the global RNG at every ``perturb`` and draws the random starts of the whole batch in one call,
so an image's start depends on which images share its batch and where it sits. Two evaluations that attack the
same image in different company then differ by their random starts alone: AutoAttack at one eps on all images,
and a spectrum sweep that attacks only the images still standing. Measured on 1,000 Fashion-MNIST images, per-eps
AutoAttack rerun with another seed changed 23 of 12,000 (image, eps) verdicts, and the downward sweep differed
from per-eps AutoAttack about as often (``benchmarks/results/autoattack_sweep_fashion_upward.md`` and
``autoattack_sweep_fashion_batch_starts.md``, run before these starts existed).

The classes here draw each image's start from a generator keyed by ``(seed, attack, call, the image's bytes)``,
so an image gets the same start alone or in any batch, and AutoAttack's verdict on it depends only on the image,
the eps and the seed. The attacks, their budgets and their order stay pyautoattack's; only where the random
numbers come from changes. What is keyed:

* APGD-CE, APGD-DLR and APGD-T (``Linf`` and ``L2``): the random start of each restart and each target class. The
  start has upstream's distribution (uniform in the Linf ball's corners direction, Gaussian direction in L2).
* The same under ``L1`` with AutoAttack's large-eps schedule (``use_largereps``, which standard AutoAttack sets for
  L1): the one Gaussian draw of its :meth:`decr_eps_pgd` per restart and target class.
* Square (``Linf``): the initial vertical stripes. Its per-iteration square and signs are shared by the whole
  batch and drawn from the global RNG re-seeded at ``perturb``; once the stripes no longer draw from that RNG,
  every call draws the same sequence, whatever the batch.
* FAB-T needs nothing: with one restart (AutoAttack standard) it has no random start.

Still batch-dependent: Square in L2 and L1 (per-sample signs inside its loop), APGD's L1 start without the large-eps
schedule (APGD-CE or APGD-T alone, ``plus`` and ``rand`` under L1: keying it would change the attack, see
``attack_single_run``), the random restarts of untargeted FAB (only ``plus`` runs FAB with more than one restart),
a randomised model's own noise (``rand``), and the float rounding of batched forward passes, which can differ in
the last bits with the batch size.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted, L1_projection
from pyautoattack.square import SquareAttack


def image_keyed_noise(x: torch.Tensor, seed: Any, salt: str, row_shape: tuple[int, ...] | None = None,
                      normal: bool = False) -> torch.Tensor:
    """Noise with one row per image, each drawn from a generator keyed by ``(seed, salt, image bytes)``.

    Args:
        x: the images (N, ...); their exact bytes key each row.
        seed: the attack's seed.
        salt: which draw this is (attack, restart or target class), so that different draws differ.
        row_shape: shape of each row (default ``x.shape[1:]``).
        normal: standard normal instead of uniform on [-1, 1].

    Returns:
        (N, *row_shape) noise on ``x``'s device.
    """
    row_shape = tuple(x.shape[1:]) if row_shape is None else tuple(row_shape)
    flat = x.detach().to("cpu", torch.float32).contiguous().flatten(1).numpy()
    gen, rows = torch.Generator(), []
    for row in flat:
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, person=b"wsr-bench-start")
        digest.update(f"{seed}|{salt}".encode())
        gen.manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
        rows.append(torch.randn(row_shape, generator=gen) if normal else torch.rand(row_shape, generator=gen) * 2 - 1)
    out = torch.stack(rows) if rows else torch.empty((0, *row_shape))
    return out.to(x.device)


class _KeyedAPGDStarts:
    """Mixin for pyautoattack's APGD classes: each ``attack_single_run`` (one per restart, and per target class for
    APGD-T) and each L1 large-eps schedule (:meth:`decr_eps_pgd`) starts from :func:`image_keyed_noise` instead of
    a batch-wide draw of the global RNG."""

    _salt = "apgd"

    def perturb(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._keyed_calls = 0
        return super().perturb(*args, **kwargs)

    def _keyed_start(self, x: torch.Tensor, normal: bool) -> torch.Tensor:
        """The next keyed draw of this ``perturb`` (one per restart and target class)."""
        call = getattr(self, "_keyed_calls", 0)
        self._keyed_calls = call + 1
        return image_keyed_noise(x, self.seed, f"{self._salt}|{self.loss}|{call}", normal=normal)

    def attack_single_run(self, x: torch.Tensor, y: torch.Tensor, x_init: torch.Tensor | None = None):
        # L1 without the large-eps schedule is left as upstream: given a start, its L1 step sizes its sparsity from
        # the start (``topk``) rather than from 0.2, so keying the start would change the attack, not only its draw
        if x_init is None and self.norm in ("Linf", "L2"):
            x = x if x.dim() == self.ndims + 1 else x.unsqueeze(0)
            x_init = x + self.eps * self.normalize(self._keyed_start(x, normal=self.norm == "L2"))
        return super().attack_single_run(x, y, x_init=x_init)

    def decr_eps_pgd(self, x: torch.Tensor, y: torch.Tensor, epss, iters, use_rs: bool = True):
        """pyautoattack's L1 schedule (``use_largereps``: 3, 2 and 1 times eps, 30/30/40% of the iterations), its
        one random draw (``x + N(0, 1)``, projected onto the 3-eps L1 ball) keyed by the image; the rest as
        upstream, step for step."""
        if not use_rs:
            return super().decr_eps_pgd(x, y, epss, iters, use_rs=False)
        self.use_rs = False
        x_init = x + self._keyed_start(x, normal=True)
        x_init += L1_projection(x, x_init - x, 1.0 * float(epss[0]))
        for eps, niter in zip(epss, iters, strict=True):
            self.n_iter = niter + 0
            self.eps = eps + 0.0
            x_init += L1_projection(x, x_init - x, 1.0 * eps)
            x_init, acc, loss, x_adv = self.attack_single_run(x, y, x_init=x_init)
        return (x_init, acc, loss, x_adv)


class KeyedAPGD(_KeyedAPGDStarts, APGDAttack):
    """pyautoattack's APGD (CE or DLR loss) with image-keyed random starts."""


class KeyedAPGDTargeted(_KeyedAPGDStarts, APGDAttack_targeted):
    """pyautoattack's APGD-T with image-keyed random starts (one per target class)."""

    _salt = "apgd-t"


class KeyedSquare(SquareAttack):
    """pyautoattack's Square with image-keyed initial stripes (``Linf``; L2 is left as upstream)."""

    def attack_single_run(self, x: torch.Tensor, y: torch.Tensor):
        self._keyed_images = x if self.norm == "Linf" else None
        try:
            return super().attack_single_run(x, y)
        finally:
            self._keyed_images = None

    def random_choice(self, shape):
        images = getattr(self, "_keyed_images", None)
        if images is not None and len(shape) == 4 and shape[0] == len(images):  # the Linf stripes: [n, c, 1, w]
            self._keyed_images = None  # only the first draw is per image; the loop's draws are batch-wide
            return torch.sign(image_keyed_noise(images, self.seed, "square|stripes", tuple(shape[1:])))
        return super().random_choice(shape)


#: pyautoattack class -> its image-keyed subclass
KEYED = {APGDAttack: KeyedAPGD, APGDAttack_targeted: KeyedAPGDTargeted, SquareAttack: KeyedSquare}


def key_autoattack_starts(adversary: Any) -> Any:
    """Give a ``pyautoattack.AutoAttack`` image-keyed random starts, keeping every setting it has.

    AutoAttack builds its attacks in its constructor (and :func:`~pyautoattack.AutoAttack._set_version` tunes them
    there), so the built objects are switched to their keyed subclasses in place: same attributes, same budgets,
    only the start-drawing methods differ.
    """
    for name in ("apgd", "apgd_targeted", "square"):
        attack = getattr(adversary, name)
        keyed = KEYED.get(type(attack))
        if keyed is not None:
            attack.__class__ = keyed
    return adversary

"""Genotypes: the discrete cell descriptions of the DARTS space, as frozen JSON-serialisable values.

A cell has two input nodes (0, 1: outputs of the two previous cells) and ``nodes`` intermediate nodes. Each
intermediate node ``j`` (numbered from 2) takes exactly two edges ``(op, i)`` with ``i < j``; the cell output
concatenates ``concat``. The known genotypes (WsrNets and baselines) ship as package data with their sources.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from wsr_bench.search_space.ops import PRIMITIVES

Edge = tuple[str, int]


class GenotypeError(ValueError):
    """A genotype that does not describe a valid DARTS cell (unknown op, dangling edge, wrong arity)."""


def _validate_cell(kind: str, edges: tuple[Edge, ...], concat: tuple[int, ...]) -> None:
    if len(edges) == 0 or len(edges) % 2:
        raise GenotypeError(f"{kind} cell needs two edges per node, got {len(edges)} edges")
    n_nodes = len(edges) // 2 + 2
    for k, (op, src) in enumerate(edges):
        node = k // 2 + 2
        if op not in PRIMITIVES:
            raise GenotypeError(f"{kind} cell edge {k}: unknown primitive {op!r}; known: {', '.join(PRIMITIVES)}")
        if op == "none":
            raise GenotypeError(f"{kind} cell edge {k}: 'none' cannot be a chosen op in a genotype")
        if not isinstance(src, int) or not 0 <= src < node:
            raise GenotypeError(f"{kind} cell edge {k} into node {node} comes from node {src!r}, "
                                f"which does not exist before it (valid: 0..{node - 1})")
    if not concat or any(not 2 <= c < n_nodes for c in concat):
        raise GenotypeError(f"{kind}_concat {list(concat)} names nodes outside 2..{n_nodes - 1}")


@dataclass(frozen=True)
class Genotype:
    """A DARTS cell pair. ``normal``/``reduce`` are ``((op, input_node), ...)`` with two edges per node."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for attr in ("normal", "reduce"):
            object.__setattr__(self, attr, tuple((str(op), int(i)) for op, i in getattr(self, attr)))
        for attr in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, attr, tuple(int(i) for i in getattr(self, attr)))
        _validate_cell("normal", self.normal, self.normal_concat)
        _validate_cell("reduce", self.reduce, self.reduce_concat)

    @property
    def nodes(self) -> int:
        """Number of intermediate nodes in a cell."""
        return len(self.normal) // 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (edges as ``[op, input]`` lists)."""
        d: dict[str, Any] = {
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        if self.name:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genotype:
        """Inverse of :meth:`to_dict`; extra keys (sources, widths) are ignored, missing ones are an error."""
        try:
            return cls(normal=d["normal"], normal_concat=d["normal_concat"], reduce=d["reduce"],
                       reduce_concat=d["reduce_concat"], name=str(d.get("name", "")))
        except KeyError as exc:
            raise GenotypeError(f"genotype is missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, GenotypeError):
                raise
            raise GenotypeError(f"malformed genotype: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"genotype is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class KnownGenotype:
    """A shipped genotype with the widths and provenance recorded for it."""

    name: str
    genotype: Genotype
    init_channels: int
    layers: int
    paper_params_m: float | None
    source: str
    imagenet: dict[str, Any] | None


@lru_cache(maxsize=1)
def known_genotypes() -> dict[str, KnownGenotype]:
    """The genotypes of the paper's WsrNets and baselines (package data, from the official code)."""
    raw = json.loads(resources.files("wsr_bench").joinpath("data_files/genotypes.json").read_text())
    out: dict[str, KnownGenotype] = {}
    for name, d in raw["genotypes"].items():
        out[name] = KnownGenotype(
            name=name, genotype=Genotype.from_dict({**d, "name": name}), init_channels=int(d["init_channels"]),
            layers=int(d["layers"]), paper_params_m=d.get("paper_params_m"), source=str(d.get("source", "")),
            imagenet=d.get("imagenet"))
    return out


def load_genotype(spec: str | Path | Genotype | dict) -> Genotype:
    """A Genotype from a known name (``"wsrnet_basic"``), a ``genotype.json`` path, a dict or a Genotype."""
    if isinstance(spec, Genotype):
        return spec
    if isinstance(spec, dict):
        return Genotype.from_dict(spec)
    text = str(spec)
    known = known_genotypes()
    if text in known:
        return known[text].genotype
    path = Path(text)
    if path.is_file():
        return Genotype.from_json(path.read_text())
    raise GenotypeError(f"{text!r} is neither a known genotype ({', '.join(sorted(known))}) nor a genotype.json file")

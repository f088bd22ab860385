"""The DARTS search space: primitives, genotypes and the one-shot super-network."""

from wsr_bench.search_space.genotype import Genotype, GenotypeError, known_genotypes, load_genotype
from wsr_bench.search_space.ops import OPS, PRIMITIVES

__all__ = ["OPS", "PRIMITIVES", "Genotype", "GenotypeError", "known_genotypes", "load_genotype"]

"""Architecture search: Wsr-NAS (Algorithm 1 with the AN-Estimator and the EWSS), the naive multi-strength
baseline, the robust search objective (Eq. 10), and the run folder / checkpoint machinery they share.

    from wsr_bench.search import run_search
    genotype = run_search(cfg, "runs/search", resume=False)
"""

from wsr_bench.search.engine import PHASES, strength_layout
from wsr_bench.search.objective import ObjectiveError, RobustObjective, ewss_step
from wsr_bench.search.state import SearchCheckpointError, SearchFolder
from wsr_bench.search.wsr_nas import WsrSearch, run_search

__all__ = ["PHASES", "ObjectiveError", "RobustObjective", "SearchCheckpointError", "SearchFolder", "WsrSearch",
           "ewss_step", "run_search", "strength_layout"]

"""wsr-bench: wide-spectrum adversarial robustness (Wsr-NAS search, WsrNets, epsilon-spectrum leaderboards)."""

__version__ = "0.1.0"

from wsr_bench import _compat  # noqa: E402,F401  (serves `autoattack` for RobustBench when absent)

"""wsr-bench: wide-spectrum adversarial robustness (Wsr-NAS search, WsrNets, epsilon-spectrum leaderboards).

``import wsr_bench`` is light: it loads neither torch nor timm, so the config, the leaderboard tools and
``wsr-bench --help`` start at once. The models register with timm on ``import wsr_bench.models`` (which every
part of the package that builds one does itself).
"""

__version__ = "0.1.0"

from wsr_bench import _compat  # noqa: E402,F401  (serves `autoattack` for RobustBench when absent; torch-free)

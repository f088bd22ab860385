"""wsr-bench: wide-spectrum adversarial robustness (Wsr-NAS search, WsrNets, epsilon-spectrum leaderboards)."""

__version__ = "0.1.0"

import importlib.util as _util  # noqa: E402

from wsr_bench import _compat  # noqa: E402,F401  (serves `autoattack` for RobustBench when absent)

# Register the WsrNets and baselines with timm, so `timm.create_model("wsrnet_basic")` works after `import wsr_bench`.
# Without torch/timm the torch-free parts (config, leaderboard) still import.
if _util.find_spec("torch") and _util.find_spec("timm"):
    import wsr_bench.models  # noqa: E402,F401

"""wsr-bench: wide-spectrum adversarial robustness (Wsr-NAS search, WsrNets, epsilon-spectrum leaderboards)."""

__version__ = "0.1.0"

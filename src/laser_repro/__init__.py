"""laser-repro: a reproducibility suite for Laser (Bi-Tuning with collaborative information
for controllable LLM-based sequential recommendation)."""

__version__ = "0.1.0"

"""Evaluation: rank-based metrics and the one full-ranking evaluator every method uses."""

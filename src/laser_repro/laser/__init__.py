"""Laser: Bi-Tuning (prefix + instruction + suffix) with an M-Former prefix, two-phase training."""

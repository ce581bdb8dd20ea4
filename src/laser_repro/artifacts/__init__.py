"""Paper artifacts: Tables 1-5, Figures 2-5 and the reported-vs-reproduced comparison.

One module per artifact; every artifact reads finished run folders (``runs.py``) and never
trains anything. ``cli.py`` exposes them as ``laser-repro artifact NAME ...``.
"""

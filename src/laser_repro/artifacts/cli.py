"""``laser-repro artifact NAME``: build one paper table or figure, or the comparison.

An artifact reads what its spec names: finished run folders (metrics.json + ranks.npz) and, for
Table 1 and Figure 2, prepared data sets; none trains anything. The spec is either a file the
workflow wrote (``--spec results/specs/NAME.json``) or computed here from the workflow config
(``--config config.yaml [--config overlay.yaml]``), the same way. Missing runs are shown as "—"
and listed by path in the output. With ``--config``, a finished run whose results no longer answer
the config (another run config, re-prepared data, a retrained upstream run) counts as missing and
is listed with the reason; in the workflow, Snakemake reruns such runs before any artifact.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

log = logging.getLogger("laser_repro.artifacts")

EXAMPLES = """\
examples:
  laser-repro artifact table2 --config config.yaml --out results/table2.md
  laser-repro artifact fig4   --config config.yaml --config workflow/default.yaml --out results/default/figures/fig4.png
  laser-repro artifact compare --spec results/specs/compare.json --out results/compare.md   # as the workflow calls it
Figures are written as PNG at --out and as PDF next to it (same name, .pdf).
"""

# name -> (module, one-line help)
ARTIFACTS: dict[str, tuple[str, str]] = {
    "table1": ("laser_repro.artifacts.table1", "Table 1: data set statistics, paper vs ours"),
    "table2": ("laser_repro.artifacts.table2", "Table 2: overall performance (x100), Improv.%%, significance"),
    "table3": ("laser_repro.artifacts.ablation", "Table 3: ablations (paper: Laser-C on Scientific)"),
    "table4": ("laser_repro.artifacts.ablation", "Table 4: ablations (paper: Laser-C on Pet)"),
    "table5": ("laser_repro.artifacts.ablation", "Table 5: prompt templates (paper: Laser-C on Scientific)"),
    "fig2": ("laser_repro.artifacts.fig2", "Figure 2: cold-start items (paper: Laser-C vs BERT4Rec)"),
    "fig3": ("laser_repro.artifacts.fig3", "Figure 3: zero-shot and low-resource transfer"),
    "fig4": ("laser_repro.artifacts.fig4", "Figure 4: K, L, lambda and S on validation"),
    "fig5": ("laser_repro.artifacts.fig5", "Figure 5: a method fed by different ID recommenders"),
    "compare": ("laser_repro.artifacts.compare", "reported-vs-reproduced comparison, claims, paper consistency"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    sub = parser.add_subparsers(dest="artifact", metavar="NAME", required=True)
    for name, (_, help_text) in ARTIFACTS.items():
        p = sub.add_parser(name, help=help_text, description=help_text.replace("%%", "%") + ". Reads the runs its spec names.")
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--spec", type=Path, help=f"spec file written by the workflow (results/specs/{name}.json)")
        src.add_argument("--config", type=Path, action="append",
                         help="workflow config file(s), later ones overlaid (config.yaml, workflow/default.yaml)")
        kind = "PNG path (a PDF is written next to it)" if name.startswith("fig") else f"markdown file, e.g. results/{name}.md"
        p.add_argument("--out", required=True, help=kind + "; a file this suite did not write is never replaced")
        p.add_argument("--force", action="store_true", help="replace --out even if this suite did not write it")


def load_spec(args: argparse.Namespace):
    """The artifact's spec from --spec, or computed from --config as the workflow computes it."""
    if args.spec is not None:
        from laser_repro.experiment.specs import load_spec as from_file

        spec = from_file(args.artifact, args.spec)
        if not spec.workflow:  # a spec written by hand: its runs are read as they are
            return spec
        from laser_repro.experiment.plan import Experiment

        return Experiment(spec.workflow, f"{args.spec} (its workflow config)").mark_stale(spec)
    from laser_repro.experiment.plan import Experiment

    exp = Experiment.from_files(args.config)
    return exp.mark_stale(exp.spec(args.artifact))  # outside the workflow nothing else keeps results current


def run(args: argparse.Namespace) -> int:
    from .output import guard_out

    guard_out(args.out, args.force)
    module = importlib.import_module(ARTIFACTS[args.artifact][0])
    out = module.main(load_spec(args), args.out)
    log.info("%s -> %s", args.artifact, out)
    return 0

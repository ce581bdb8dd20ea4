"""``laser-repro artifact NAME ...``: build one paper table or figure, or the comparison.

Every artifact reads finished run folders ``{runs-root}/{dataset}/{method}/{variant}/seed~{seed}/``
(metrics.json + ranks.npz) or prepared data sets ``{data-dir}/{name}/``; none trains anything.
Missing runs are shown as "—" and listed by path in the output.
"""

from __future__ import annotations

import argparse
import importlib
import logging

log = logging.getLogger("laser_repro.artifacts")

EXAMPLES = """\
examples (the contract the Snakemake rules call):
  laser-repro artifact table1  --data-dir D --datasets scientific pet arts games --out results/table1.md
  laser-repro artifact table2  --runs-root R --datasets scientific pet arts games --seeds 0 1 2 --out results/table2.md
  laser-repro artifact table3  --runs-root R --dataset scientific --seeds 0 1 2 --out results/table3.md
  laser-repro artifact table4  --runs-root R --dataset pet --seeds 0 1 2 --out results/table4.md
  laser-repro artifact table5  --runs-root R --dataset scientific --seeds 0 1 2 --out results/table5.md
  laser-repro artifact fig2    --runs-root R --data-dir D --datasets pet games --seeds 0 1 2 --out figures/fig2.png
  laser-repro artifact fig3    --runs-root R --dataset scientific --source pet --fractions 0 0.05 0.1 0.2 0.5 1 --seeds 0 1 2 --out figures/fig3.png
  laser-repro artifact fig4    --runs-root R --dataset scientific --grid K=2,4,8,16 --grid L=8,16,32,64 \\
        --grid lambda=0.001,0.01,0.1,1 --grid S=1,2,3 --main K=8 --main L=32 --main lambda=0.01 --main S=1 \\
        --seeds 0 1 2 --out figures/fig4.png
  laser-repro artifact fig5    --runs-root R --datasets scientific pet --idrecs sasrec bert4rec gru4rec --seeds 0 1 2 --out figures/fig5.png
  laser-repro artifact compare --runs-root R --data-dir D --datasets scientific pet arts games --seeds 0 1 2 \\
        [--source pet --fractions ... --grid ... --main ... --idrecs ...] --out results/compare.md
Figures are written as PNG at --out and as PDF next to it (same name, .pdf).
"""

# name -> (module, one-line help)
ARTIFACTS: dict[str, tuple[str, str]] = {
    "table1": ("laser_repro.artifacts.table1", "Table 1: data set statistics, paper vs ours"),
    "table2": ("laser_repro.artifacts.table2", "Table 2: overall performance (x100), Improv.%%, significance"),
    "table3": ("laser_repro.artifacts.ablation", "Table 3: Laser-C ablations (paper: Scientific)"),
    "table4": ("laser_repro.artifacts.ablation", "Table 4: Laser-C ablations (paper: Pet)"),
    "table5": ("laser_repro.artifacts.ablation", "Table 5: prompt templates (paper: Scientific)"),
    "fig2": ("laser_repro.artifacts.fig2", "Figure 2: cold-start items, Laser-C vs BERT4Rec"),
    "fig3": ("laser_repro.artifacts.fig3", "Figure 3: zero-shot and low-resource transfer"),
    "fig4": ("laser_repro.artifacts.fig4", "Figure 4: K, L, lambda and S on validation"),
    "fig5": ("laser_repro.artifacts.fig5", "Figure 5: Laser-C with different ID recommenders"),
    "compare": ("laser_repro.artifacts.compare", "reported-vs-reproduced comparison, claims, paper consistency"),
}


def _runs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", required=True, help="root of the run folders, e.g. results/runs")


def _seeds(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to average (default: 0 1 2)")


def _out(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--out", required=True, help=what)


def _fig3_opts(p: argparse.ArgumentParser, dataset_flag: str) -> None:
    p.add_argument(dataset_flag, default="scientific", help="target data set of Figure 3 (default: scientific)")
    p.add_argument("--source", default="pet", help="source data set Laser was pretrained on (default: pet)")
    p.add_argument("--fractions", nargs="+", default=["0", "0.05", "0.1", "0.2", "0.5", "1"],
                   help="target training-user fractions; variants xfer~{source}-frac~F (Laser) and "
                        "frac~F (BERT4Rec; F=1 reads variant main)")


def _fig4_opts(p: argparse.ArgumentParser, dataset_flag: str) -> None:
    p.add_argument(dataset_flag, default="scientific", help="data set of Figure 4 (default: scientific)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="one panel per --grid; each point reads variant KEY~V (repeatable)")
    p.add_argument("--main", action="append", default=[], metavar="KEY=V",
                   help="the main run's value of KEY: that grid point reads variant 'main' (repeatable)")


def _fig5_opts(p: argparse.ArgumentParser, datasets_flag: str) -> None:
    p.add_argument(datasets_flag, nargs="+", default=["scientific", "pet"], help="data sets of Figure 5")
    p.add_argument("--idrecs", nargs="+", default=["sasrec", "bert4rec", "gru4rec"],
                   help="ID recommenders; Laser-C reads variant idrec~NAME (the default one reads main)")
    p.add_argument("--default-idrec", default="bert4rec",
                   help="the ID recommender of Laser-C's main runs: it reads variant 'main' (default: bert4rec)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    sub = parser.add_subparsers(dest="artifact", metavar="NAME", required=True)
    for name, (_, help_text) in ARTIFACTS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "table1":
            p.add_argument("--data-dir", required=True, help="folder holding prepared data sets {name}/stats.json")
            p.add_argument("--datasets", nargs="+", default=["scientific", "pet", "arts", "games"])
            _out(p, "markdown file, e.g. results/table1.md")
        elif name == "table2":
            _runs(p)
            p.add_argument("--datasets", nargs="+", default=["scientific", "pet", "arts", "games"])
            _seeds(p)
            _out(p, "markdown file, e.g. results/table2.md")
        elif name in ("table3", "table4", "table5"):
            _runs(p)
            default = {"table3": "scientific", "table4": "pet", "table5": "scientific"}[name]
            p.add_argument("--dataset", default=default, help=f"data set (paper: {default})")
            p.add_argument("--method", default="laser-c", help="Laser row whose variants are compared (default: laser-c)")
            _seeds(p)
            _out(p, f"markdown file, e.g. results/{name}.md")
        elif name == "fig2":
            _runs(p)
            p.add_argument("--data-dir", required=True, help="prepared data sets (cold items need training counts)")
            p.add_argument("--datasets", nargs="+", default=["pet", "games"])
            p.add_argument("--cold-fraction", type=float, default=0.35, help="bottom fraction of items that is cold (paper: 0.35)")
            _seeds(p)
            _out(p, "PNG path (a PDF is written next to it)")
        elif name == "fig3":
            _runs(p)
            _fig3_opts(p, "--dataset")
            _seeds(p)
            _out(p, "PNG path (a PDF is written next to it)")
        elif name == "fig4":
            _runs(p)
            _fig4_opts(p, "--dataset")
            _seeds(p)
            _out(p, "PNG path (a PDF is written next to it)")
        elif name == "fig5":
            _runs(p)
            _fig5_opts(p, "--datasets")
            _seeds(p)
            _out(p, "PNG path (a PDF is written next to it)")
        elif name == "compare":
            _runs(p)
            p.add_argument("--data-dir", default=None, help="prepared data sets (Table 1 and Figure 2's cold items)")
            p.add_argument("--datasets", nargs="+", default=["scientific", "pet", "arts", "games"],
                           help="Table 1 / Table 2 data sets")
            _seeds(p)
            p.add_argument("--table3-dataset", default="scientific")
            p.add_argument("--table4-dataset", default="pet")
            p.add_argument("--table5-dataset", default="scientific")
            p.add_argument("--cold-datasets", nargs="+", default=["pet", "games"], help="Figure 2 data sets")
            p.add_argument("--cold-fraction", type=float, default=0.35)
            _fig3_opts(p, "--xfer-dataset")
            _fig4_opts(p, "--grid-dataset")
            _fig5_opts(p, "--idrec-datasets")
            p.add_argument("--tolerance", type=float, default=15.0,
                           help="a reproduced cell is 'within tolerance' when |Δ%%| <= this (default: 15)")
            _out(p, "markdown file, e.g. results/compare.md")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(ARTIFACTS[args.artifact][0])
    out = module.main(args)
    log.info("%s -> %s", args.artifact, out)
    return 0

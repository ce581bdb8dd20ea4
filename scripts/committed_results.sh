#!/usr/bin/env bash
# Rewrite the committed results/table1.md and results/compare.md from the real data in
# ../shared/data (see workflow/real-data.yaml) and whatever runs exist under results/real/runs.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGS=(--config config.yaml --config workflow/real-data.yaml)
snakemake results/real/data/scientific/stats.json --cores 1 --configfile workflow/real-data.yaml --quiet all
laser-repro artifact table1 "${CONFIGS[@]}" --out results/table1.md
laser-repro artifact compare "${CONFIGS[@]}" --out results/compare.md

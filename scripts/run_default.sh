#!/usr/bin/env bash
# The README's main command: install the package, then run the embedded default end to end
# (synthetic data, tiny offline backbones; every table and figure under results/default/).
# Extra arguments go to snakemake (targets first), e.g. `bash scripts/run_default.sh --dry-run`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# the interpreter's own scripts folder first: the workflow's rules call `laser-repro` from PATH
PATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
"$PY" -m pip install --quiet -e .
"$PY" -m snakemake "$@" --cores "${CORES:-2}" --configfile workflow/default.yaml

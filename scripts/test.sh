#!/usr/bin/env bash
# The README's test command: install the package with its test extra, then run the suite.
# pytest's exit code 5 (no tests collected) is a failure here. Two workers (pytest-xdist): the tests of the
# whole embedded default workflow run on one while the other runs the rest (see tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# the interpreter's own scripts folder first: the workflow's rules call `laser-repro` from PATH
PATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
"$PY" -m pip install --quiet -e ".[test]"
"$PY" -m pytest -q -n 2 --dist loadgroup "$@"

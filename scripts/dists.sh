#!/usr/bin/env bash
# Every distribution of this repository (the root, providers/*, adapters/*), as a wheel and an sdist
# (the wheel built from the sdist, as pip would build it), into dist/ (or $1), then `twine check`:
# what a release publishes (.github/workflows/release.yml runs this). `make dists` runs it in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=${1:-dist}
rm -rf "$out"
mkdir -p "$out"
# With hatchling installed (as the dev set-up has it), no fresh build environment per distribution.
isolation=()
"$python" -c "import hatchling" 2>/dev/null && isolation=(--no-isolation)
for dist in . providers/* adapters/*; do
  "$python" -m build --quiet "${isolation[@]}" --outdir "$out" "$dist" >/dev/null
done
"$python" -m twine check --strict "$out"/*
echo "dists: $(ls "$out" | wc -l) files in $out, checked; install from them with pip install --find-links $out" >&2

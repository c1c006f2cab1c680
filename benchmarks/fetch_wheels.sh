#!/usr/bin/env bash
# The wheels a GPU machine without network needs for benchmarks/gpu_suite.sh (WHEELS=DIR):
# faiss-cpu, fvcore and Snakemake with all their dependencies, for CPython PYVER on x86-64 Linux.
#
#   bash benchmarks/fetch_wheels.sh DIR [PYVER] [HAVE]
#
# PYVER defaults to 3.12. HAVE is the target machine's `python3 -m pip list --format=freeze`
# saved to a file: wheels of distributions it already has are dropped, which keeps DIR small
# (gpu_suite.sh also skips, at install time, every distribution the machine already has).
# The GPU build of FAISS (faiss-gpu, 135 MB, plus CUDA 12 runtime wheels) is not fetched: with
# network, `pip install -e ".[gpu,test]"` is the way to it.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:?usage: fetch_wheels.sh DIR [PYVER] [HAVE]}
PYVER=${2:-3.12}
HAVE=${3:-}
mkdir -p "$DIR"
pins=$(python3 -c 'import re, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = p["dependencies"] + p["optional-dependencies"]["cpu"]
print(" ".join(d.split(";")[0].strip() for d in deps if re.match(r"(fvcore|snakemake|faiss-cpu)\s*[<>=]", d)))')
# fvcore, iopath and connection_pool (of Snakemake) are published as source only: their
# (pure-Python) wheels are built here
python3 -m pip wheel -q --no-deps -w "$DIR" "connection_pool>=0.0.3" "fvcore>=0.1.5.post20221221" iopath
# shellcheck disable=SC2086
python3 -m pip download -q -d "$DIR" --find-links "$DIR" --python-version "$PYVER" \
  --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 $pins
if [ -n "$HAVE" ]; then
  have=$(sed -E 's/[=@ ].*//; s/[-_.]+/_/g' "$HAVE" | tr 'A-Z' 'a-z')
  for wheel in "$DIR"/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1 | sed -E 's/[-_.]+/_/g' | tr 'A-Z' 'a-z')
    if grep -qx "$name" <<<"$have"; then rm "$wheel"; fi
  done
fi
echo "fetch_wheels: $(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR ($pins)"

#!/usr/bin/env bash
# How long a newcomer waits: the main job, the comparison after it and the test suite, each
# timed on a fresh clone of this checkout's HEAD, one after the other (nothing else of this
# script runs beside them), written as a table with the machine and the versions:
#
#   bash benchmarks/workflow_times.sh [OUT]     # OUT: benchmarks/results/workflow_times_cpu.md
#
# The clone runs with the interpreter of PYTHON (default: python3) and its installed packages;
# its own source comes first on PYTHONPATH, so an editable install of another checkout does
# not leak in. The clone is removed at the end; OUT is written whole or not at all.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-benchmarks/results/workflow_times_cpu.md}")
PYTHON=${PYTHON:-python3}
COMMIT=$(git rev-parse --short HEAD)
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
git clone -q . "$SCRATCH/clone"
cd "$SCRATCH/clone"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
BIN=$(dirname "$(command -v "$PYTHON")")
export PATH="$BIN:$PATH"

rows=()
timed() {  # timed NAME COMMAND...: wall seconds of one command, its exit status checked
    local name=$1 start end
    shift
    start=$(date +%s.%N)
    if ! "$@" > "$SCRATCH/$name.log" 2>&1; then
        echo "workflow_times: '$*' failed; its log ends:" >&2
        tail -20 "$SCRATCH/$name.log" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    rows+=("$name|$*|$(awk -v a="$start" -v b="$end" 'BEGIN { s = b - a; printf "%d min %02d s", s / 60, s % 60 }')")
}

timed figures "$PYTHON" -m snakemake --cores all figures
timed compare "$PYTHON" -m snakemake --cores all compare
timed tests "$PYTHON" -m pytest -q -p no:cacheprovider
TESTS=$(grep -E "^[0-9]+ passed" "$SCRATCH/tests.log" | tail -1)

{
    echo "bash benchmarks/workflow_times.sh  (commit $COMMIT, $(date -u +%Y-%m-%d))"
    echo
    echo "# wall time on a fresh clone; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo); $("$PYTHON" -c 'import torch, faiss, snakemake; print(f"torch {torch.__version__}, faiss {faiss.__version__}, snakemake {snakemake.__version__}")')"
    echo "| step | command | wall time |"
    echo "|---|---|---:|"
    for row in "${rows[@]}"; do
        IFS='|' read -r name command took <<< "$row"
        echo "| $name | \`${command#"$PYTHON" -m }\` | $took |"
    done
    echo
    echo "Tests: $TESTS."
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"

#!/usr/bin/env bash
# The leakage study in the paper's regime (config/hotpotqa_scale.yaml: 5.2M synthetic keys) and
# the reference files it leaves:
#
#   bash benchmarks/leakage_at_scale.sh OUT [CONFIG]
#   bash benchmarks/leakage_at_scale.sh --plan [CONFIG]  # estimated seconds per phase on an H200; runs nothing
#
# checks that the disk under the config's results folder holds what the run still writes
# (`amips-bench disk-plan --check`: one line and exit status 2 before any job where it does not),
# runs `snakemake figures report` on CONFIG (a re-run after a killed one continues where it
# stopped: finished jobs are kept, killed ones redone), then keeps the run's tidy files
# (`amips-bench freeze-reference`: metrics, histories, IVF curves, the report) and Figure 9 in
# OUT/$NAME/ and packs that folder as OUT/$NAME.tar.gz, one file to copy to
# results/reference/$NAME/. NAME defaults to leakage_5m; WORKDIR (default: the checkout) is
# where the config's relative results and figures folders live; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--plan" ]; then
    shift
    exec "${PYTHON:-python3}" benchmarks/leakage_time_plan.py "$@"
fi
OUT=${1:?usage: leakage_at_scale.sh OUT [CONFIG] | --plan [CONFIG]}
CONFIG=$(realpath "${2:-config/hotpotqa_scale.yaml}")
NAME=${NAME:-leakage_5m}
WORKDIR=$(realpath "${WORKDIR:-.}")
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")

# the config's results folder, figures folder and the whole config as JSON, one per line
{ read -r RESULTS; read -r FIGURES; read -r CONFIG_JSON; } < <("$PYTHON" -c 'import json, sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
print(c.get("results", "results"), c.get("figures_dir", "figures"), json.dumps(c), sep="\n")' "$CONFIG")
[ -n "${CONFIG_JSON:-}" ] || { echo "leakage_at_scale: cannot read the config $CONFIG" >&2; exit 2; }
[[ "$RESULTS" = /* ]] || RESULTS="$WORKDIR/$RESULTS"
[[ "$FIGURES" = /* ]] || FIGURES="$WORKDIR/$FIGURES"

SNAKEMAKE=("$PYTHON" -m snakemake --snakefile "$PWD/Snakefile" --directory "$WORKDIR")
# before any job: what the run still writes (8 GB of keys, an 8 GB IVF, the training rows)
# against the free disk under its results folder, or one line and exit status 2
"${SNAKEMAKE[@]}" --summary figures report --configfile "$CONFIG" \
  | "$PYTHON" -m amips_bench.cli disk-plan --config "$CONFIG" --summary - --workdir "$WORKDIR" --check
"${SNAKEMAKE[@]}" --cores all --resources gpu=1 --rerun-incomplete --printshellcmds figures report \
  --configfile "$CONFIG"

rm -rf "$OUT/$NAME" "$OUT/$NAME.tar.gz"
"$PYTHON" -m amips_bench.cli freeze-reference --results "$RESULTS" --out "$OUT/$NAME" \
  --made-by "bash benchmarks/leakage_at_scale.sh OUT $(basename "$CONFIG") (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))" \
  --config-json "$CONFIG_JSON"
mkdir -p "$OUT/$NAME/figures"
cp "$FIGURES"/fig9_leakage.* "$FIGURES"/fig3_erel_mrr.csv "$OUT/$NAME/figures/"
tar -czf "$OUT/$NAME.tar.gz.tmp" -C "$OUT" "$NAME"
mv "$OUT/$NAME.tar.gz.tmp" "$OUT/$NAME.tar.gz"
echo "leakage_at_scale: $OUT/$NAME.tar.gz ($(du -h "$OUT/$NAME.tar.gz" | cut -f1))"

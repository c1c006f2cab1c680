#!/usr/bin/env bash
# Everything the GPU path needs, in one command on a CUDA machine: install, the GPU tests, the
# training-throughput and exact-targets benchmarks, the paper-size Table 1 and the leakage study
# at 5.2M keys (benchmarks/leakage_at_scale.sh on config/hotpotqa_scale.yaml).
#
#   bash benchmarks/gpu_suite.sh [OUT] [PHASE ...]
#
# OUT (default benchmarks/results/gpu) receives every result file, named after the GPU
# (e.g. train_throughput_h100.md): copy them to benchmarks/results/ and results/reference/ and
# commit them; OUT/leakage_5m.tar.gz unpacks into results/reference/. PHASES: install tests
# throughput loader targets table1 leakage (default: all, in that order); a machine that limits one
# command's time can run them in several calls (the leakage phase resumes where it stopped).
#
# Installation: with network access, `pip install -e ".[gpu,test]"` (torch's CUDA build first).
# On a machine without network, put the wheels in a folder and set WHEELS=that/folder: they are
# installed with --no-deps into a private site folder and the checkout runs from src/
# (`bash benchmarks/fetch_wheels.sh DIR` downloads them: faiss-cpu, fvcore and Snakemake with
# their dependencies, for the GPU machine's Python).
#
# For a machine that limits one command's time: THROUGHPUT_PRECISIONS (default "bf16 tf32 fp32")
# and TABLE1_PRECISIONS (default "tf32 bf16 fp32") choose and order the precisions, the
# throughput tables are rewritten after every row (a killed phase keeps what it measured), and
# PACK=FILE packs OUT into FILE after every phase.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/gpu}
shift || true
ALL_PHASES="install tests throughput loader targets table1 leakage"
PHASES=${*:-$ALL_PHASES}
for phase in $PHASES; do  # every name checked before anything runs
  case " $ALL_PHASES " in
    *" $phase "*) ;;
    *) echo "gpu_suite: unknown phase '$phase' (phases: $ALL_PHASES)" >&2; exit 2 ;;
  esac
done
export PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
  export PYTHONPATH="/tmp/amips-site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="/tmp/amips-site/bin:$PATH"  # the workflow's rules call `amips-bench`
fi

python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_suite: no CUDA GPU visible to torch')"
mkdir -p "$OUT"
GPU=$(python3 -c "import re, torch; n = torch.cuda.get_device_name(0); m = re.search(r'([A-Za-z]+[0-9]+)', n.replace('NVIDIA', '')); print((m.group(1) if m else 'gpu').lower())")

for phase in $PHASES; do
  echo "== gpu_suite: $phase ($(date -u +%H:%M:%S))"
  case $phase in
    install)
      if [ -n "${WHEELS:-}" ]; then
        # only what the machine lacks: its own numpy, torch, PyYAML... stay in charge
        missing=$(python3 - "$WHEELS"/*.whl <<'EOF'
import importlib.metadata as metadata, os, sys
for wheel in sys.argv[1:]:
    try:
        metadata.version(os.path.basename(wheel).split("-")[0])
    except metadata.PackageNotFoundError:
        print(wheel)
EOF
)
        # shellcheck disable=SC2086
        [ -z "$missing" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/amips-site $missing
        mkdir -p /tmp/amips-site/bin
        printf '#!/bin/sh\nexec python3 -m amips_bench.cli "$@"\n' > /tmp/amips-site/bin/amips-bench
        chmod +x /tmp/amips-site/bin/amips-bench
      else
        python3 -m pip install -q -e ".[gpu,test]"
      fi
      {
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
        python3 - <<'EOF'
import platform, torch
try:
    import faiss
    fv = f"{faiss.__version__} ({'GPU build, %d GPU' % faiss.get_num_gpus() if hasattr(faiss, 'StandardGpuResources') else 'CPU build'})"
except ImportError:
    fv = "not installed"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; "
      f"faiss {fv}; python {platform.python_version()}; {torch.cuda.get_device_name(0)}, "
      f"{torch.cuda.get_device_properties(0).multi_processor_count} SMs")
EOF
      } | tee "$OUT/environment_$GPU.txt"
      ;;
    tests)
      python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests_$GPU.log"
      ;;
    throughput)
      # shellcheck disable=SC2086
      python3 benchmarks/train_throughput.py --device cuda --precision ${THROUGHPUT_PRECISIONS:-bf16 tf32 fp32} --graph on off \
        --sizes S M --clusters 1 10 --out "$OUT/train_throughput_$GPU"
      ;;
    loader)  # the host's reader processes against the steps' appetite (a 3 GB file), targets both ways
      python3 benchmarks/stream_loader.py --device cuda --targets memory disk --batches 20 \
        --out "$OUT/stream_loader_$GPU"
      ;;
    targets)
      python3 benchmarks/targets.py --device cuda --repeats 3 --out "$OUT/targets_$GPU"
      ;;
    table1)
      for precision in ${TABLE1_PRECISIONS:-tf32 bf16 fp32}; do
        python3 -m amips_bench.cli timing --datasets quora=513000 nq=2600000 hotpotqa=5200000 \
          --sizes S M L --depth 4 --nx 3 --batch 4096 --repeats 100 --warmup 10 --precision "$precision" \
          --device cuda --out "$OUT/table1_${GPU}_$precision"
      done
      ;;
    leakage)
      bash benchmarks/leakage_at_scale.sh "$OUT" config/hotpotqa_scale.yaml
      ;;
  esac
  if [ -n "${PACK:-}" ]; then
    tar -czf "$PACK.tmp" -C "$(dirname "$OUT")" "$(basename "$OUT")" && mv "$PACK.tmp" "$PACK"
  fi
done

#!/usr/bin/env bash
# End-to-end test of the SLURM path on one Debian machine (run as root):
#   1. installs slurm-wlm and munge from Debian's packages if absent,
#   2. writes a one-node configuration for this host (no accounting database),
#   3. starts munged, slurmctld and slurmd,
#   4. runs a small workflow (tests/cluster/slurm.yaml: 18 jobs, every kind of c = 1 stage)
#      through --profile profiles/slurm with several jobs at once,
#   5. checks that every job ran as a SLURM job that completed, and that every output exists,
#   6. cancels a running training job with scancel after its first checkpoint, re-runs the same
#      command, and checks that training resumed from the checkpoint, that only the missing
#      outputs were recomputed, and that the final metrics equal those of the uninterrupted run,
#   6b. trains the same model under a walltime cap shorter than its estimate: the chain of
#      segment jobs runs unattended through SLURM, each resuming, to the same metrics,
#   7. checks the failure paths: a missing partition and an unreachable scheduler stop with
#      Snakemake's own error and leave no output behind,
#   8. stops the daemons it started (also on failure).
#
#   bash tests/cluster/slurm_e2e.sh                      # tests/cluster/slurm.yaml
#   SLURM_E2E_CONFIG=config/config.yaml SLURM_E2E_KILL_RUN=keynet_L_L4_nx3_c1_s0 \
#       bash tests/cluster/slurm_e2e.sh                  # the quick workflow's 55 jobs
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
config=${SLURM_E2E_CONFIG:-$repo/tests/cluster/slurm.yaml}
case "$config" in /*) ;; *) config="$repo/$config" ;; esac
jobs=${SLURM_E2E_JOBS:-4}
kill_run=${SLURM_E2E_KILL_RUN:-keynet_L_L3_nx2_c1_s0}   # a c = 1 model of the config's grid
work=$(mktemp -d /tmp/amips-slurm-e2e.XXXXXX)
state=$work/slurm
started=()
t0=$(date +%s)

say() { printf '[slurm-e2e %4ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
fail() { say "FAIL: $*"; exit 1; }

cleanup() {
    local status=$?
    for name in "${started[@]:-}"; do
        [ -n "$name" ] && pkill -x "$name" 2>/dev/null || true
    done
    say "stopped: ${started[*]:-nothing}; work folder $work"
    exit $status
}
trap cleanup EXIT

# ---------------------------------------------------------------- 1. packages
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi
command -v snakemake >/dev/null || fail "snakemake is not on PATH (activate the project's environment)"

# ---------------------------------------------------------------- 2. one-node configuration
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$state"/{ctld,spool,log}
conf_dir=/etc/slurm
mkdir -p "$conf_dir"
[ -f "$conf_dir/slurm.conf" ] && cp "$conf_dir/slurm.conf" "$work/slurm.conf.before"
cat > "$conf_dir/slurm.conf" <<EOF
ClusterName=amipse2e
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

# ---------------------------------------------------------------- 3. daemons
mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
fi
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- munged 2>/dev/null || munged --force
    started+=(munged)
fi
for daemon in slurmctld slurmd; do
    pgrep -x "$daemon" >/dev/null && fail "$daemon is already running; refusing to reconfigure it"
done
slurmctld && started+=(slurmctld)
slurmd && started+=(slurmd)
for _ in $(seq 60); do
    sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)' && break
    sleep 1
done
sinfo -h -o '%T' | grep -qE '^(idle|mixed)' || fail "the node never became idle: $(sinfo 2>&1)"
say "SLURM is up: $(sinfo -h -o '%P %D %T %c CPUs')"

# ---------------------------------------------------------------- 4. the workflow through SLURM
run=$work/run
mkdir -p "$run"
smk=(snakemake --snakefile "$repo/Snakefile" --directory "$run" --configfile "$config"
     --profile "$repo/profiles/slurm" --slurm-no-account --jobs "$jobs"
     --slurm-init-seconds-before-status-checks 5 --seconds-between-status-checks 5)
say "running the workflow ($config) with --jobs $jobs"
"${smk[@]}" all > "$work/snakemake.log" 2>&1 || { tail -40 "$work/snakemake.log"; fail "the workflow failed"; }

# ---------------------------------------------------------------- 5. checks
mkdir -p "$work/plan"
snakemake --snakefile "$repo/Snakefile" --directory "$work/plan" --configfile "$config" -n all \
    > "$work/plan.log" 2>&1 || fail "the dry run failed: $(tail -3 "$work/plan.log")"
planned=$(awk '/^total/ && !seen {print $2; seen = 1}' "$work/plan.log")
[[ "$planned" =~ ^[0-9]+$ ]] || fail "could not read the planned job count"
expected=$(( planned - 1 ))   # the `all` target has no command and is not submitted
submitted=$(grep -oE 'submitted with SLURM jobid [0-9]+' "$work/snakemake.log" | awk '{print $NF}' | sort -u)
n_submitted=$(echo "$submitted" | grep -c . || true)
if [ "$n_submitted" -ne "$expected" ]; then
    fail "$n_submitted jobs went through SLURM, expected $expected"
fi
for id in $submitted; do
    grep -qE "_job_complete: JobId=$id( |$).*done|JobId=$id .*WEXITSTATUS 0" "$state/log/slurmctld.log" \
        || fail "SLURM job $id did not complete successfully"
done
"${smk[@]}" -n all > "$work/rerun.log" 2>&1 || fail "the dry re-run failed"
grep -q "Nothing to be done" "$work/rerun.log" || fail "outputs are missing after the run"
say "$n_submitted jobs ran as SLURM jobs and completed; every output exists"

# ---------------------------------------------------------------- 6. a cancelled training job
kill=$work/kill
mkdir -p "$kill"
dataset=$(python3 -c "import sys, yaml; print(next(iter(yaml.safe_load(open(sys.argv[1]))['datasets'])))" "$config")
model_dir=results/$dataset/models/$kill_run
[ -f "$run/$model_dir/metrics.json" ] || fail "$kill_run is not a model of $config"
# the same config with a checkpoint every 10 steps, so the job can be caught between its first
# checkpoint and its end; checkpoints do not change the trajectory (the batch of step t is a
# function of seed and t), so the uninterrupted run of section 4 is the reference
python3 - "$config" "$work/kill_config.yaml" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
for dataset in config["datasets"].values():
    dataset.setdefault("train", {})["checkpoint_every"] = 10
yaml.safe_dump(config, open(sys.argv[2], "w"))
PY
# one model through SLURM, without retries: train_model FOLDER CONFIG
train_model() {
    snakemake --snakefile "$repo/Snakefile" --directory "$1" --configfile "$2" \
        --profile "$repo/profiles/slurm" --slurm-no-account --jobs "$jobs" --retries 0 \
        --slurm-init-seconds-before-status-checks 5 --seconds-between-status-checks 5 \
        "$model_dir/metrics.json"
}
say "training $kill_run, to be cancelled after its first checkpoint"
train_model "$kill" "$work/kill_config.yaml" > "$work/killed.log" 2>&1 &
smk_pid=$!
for _ in $(seq 1200); do
    [ -f "$kill/$model_dir/checkpoint.pt" ] && break
    kill -0 "$smk_pid" 2>/dev/null || break
    sleep 0.5
done
[ -f "$kill/$model_dir/checkpoint.pt" ] || { tail -20 "$work/killed.log"; fail "no checkpoint appeared"; }
train_job=$(grep -E 'submitted with SLURM jobid [0-9]+' "$work/killed.log" | grep -i train \
            | grep -oE 'jobid [0-9]+' | awk '{print $2}' | tail -1)
[ -n "$train_job" ] || fail "could not find the SLURM id of the training job"
scancel "$train_job"
say "cancelled SLURM job $train_job (the checkpoint exists, metrics.json does not)"
if wait "$smk_pid"; then fail "the workflow did not notice the cancelled job"; fi
[ ! -e "$kill/$model_dir/metrics.json" ] || fail "the cancelled job left its metrics behind"
[ -f "$kill/$model_dir/checkpoint.pt" ] || fail "the checkpoint was removed with the failed job"
train_model "$kill" "$work/kill_config.yaml" > "$work/resumed.log" 2>&1 || { tail -30 "$work/resumed.log"; fail "the re-run failed"; }
train_log=$kill/results/logs/$dataset/train/$kill_run.log
grep -q "resumed ${kill_run%_s*} at step" "$train_log" \
    || fail "the re-run trained from scratch instead of resuming: $(head -5 "$train_log")"
say "$(grep -o "resumed ${kill_run%_s*} at step [0-9]*" "$train_log")"
rerun_jobs=$(grep -oE 'submitted with SLURM jobid [0-9]+' "$work/resumed.log" | wc -l)
[ "$rerun_jobs" -eq 1 ] || fail "the re-run submitted $rerun_jobs jobs; only the training job was missing"
grep -qE '^train +1$' "$work/resumed.log" || fail "the re-run's job was not the training job"
python3 - "$run/$model_dir/metrics.json" "$kill/$model_dir/metrics.json" <<'PY' || fail "resumed metrics differ from the uninterrupted run"
import json, math, sys
straight, resumed = (json.load(open(p)) for p in sys.argv[1:])
assert straight["steps"] == resumed["steps"], (straight["steps"], resumed["steps"])
worst = max(abs(straight["test"][k] - resumed["test"][k]) for k in straight["test"]
            if isinstance(straight["test"][k], float) and not math.isnan(straight["test"][k]))
print(f"largest test-metric difference, resumed vs uninterrupted: {worst:.2e}")
assert worst <= 1e-5
PY
say "cancelled training resumed from its checkpoint; only it re-ran; metrics equal the uninterrupted run"

# ---------------------------------------------------------------- 6b. a training longer than its walltime cap
# the same model under a 10-minute cap, priced (cluster.assumed_samples_per_second) at 2.5 caps
# with the runtime margin: the workflow plans two train_segment jobs and the last train job,
# and one command runs the chain through SLURM, each segment resuming the previous one
capped=$work/capped
mkdir -p "$capped"
cp -a "$run/results" "$capped/"
rm -rf "$capped/$model_dir"
python3 - "$config" "$work/capped_config.yaml" "$dataset" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
train = config["datasets"][sys.argv[3]].get("train", {})
steps, batch = train.get("steps", 400), train.get("batch_size", 256)
# estimate × margin 3 = 2.5 caps of 10 minutes: ceil(2.5) = 3 jobs
config["cluster"] = {"max_runtime_minutes": 10,
                     "assumed_samples_per_second": steps * batch * 3 / (600 * 2.5)}
yaml.safe_dump(config, open(sys.argv[2], "w"))
PY
say "training $kill_run under a 10-minute cap, as a chain of segment jobs"
train_model "$capped" "$work/capped_config.yaml" > "$work/capped.log" 2>&1 || { tail -30 "$work/capped.log"; fail "the segmented training failed"; }
grep -qE '^train_segment +2$' "$work/capped.log" && grep -qE '^train +1$' "$work/capped.log" \
    || fail "the capped training was not planned as 2 segments and the last job: $(grep -E '^(train|total)' "$work/capped.log")"
chain_jobs=$(grep -oE 'submitted with SLURM jobid [0-9]+' "$work/capped.log" | wc -l)
[ "$chain_jobs" -eq 3 ] || fail "the chain submitted $chain_jobs SLURM jobs, expected 3"
logs=$capped/results/logs/$dataset/train
grep -q "resumed ${kill_run%_s*} at step" "$logs/${kill_run}_segment2.log" \
    && grep -q "resumed ${kill_run%_s*} at step" "$logs/$kill_run.log" \
    || fail "a segment did not resume the previous one"
! ls "$capped/$model_dir"/segment_*.pt >/dev/null 2>&1 || fail "segment files were left behind"
python3 - "$run/$model_dir/metrics.json" "$capped/$model_dir/metrics.json" <<'PY' || fail "the segmented model's metrics differ from the uninterrupted run"
import json, math, sys
straight, chained = (json.load(open(p)) for p in sys.argv[1:])
assert straight["steps"] == chained["steps"]
worst = max(abs(straight["test"][k] - chained["test"][k]) for k in straight["test"]
            if isinstance(straight["test"][k], float) and not math.isnan(straight["test"][k]))
print(f"largest test-metric difference, 3 segments vs 1: {worst:.2e}")
assert worst <= 1e-5
PY
say "a training 2.5 times its cap (with the margin) ran unattended as 3 SLURM jobs, each resuming; metrics equal the uninterrupted run"

# ---------------------------------------------------------------- 7. failure paths
fresh=$work/fail
mkdir -p "$fresh"
bad=(snakemake --snakefile "$repo/Snakefile" --directory "$fresh" --configfile "$config"
     --profile "$repo/profiles/slurm" --slurm-no-account --jobs 1 --retries 0
     --slurm-init-seconds-before-status-checks 5 --seconds-between-status-checks 5)
if "${bad[@]}" --default-resources slurm_partition=no_such_partition \
        --keep-going --until split > "$work/bad_partition.log" 2>&1; then
    fail "a missing partition did not fail"
fi
grep -qi "no_such_partition\|invalid partition" "$work/bad_partition.log" \
    || fail "the scheduler's partition error did not reach the user: $(tail -5 "$work/bad_partition.log")"
[ ! -e "$fresh/results/quick/splits/manifest.json" ] && [ ! -e "$fresh/results/tiny/splits/manifest.json" ] \
    || fail "a failed job left an output behind"
say "missing partition: Snakemake reports the sbatch error and leaves no output"

pkill -x slurmctld
started=("${started[@]/slurmctld/}")
sleep 2
if "${bad[@]}" --until split > "$work/no_scheduler.log" 2>&1; then
    fail "an unreachable scheduler did not fail"
fi
grep -qiE "unable to contact|connection refused|slurm_load|sbatch" "$work/no_scheduler.log" \
    || fail "the scheduler error did not reach the user: $(tail -5 "$work/no_scheduler.log")"
[ ! -e "$fresh/results/quick/splits/manifest.json" ] && [ ! -e "$fresh/results/tiny/splits/manifest.json" ] \
    || fail "a failed job left an output behind"
say "unreachable scheduler: Snakemake reports the error and leaves no output"
say "PASS in $(( $(date +%s) - t0 )) s"

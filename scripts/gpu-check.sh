#!/usr/bin/env bash
# GPU checks for a machine with torch 2.11.0 (CUDA) but no cargo: runs a release
# binary built elsewhere and compares its CUDA results with PyTorch and with the
# CPU. Usage (from the repository root):
#
#   ABCOND_BIN=target/release/abcond FMNIST=/path/to/fashion-mnist scripts/gpu-check.sh OUTDIR
#
# Checks:
#   1. the quickstart experiment trained and probed on CUDA (wall time, s/snapshot);
#   2. PyTorch parity of that GPU run (tests/parity.py, CPU PyTorch, rel. err ≤ 1e-3:
#      f32 gradients summed over 60000 examples in a different order on the GPU
#      differ from the CPU's by ~1e-5 relative, more for inner ≈ 0; x^0 exactly);
#   3. the same snapshots probed on the CPU agree with the CUDA probe (rel. err ≤ 1e-4);
#   4. the f64 half-space run on CUDA against PyTorch (rel. err ≤ 1e-10);
#   5. every optimiser and schedule trained on CUDA (f64 MLP, 60 steps), replayed
#      on the CPU by tests/check_optim.py (rel. err ≤ 1e-11).
set -euo pipefail
out=${1:?usage: scripts/gpu-check.sh OUTDIR}
mkdir -p "$out"
bin=${ABCOND_BIN:-target/release/abcond}
py=${PYTHON:-python3}
torch_lib=$("$py" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=${WORK:-/tmp/abcond-gpu-check}
rm -rf "$work"; mkdir -p "$work"
data=()
if [ -n "${FMNIST:-}" ]; then data=(--set "data.path=$FMNIST"); fi
log() { echo "== $*"; }

log "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
log "torch: $("$py" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda")')"

log "1. quickstart on cuda"
start=$(date +%s%N)
"$bin" --out "$work/gpu" run configs/quickstart.yaml --set device=cuda "${data[@]}" 2>&1 | grep -v '^train \|^probe '
end=$(date +%s%N)
echo "quickstart wall time on cuda: $(( (end - start) / 1000000 )) ms"
run=$(ls -d "$work"/gpu/quickstart/*)
grep -A3 "^probe:" "$run/run.yaml" | head -20 || true
grep "seconds_per_snapshot\|device:" "$run/run.yaml"

log "2. PyTorch parity of the cuda run"
"$py" tests/parity.py "$run" --tol 1e-3

log "3. CPU probe of the same snapshots vs the cuda probe"
cp -r "$run" "$work/cpu-copy"
rm -rf "$work/cpu-copy/probe-parts" "$work/cpu-copy/landscape.parquet"
"$bin" --quiet probe "$work/cpu-copy" --set device=cpu
"$py" tests/compare_landscapes.py "$run/landscape.parquet" "$work/cpu-copy/landscape.parquet" --tol 1e-4

log "4. f64 half-space on cuda"
"$bin" --quiet --out "$work/gpu" run configs/paper/halfspace.yaml --set device=cuda >/dev/null
"$py" tests/parity.py "$(ls -d "$work"/gpu/halfspace/*)"
log "5. every optimiser on cuda, replayed on the CPU"
mkdir -p "$work/optim"
runs=()
while IFS='|' read -r name optim schedule; do
    cat > "$work/optim/$name.yaml" <<EOF
experiment: $name
seed: 3
model: {preset: mlp, width: 8, dtype: f64}
data: {dataset: fashion-mnist, subset: 256}
train: {batch_size: 16, steps: 60}
optim: $optim
schedule: $schedule
snapshots: {every: 1}
EOF
    "$bin" --quiet --out "$work/optim/out" train "$work/optim/$name.yaml" --set device=cuda "${data[@]}"
    runs+=("$(ls -d "$work/optim/out/$name"/*)")
done <<'CASES'
sgd-momentum|{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.01, weight_decay_exclude: [biases]}|{name: cosine, floor: 0.001}
adamw|{name: adamw, lr: 0.003, weight_decay: 0.05, weight_decay_exclude: [biases, norms]}|{name: one-cycle}
nadam|{name: nadam, lr: 0.003, weight_decay: 0.02, decoupled_weight_decay: true}|{name: inverse-power}
nadamw|{name: nadamw, lr: 0.0017, betas: [0.93, 0.995], weight_decay: 0.08}|{name: warmup-cosine, warmup_fraction: 0.02}
normalized-sgd|{name: normalized-sgd, lr: 0.05}|{name: inverse-power, power: 0.5714285714285714}
sps-max|{name: sps-max, lr: 2.0}|{name: constant}
decsps|{name: decsps, lr: 2.0}|{name: constant}
ngn|{name: ngn, lr: 0.5}|{name: polynomial, power: 2.0}
adagrad-norm-max|{name: adagrad-norm-max, lr: 0.5, b0: 0.1}|{name: constant}
CASES
"$py" tests/check_optim.py --tol 1e-11 "${runs[@]}"
log "all GPU checks passed"

#!/usr/bin/env bash
# GPU checks for a machine with torch 2.11.0 (CUDA) but no cargo: runs a release
# binary built elsewhere and compares its CUDA results with PyTorch and with the
# CPU. Usage (from the repository root):
#
#   ABCOND_BIN=target/release/abcond FMNIST=/path/to/fashion-mnist scripts/gpu-check.sh OUTDIR
#
# Optional: CUDA_TESTS=target/release/deps/cuda-<hash> runs the CUDA test binary
# (tests/cuda.rs) in step 3b. Build it on the build machine (no GPU needed) with
#   cargo test --release --features cuda-tests --test cuda --no-run
# which prints its path ("Executable tests/cuda.rs (target/release/deps/cuda-…)");
# carry that file with the abcond binary.
#
# STEPS="1 3 3b 9" runs a subset (the device budget is ~15 min a session; the
# whole script takes ~10 min on an H200).
#
# Checks:
#   1. the quickstart experiment trained and probed on CUDA (wall time, s/snapshot);
#   2. PyTorch parity of that GPU run (tests/parity.py, CPU PyTorch, rel. err ≤ 1e-3:
#      f32 gradients summed over 60000 examples in a different order on the GPU
#      differ from the CPU's by ~1e-5 relative, more for inner ≈ 0; x^0 exactly);
#   3. the same snapshots probed on the CPU agree with the CUDA probe
#      (tests/compare_landscapes.py): f32 quickstart ≤ 1e-4 on losses and norms,
#      on inner products relative to ‖g‖‖x^k − x^K‖ and on cos (absolute); an f64
#      MLP ≤ 1e-10; TF32 is off and deterministic algorithms on in every probe;
#   3b. with CUDA_TESTS: the CUDA test binary (bit-identical CUDA runs, CPU vs
#      CUDA probes, the run.yaml reproducibility record, bf16 autocast, cuda:99);
#      prints the reproducibility blocks of the quickstart run;
#   4. the f64 half-space run on CUDA against PyTorch (rel. err ≤ 1e-10);
#   5. every optimiser and schedule trained on CUDA (f64 MLP, 60 steps), replayed
#      on the CPU by tests/check_optim.py (rel. err ≤ 1e-11);
#   6. Hessian eigenvalues by power iteration on CUDA vs the CPU (4 snapshots,
#      f32, rel. diff ≤ 1e-3 where both converged), and the half-space run's
#      against dense PyTorch Hessians (tests/check_curvature.py);
#   7. Example 6's point cloud on CUDA against numpy (tests/check_known.py);
#  11. (needs step 1) `abcond verify` of the CUDA quickstart run: the checksums of
#      snapshots written from CUDA tensors hold (every value is read back);
#  12. your own model on CUDA: examples/own_model.py (an MLP with LayerNorm and
#      GELU exported by the Python companion, run from python/ on PYTHONPATH) on
#      2000 Fashion-MNIST examples, trained and probed on cuda, every landscape row
#      recomputed on the CPU by tests/check_torchscript.py (rel. err ≤ 1e-4);
#  13. your own training loop on CUDA: examples/own_model_loop.py --device cuda
#      (the Logger writes snapshots of CUDA tensors and sums the gradient norm on
#      the GPU), probed with --set device=cuda, every row recomputed on the CPU
#      (rel. err ≤ 1e-4) and `abcond verify` of the run;
#  14. the LSTM language model on CUDA (cuDNN's fused LSTM under abcond's
#      determinism settings): configs/lstm-fortunes.yaml at 300 steps trained and
#      probed with device=cuda, every row recomputed with torch.nn.LSTM on the CPU
#      by tests/check_lstm.py (rel. err ≤ 1e-4), and a second training run
#      compared bit for bit (determinism of the cuDNN path);
#  15. Pythia-70M (models/pythia-70m.yaml) on CUDA: 200 steps on random token ids
#      (vocab 50,304, windows of 256) twice, x^K compared bit for bit, and the
#      step time for the GPU-time estimates of the decoders;
#  16. replay probing on CUDA (issue 19): the quickstart config at 3,000 steps
#      trained on cuda with snapshots every 500, then `probe --replay` on cuda —
#      every step record and stored iterate must match bit for bit under the
#      determinism settings — and a ResNet-18 (BatchNorm, crop-flip, momentum
#      with snapshots.optimizer_state) at 60 steps the same way; the replay's
#      steps/s against the training's (target ≤ 1.5× the training time);
#  18. the WMT Transformer on padded TFRecord pairs on CUDA vs CPU (issue 20)
#  19. DLRM-small at full size on CUDA: probe peak memory (issue 20)
#  20. the fastMRI U-Net at full size on CUDA vs CPU (issue 20; h5py, or FASTMRI=carried volumes)
#  17. the GNN (issue 20) on CUDA: configs/gnn-molecules.yaml at 300 steps
#      trained twice (index_add sums under the determinism settings; x^K files
#      compared byte for byte), probed on cuda and from a copy on the CPU
#      (rows ≤ 1e-4); needs the molecules made by scripts/molecules-to-ogb.py
#      (MOLECULES=dir, default data/ogbg-nci-tpsa, carried to the device);
#   8. ResNet9 and ResNet18 (f64, crop-flip, BatchNorm) trained and probed on CUDA
#      against PyTorch on the CPU (tests/parity.py, 3 replayed steps, rel. err ≤ 1e-9),
#      and 300-step timings of the paper configs (random CIFAR-format data) for
#      the GPU-time estimates in their headers;
#   9. bench/run.py --device cuda on the ResNet-18 cases (training step, probe of a
#      snapshot, snapshot cost; 2 repeats): abcond/PyTorch ratios against the targets
#      of docs/benchmarks.md, written to OUTDIR/bench-cuda.{md,json}; a missed target
#      does not fail the check. BENCH=0 skips it;
#  10. peak GPU memory of probing the WMT-size Transformer (133.5M parameters,
#      synthetic tokens) against 3× model size + one minibatch of activations
#      (bench/memory.py; fails when over).
#  21. the held-out evaluation (probe.eval, eval.parquet) of step 1's CUDA run
#      against a CPU probe of a copy: loss ≤ 1e-4 relative, accuracy within 3
#      of 10,000 images.
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
# STEPS="1 3 9" runs only those steps (default: all). Steps 2, 3, 3b and 6 use
# step 1's run; the others stand alone.
want() { [ -z "${STEPS:-}" ] || [[ " ${STEPS//,/ } " == *" $1 "* ]]; }

# compare_probes CUDA_RUN CPU_COPY LABEL: probes a copy of a run probed on cuda
# again on the CPU and compares the two landscape tables row by row, ≤ 1e-4
# relative (inner relative to ‖g‖·‖x^k − x^K‖).
compare_probes() {
cp -r "$1" "$2"
rm -rf "$2/probe-parts" "$2/landscape.parquet"
"$bin" -q probe "$2" --set device=cpu
"$py" - "$1" "$2" "$3" <<'EOC'
import sys, pyarrow.parquet as pq
a = pq.read_table(sys.argv[1] + "/landscape.parquet").to_pylist()
b = pq.read_table(sys.argv[2] + "/landscape.parquet").to_pylist()
assert len(a) == len(b), (len(a), len(b))
worst = 0.0
for x, y in zip(a, b):
    for k in ("loss_k", "loss_ref", "grad_norm", "dist"):
        worst = max(worst, abs(x[k] - y[k]) / max(abs(y[k]), 1e-6))
    worst = max(worst, abs(x["inner"] - y["inner"]) / max(y["grad_norm"] * y["dist"], 1e-12))
print(f"{sys.argv[3]}: cuda vs cpu probe, {len(a)} rows, worst relative error {worst:.2e}")
assert worst <= 1e-4, worst
EOC
}

log "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
log "torch: $("$py" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda")')"

if want 1; then
log "1. quickstart on cuda"
start=$(date +%s%N)
"$bin" --out "$work/gpu" run configs/quickstart.yaml --set device=cuda "${data[@]}" 2>&1 | grep -v '^train \|^probe '
end=$(date +%s%N)
echo "quickstart wall time on cuda: $(( (end - start) / 1000000 )) ms"
run=$(ls -d "$work"/gpu/quickstart/*)
grep -A3 "^probe:" "$run/run.yaml" | head -20 || true
grep "seconds_per_snapshot\|device:" "$run/run.yaml"

fi
if want 2; then
log "2. PyTorch parity of the cuda run"
"$py" tests/parity.py "$run" --tol 1e-3

fi
if want 3; then
log "3. CPU probe of the same snapshots vs the cuda probe"
cp -r "$run" "$work/cpu-copy"
rm -rf "$work/cpu-copy/probe-parts" "$work/cpu-copy/landscape.parquet"
"$bin" --quiet probe "$work/cpu-copy" --set device=cpu
"$py" tests/compare_landscapes.py "$run/landscape.parquet" "$work/cpu-copy/landscape.parquet" --tol 1e-4
# The same for an f64 MLP (3000 steps, 13 snapshots, full data).
"$bin" --quiet --out "$work/gpu64" run configs/quickstart.yaml --set device=cuda --set model.dtype=f64 \
    --set train.epochs=null --set train.steps=3000 --set snapshots.every=null --set snapshots.log_spaced=12 "${data[@]}" >/dev/null
run64=$(ls -d "$work"/gpu64/quickstart/*)
cp -r "$run64" "$work/cpu-copy64"
rm -rf "$work/cpu-copy64/probe-parts" "$work/cpu-copy64/landscape.parquet"
"$bin" --quiet probe "$work/cpu-copy64" --set device=cpu
"$py" tests/compare_landscapes.py "$run64/landscape.parquet" "$work/cpu-copy64/landscape.parquet" --tol 1e-10

fi
if want 3b; then
log "3b. reproducibility record of the quickstart run; CUDA tests (tests/cuda.rs)"
grep -A9 "reproducibility:" "$run/run.yaml"
if [ -n "${CUDA_TESTS:-}" ]; then
    # Paths baked in at build time are replaced by this checkout's.
    ABCOND_BIN="$bin" ABCOND_REPO="$PWD" ABCOND_PYTHON="$py" ABCOND_TEST_TMPDIR="$work/cuda-tests" \
        "$CUDA_TESTS" --test-threads=1 --nocapture
else
    echo "CUDA_TESTS not set: tests/cuda.rs not run (see the header)"
fi

fi
if want 4; then
log "4. f64 half-space on cuda"
"$bin" --quiet --out "$work/gpu" run configs/paper/halfspace.yaml --set device=cuda >/dev/null
"$py" tests/parity.py "$(ls -d "$work"/gpu/halfspace/*)"
"$py" tests/check_curvature.py "$(ls -d "$work"/gpu/halfspace/*)" --tol 1e-6
fi
if want 5; then
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
fi
if want 6; then
log "6. curvature (Hessian-vector products) on cuda vs the CPU, 4 quickstart snapshots"
steps=$(ls "$run/iterates" | sed 's/step=//' | sort -n | awk 'NR==1 || NR==40 || NR==90 || NR==131' | paste -sd, -)
curv=(--set probe.curvature.enabled=true --set probe.curvature.iterations=30 --set "probe.steps=[$steps]")
"$bin" --quiet probe "$run" "${curv[@]}"
"$bin" --quiet probe "$work/cpu-copy" "${curv[@]}" --set device=cpu
grep "seconds_per_snapshot" "$run/run.yaml" "$work/cpu-copy/run.yaml"
"$py" - "$run/curvature.parquet" "$work/cpu-copy/curvature.parquet" <<'PY'
import sys, pyarrow.parquet as pq
a, b = (pq.read_table(p).to_pylist() for p in sys.argv[1:3])
key = lambda r: (r["step"], r["probe"])
b = {key(r): r for r in b}
worst = 0.0
for r in a:
    s = b[key(r)]
    e = abs(r["eigenvalue"] - s["eigenvalue"]) / max(abs(s["eigenvalue"]), 1e-30)
    print(f"  step {r['step']:>6} {r['probe']:<8} cuda {r['eigenvalue']:.6e} ({r['iterations']} it) cpu {s['eigenvalue']:.6e} ({s['iterations']} it) rel {e:.1e}")
    if r["converged"] and s["converged"]:
        worst = max(worst, e)
print(f"curvature rows {len(a)}, max rel diff of converged eigenvalues cuda vs cpu {worst:.2e}")
sys.exit(0 if worst <= 1e-3 else 1)
PY

fi
if want 7; then
log "7. known-answer problem (Example 6 point cloud) on cuda vs numpy"
"$bin" --quiet --out "$work/gpu" run configs/paper/example6.yaml --set device=cuda >/dev/null
"$py" tests/check_known.py "$(ls -d "$work"/gpu/example6/*)" | tail -5
fi
if want 8; then
log "8. CIFAR models on cuda (f64, BatchNorm, crop-flip): PyTorch parity on the CPU; step times of the paper configs (f32)"
"$py" - "$work/cifar10" "$work/cifar100" <<'PY'
import os, sys, numpy as np
rng = np.random.default_rng(0)
os.makedirs(sys.argv[1], exist_ok=True); os.makedirs(sys.argv[2], exist_ok=True)
for i in range(1, 6):  # random images in the exact CIFAR-10 binary format
    n = 1024
    np.concatenate([rng.integers(0, 10, (n, 1), dtype=np.uint8), rng.integers(0, 256, (n, 3072), dtype=np.uint8)], 1).tofile(f"{sys.argv[1]}/data_batch_{i}.bin")
n = 5120
np.concatenate([rng.integers(0, 20, (n, 1), dtype=np.uint8), rng.integers(0, 100, (n, 1), dtype=np.uint8),
                rng.integers(0, 256, (n, 3072), dtype=np.uint8)], 1).tofile(f"{sys.argv[2]}/train.bin")
PY
for m in resnet9 resnet18; do
    "$bin" --quiet --out "$work/vision" run configs/cifar10-cnn-tiny.yaml --run-id "$m" --set device=cuda \
        --set model.preset=$m --set model.width=null --set model.dtype=f64 --set data.path="$work/cifar10" --set data.subset=256 \
        --set train.batch_size=8 --set train.epochs=1 --set 'snapshots.at=[1, 2, 3]' --set snapshots.log_spaced=3 \
        --set probe.full_subset=64 --set probe.chunk_size=64 >/dev/null
    "$py" tests/parity.py "$work/vision/cifar10-cnn-tiny/$m" --tol 1e-9
done
for cfg in "cifar100-resnet9-batch:64" "cifar100-resnet9-batch:512" "cifar100-resnet-depth:64" "cifar10-cnn-width:64"; do
    c=${cfg%%:*}; b=${cfg##*:}
    t0=$(date +%s%N)
    "$bin" --out "$work/timing" train configs/paper/$c.yaml --task 0 --set train.steps=300 --set train.epochs=null \
        --set "sweep.train.batch_size=[$b]" --set 'sweep.seed=[0]' --set data.path="$work/${c%%-*}" \
        --set snapshots.every=null --set snapshots.log_spaced=null 2>&1 | grep -E "^trained|error" || true
    echo "$c batch $b: $(( ($(date +%s%N) - t0) / 1000000 )) ms for 300 steps incl. start-up"
done
fi
if want 9; then
log "9. speed on cuda: ResNet-18 training step, probe and snapshot cost against PyTorch (bench/run.py, docs/benchmarks.md; BENCH=0 skips)"
if [ "${BENCH:-1}" != 0 ]; then
    "$py" bench/run.py --device cuda --bin "$bin" --python "$py" --repeats 2 \
        --cases train-resnet18,probe-resnet18,snapshots-resnet18 --work "$work/bench" --out "$out/bench-cuda"
fi
fi
if want 10; then
log "10. memory: probe of the 133.5M-parameter WMT Transformer (synthetic tokens) on cuda, snapshots streamed (bench/memory.py)"
PYTHONPATH="tests${PYTHONPATH:+:$PYTHONPATH}" "$py" bench/memory.py --device cuda --model 130m --bin "$bin" --json "$out/memory-cuda.json"
fi
if want 11; then
log "11. checksums of files written from CUDA: abcond verify of step 1's quickstart run (every snapshot, checkpoint-free, landscape)"
"$bin" verify "$work/gpu"
fi
if want 12; then
log "12. TorchScript model on cuda: examples/own_model.py, abcond run --set device=cuda, rows vs PyTorch on the CPU"
PYTHONPATH="python:tests${PYTHONPATH:+:$PYTHONPATH}" "$py" examples/own_model.py \
    --data "${FMNIST:-/usr/share/datasets/fashion-mnist}" --examples 2000 --epochs 1 --out "$work/own"
"$bin" --out "$work/own-res" run "$work/own/own-model.yaml" --set device=cuda --set probe.full_subset=500 >/dev/null
PYTHONPATH="python:tests${PYTHONPATH:+:$PYTHONPATH}" "$py" tests/check_torchscript.py \
    "$(ls -d "$work"/own-res/own-model/*/ | head -1)" --tol 1e-4
fi
if want 13; then
log "13. a PyTorch loop on cuda recorded by abcond.Logger: examples/own_model_loop.py --device cuda, probe on cuda, rows vs PyTorch on the CPU"
PYTHONPATH="python:examples:tests${PYTHONPATH:+:$PYTHONPATH}" "$py" examples/own_model_loop.py \
    --data "${FMNIST:-/usr/share/datasets/fashion-mnist}" --examples 2000 --epochs 1 --out "$work/loop" --device cuda
"$bin" probe "$work/loop/results/own-model-loop/seed0" --set device=cuda --set probe.full_subset=500 >/dev/null
"$bin" verify "$work/loop/results/own-model-loop/seed0"
PYTHONPATH="python:tests${PYTHONPATH:+:$PYTHONPATH}" "$py" tests/check_torchscript.py \
    "$work/loop/results/own-model-loop/seed0" --tol 1e-4
fi
if want 14; then
log "14. LSTM on cuda: configs/lstm-fortunes.yaml (300 steps), rows vs torch.nn.LSTM on the CPU, two runs bit for bit"
for out in lstm-a lstm-b; do
    "$bin" --out "$work/$out" run configs/lstm-fortunes.yaml --set device=cuda --set train.steps=300 \
        --set snapshots.every=null --set snapshots.log_spaced=10 --set probe.full_subset=256 >/dev/null
done
run_a=$(ls -d "$work"/lstm-a/lstm-fortunes/*/ | head -1)
run_b=$(ls -d "$work"/lstm-b/lstm-fortunes/*/ | head -1)
PYTHONPATH="python:tests${PYTHONPATH:+:$PYTHONPATH}" "$py" tests/check_lstm.py "$run_a" --tol 1e-4
cmp "$run_a/iterates/step=300/part-0.parquet" "$run_b/iterates/step=300/part-0.parquet" \
    || { log "14. FAILED: two CUDA runs of the LSTM differ"; exit 1; }
fi
if want 15; then
log "15. pythia-70m on cuda: 200 steps twice (bit for bit) and the step time"
"$py" -c "import numpy as np; np.random.default_rng(0).integers(0, 50304, 2_000_000).astype(np.uint16).tofile('$work/pile.bin')"
cat > "$work/pythia.yaml" <<EOC
experiment: pythia-gpu
seed: 0
device: cuda
model: {preset: pythia-70m}
data: {dataset: tokens, path: $work/pile.bin, seq_len: 256, vocab: 50304}
train: {batch_size: 32, steps: 200}
optim: {name: adamw, lr: 0.0006}
snapshots: {log_spaced: 4}
EOC
for out in py-a py-b; do "$bin" -q --out "$work/$out" train "$work/pythia.yaml"; done
a=$(ls -d "$work"/py-a/pythia-gpu/*/ | head -1); b=$(ls -d "$work"/py-b/pythia-gpu/*/ | head -1)
cmp "$a/iterates/step=200/part-0.parquet" "$b/iterates/step=200/part-0.parquet" \
    || { log "15. FAILED: two CUDA runs of pythia-70m differ"; exit 1; }
"$bin" inspect "$a" | grep -i "step\|timing" | head -5
fi
if want 16; then
log "16. replay probing on cuda: quickstart at 3000 steps and ResNet-18 (BatchNorm, crop-flip) at 60 steps, every step bit for bit"
"$bin" -q --out "$work/replay" train configs/quickstart.yaml --set device=cuda --set train.epochs=null \
    --set train.steps=3000 --set snapshots.log_spaced=null --set snapshots.every=500
rq=$(ls -d "$work"/replay/quickstart/*/ | head -1)
"$bin" probe "$rq" --replay --set device=cuda --set probe.full_subset=1000
grep -A12 "^  replay:" "$rq/run.yaml"
"$bin" inspect "$rq" | grep -i "timing\|steps" | head -5
"$py" - "$work/c10" <<'EOC'
import numpy as np, os, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(0)
for i in range(1, 6):
    rec = np.concatenate([rng.integers(0, 10, (200, 1)), rng.integers(0, 256, (200, 3072))], 1).astype(np.uint8)
    rec.tofile(f"{d}/data_batch_{i}.bin")
EOC
cat > "$work/replay-r18.yaml" <<EOC
experiment: replay-r18
seed: 0
device: cuda
model: {preset: resnet18}
data: {dataset: cifar10, path: $work/c10, augment: crop-flip}
train: {batch_size: 32, steps: 60}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
snapshots: {every: 20, optimizer_state: true}
probe: {extra_batches: 0, full: false}
EOC
"$bin" -q --out "$work/replay" train "$work/replay-r18.yaml"
rr=$(ls -d "$work"/replay/replay-r18/*/ | head -1)
"$bin" probe "$rr" --replay
grep -A12 "^  replay:" "$rr/run.yaml"
fi
if want 17; then
log "17. the GNN (issue 20) on cuda: configs/gnn-molecules.yaml at 300 steps twice (index_add under the determinism settings), CUDA vs CPU probe of the same snapshots"
mol=${MOLECULES:-data/ogbg-nci-tpsa}
[ -f "$mol/raw/edge.csv.gz" ] || { echo "MOLECULES=$mol: run scripts/molecules-to-ogb.py here first and carry it"; exit 1; }
for r in a b; do
    "$bin" -q --out "$work/gnn-$r" train configs/gnn-molecules.yaml --set device=cuda --set data.path="$mol" --set train.steps=300
done
ga=$(ls -d "$work"/gnn-a/gnn-molecules/*/ | head -1); gb=$(ls -d "$work"/gnn-b/gnn-molecules/*/ | head -1)
cmp "$ga/iterates/step=300/part-0.parquet" "$gb/iterates/step=300/part-0.parquet" && echo "gnn: two cuda runs give the same x^K bytes"
grep -A4 "timing:" "$ga/run.yaml" | head -5
"$bin" -q probe "$ga" --set device=cuda
compare_probes "$ga" "$work/gnn-cpu" "gnn"
fi
if want 18; then
log "18. the WMT Transformer on padded TFRecord pairs (issue 20): cuda training with label smoothing, CUDA vs CPU probe"
mkdir -p "$work/wmt-pairs"
PYTHONPATH=tests "$py" - "$work/wmt-pairs" <<'EOC'
import os, sys
import numpy as np
from abcond_ref import translation as t
rng = np.random.default_rng(0)
pairs = []
for _ in range(4000):
    s = list(map(int, rng.integers(1, 1000, size=rng.integers(1, 40))))
    pairs.append((s, [1 + (x * 7) % 999 for x in s[::-1]]))
t.write_tfrecord(os.path.join(sys.argv[1], "train.tfrecord-00000-of-00001"), pairs)
EOC
cat > "$work/wmt-pairs.yaml" <<EOC
experiment: wmt-pairs-gpu
seed: 0
device: cuda
model: {preset: transformer-wmt, width: 64, depth: 2, heads: 4, mlp_dim: 128, label_smoothing: 0.1}
data: {dataset: translation, path: $work/wmt-pairs, seq_len: 40, vocab: 1000}
train: {batch_size: 64, steps: 200}
optim: {name: adam, lr: 0.001}
snapshots: {log_spaced: 6}
probe: {extra_batches: 1, full: true, full_subset: 512}
EOC
"$bin" -q --out "$work/wmt" run "$work/wmt-pairs.yaml"
wa=$(ls -d "$work"/wmt/wmt-pairs-gpu/*/ | head -1)
grep -A4 "timing:" "$wa/run.yaml" | head -5
compare_probes "$wa" "$work/wmt-cpu" "wmt pairs"
fi
if want 19; then
log "19. DLRM-small at full size (539M parameters) on cuda: probe peak GPU memory"
mkdir -p "$work/criteo"
PYTHONPATH=tests "$py" -c "from abcond_ref import dlrm; dlrm.write_criteo_tsv('$work/criteo/day_0', dlrm.random_rows(40000, seed=1))"
cat > "$work/dlrm.yaml" <<EOC
experiment: dlrm-gpu
seed: 0
device: cuda
model: {preset: dlrm-small}
data: {dataset: criteo, path: $work/criteo}
train: {batch_size: 8192, steps: 20}
optim: {name: adam, lr: 0.001}
snapshots: {every: 10}
probe: {extra_batches: 1, full: false}
EOC
"$bin" -q --out "$work/dlrm" train "$work/dlrm.yaml"
da=$(ls -d "$work"/dlrm/dlrm-gpu/*/ | head -1)
grep -A4 "timing:" "$da/run.yaml" | head -5
( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > "$work/dlrm-mem.txt" &
mon=$!
"$bin" -q probe "$da"
kill $mon
echo "dlrm probe: peak GPU memory $(sort -n "$work/dlrm-mem.txt" | tail -1) MiB (3 x model = 6,171 MiB)"
fi
if want 20; then
log "20. the fastMRI U-Net (7.8M) on cuda: 320 x 320 phantom volumes, CUDA vs CPU probe"
# FASTMRI=dir of volumes carried from a machine with h5py (written by this
# same snippet), or they are written here (needs h5py on the device).
fm=${FASTMRI:-$work/fastmri}
if [ -z "${FASTMRI:-}" ]; then
mkdir -p "$fm"
PYTHONPATH=tests "$py" - "$fm" <<'EOC'
import os, sys
import numpy as np
from abcond_ref import unet
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:640, 0:368]
for v in range(4):
    ks, ts = [], []
    for _ in range(16):
        img = sum(rng.uniform(0.5, 2) * np.exp(-((yy - rng.uniform(200, 440)) ** 2 + (xx - rng.uniform(60, 300)) ** 2) / (2 * rng.uniform(10, 60) ** 2)) for _ in range(8))
        ks.append(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img), norm="ortho")))
        ts.append(unet.center_crop(np.abs(img), (320, 320)))
    unet.write_fastmri_h5(os.path.join(sys.argv[1], f"vol{v:03d}.h5"), np.array(ks), np.array(ts))
EOC
fi
cat > "$work/unet.yaml" <<EOC
experiment: unet-gpu
seed: 0
device: cuda
model: {preset: unet-fastmri}
data: {dataset: fastmri, path: $fm}
train: {batch_size: 32, steps: 200}
optim: {name: adam, lr: 0.001}
snapshots: {log_spaced: 5}
probe: {extra_batches: 1, full: true, full_subset: 64}
EOC
"$bin" -q --out "$work/unet" run "$work/unet.yaml"
ua=$(ls -d "$work"/unet/unet-gpu/*/ | head -1)
grep -A4 "timing:" "$ua/run.yaml" | head -5
compare_probes "$ua" "$work/unet-cpu" "unet"
fi
log "21. held-out evaluation on cuda vs the CPU: step 1's quickstart eval.parquet (10,000 t10k images per snapshot)"
rm -rf "$work/eval-cpu"
cp -r "$run" "$work/eval-cpu"
"$bin" -q probe "$work/eval-cpu" --set device=cpu
"$py" - "$run/eval.parquet" "$work/eval-cpu/eval.parquet" <<'PY'
import sys
import pyarrow.parquet as pq
a, b = (pq.read_table(p).to_pydict() for p in sys.argv[1:3])
assert a["step"] == b["step"] and len(a["step"]) > 100, (len(a["step"]), len(b["step"]))
loss = max(abs(x - y) / abs(y) for x, y in zip(a["loss"], b["loss"]))
acc = max(abs(x - y) for x, y in zip(a["accuracy"], b["accuracy"]))
print(f"eval cuda vs cpu: {len(a['step'])} snapshots, loss rel err {loss:.2e}, accuracy |diff| {acc:.2e}; final test accuracy {a['accuracy'][-1]:.4f}")
assert loss <= 1e-4 and acc <= 3e-4, (loss, acc)
PY
log "all GPU checks passed"

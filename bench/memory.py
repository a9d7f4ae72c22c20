#!/usr/bin/env python3
"""Peak memory of the probe pass: `abcond probe` against the target
3 × model size + one minibatch of activations, and against the same probe pass
written in PyTorch (docs/benchmarks-storage.md).

    PYTHONPATH=tests python3 bench/memory.py --bin target/release/abcond --model 10m,100m,130m
    PYTHONPATH=tests python3 bench/memory.py --bin "$ABCOND_BIN" --model 130m --device cuda   # GPU check

(from the repository root; PYTHONPATH=tests makes the reference modules of
tests/abcond_ref importable for the PyTorch side.)

For each model (bench/storage_common.py: MLPs of 10M and 100M parameters on
random 28×28 images, the 133.5M-parameter WMT Transformer on synthetic tokens
of length 64): `abcond train` runs 3 SGD steps with a snapshot at every step,
then `abcond probe` measures snapshots 0, 1, 2 against x^3 on their own
minibatch and one extra minibatch each. Measured:

  - peak host memory (max RSS of the process, from wait4) and, with --device
    cuda, peak GPU memory (nvidia-smi sampled every 50 ms: the process's
    used_memory, or the whole GPU's memory.used above its idle level when the
    per-process figure is unavailable, e.g. in a container);
  - the same for a baseline: the same command, data and device with a model of
    negligible size, so that the difference is what the probe pass adds on top
    of the process, libtorch (and the CUDA context) and the data;
  - the PyTorch equivalent (this script with --torch-side, a separate process):
    the model at x^k and a copy at x^K, for each of 3 snapshots the values
    replaced in place (as a load into the parameters), per minibatch a
    forward at x^K, forward + backward at x^k, and the inner products and norms
    accumulated in f64 per piece of 2^22 values; its own baseline likewise.

Target: peak ≤ baseline + 3 M + A, where M = parameters × 4 bytes (x^k, x^K
and the gradient) and A = one minibatch of activations, measured in the PyTorch
process as the bytes of the tensors autograd saves for the backward pass of one
minibatch (parameters excluded) plus the output. The baseline's own model and
activations are in its peak already, so the probe pass (peak − baseline) is
held to 3 (M − M_b) + (A − A_b), with M_b and A_b the baseline model's (this
matters for the Transformer, whose baseline still computes 32,000-way logits).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from storage_common import BASELINE, ROOT, SIZES, TOKENS, abcond, config_text, data_section, machine, run_dir

STEPS = 3
BATCH = {"idx": 64, "tokens": 16}
PROBE = {"extra_batches": 1, "full": False}
MB = 1 << 20


class GpuSampler:
    """Peak GPU memory of process `pid` (MiB) by polling nvidia-smi."""

    def __init__(self, pid):
        self.pid, self.peak, self.peak_total, self.per_process = pid, 0, 0, False
        self.idle = self.total_used()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def total_used():
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True)
        return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else 0

    def run(self):
        while not self.stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                pid, _, used = line.partition(",")
                if pid.strip() == str(self.pid) and used.strip().isdigit():
                    self.per_process = True
                    self.peak = max(self.peak, int(used))
            self.peak_total = max(self.peak_total, self.total_used() - self.idle)
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return (self.peak if self.per_process else self.peak_total) * MB, "per-process" if self.per_process else "whole GPU above idle"


def measure(cmd, env, device):
    """Runs `cmd`; returns (peak RSS bytes, peak GPU bytes or None, how GPU was measured, stdout)."""
    # Output to files, not pipes: a full pipe would stall the child while we wait.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        sampler = GpuSampler(p.pid) if device == "cuda" else None
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        gpu, how = sampler.finish() if sampler else (None, None)
        if p.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err.read()}")
        out.seek(0)
        return usage.ru_maxrss * 1024, gpu, how, out.read()


def probe_peak(binary, out, experiment, device, threads):
    rd = run_dir(out, experiment)
    for leftover in ("probe-parts", "landscape.parquet", "curvature-parts", "curvature.parquet"):
        p = os.path.join(rd, leftover)
        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (os.path.exists(p) and os.remove(p))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [binary, "--quiet", "--threads", str(threads), "--out", out, "probe", rd]
    rss, gpu, how, _ = measure(cmd, env, device)
    landscape = os.path.join(rd, "landscape.parquet")
    assert os.path.exists(landscape), f"{rd}: the probe wrote no landscape.parquet"
    return rss, gpu, how


def torch_peak(size, device, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-side", size, "--device", device, "--threads", str(threads)]
    rss, gpu, how, stdout = measure(cmd, dict(os.environ, OMP_NUM_THREADS=str(threads)), device)
    return rss, gpu, how, json.loads(stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- PyTorch side


def torch_side(size, device, threads):
    """The probe pass in eager PyTorch; prints JSON (activation bytes, CUDA peaks)."""
    import torch

    torch.set_num_threads(threads)
    dev = torch.device(device)
    model_cfg, kind, _ = SIZES[size] if size in SIZES else (BASELINE[size.split(":")[1]], size.split(":")[1], 0)
    if kind == "idx":
        from abcond_ref.models import MLP

        def build():
            return MLP(784, model_cfg["width"], 10).to(dev)

        def batch(g):
            return torch.randn(BATCH["idx"], 1, 28, 28, generator=g).to(dev), torch.randint(0, 10, (BATCH["idx"],), generator=g).to(dev)
    else:
        from abcond_ref.transformer import Transformer

        width, depth = model_cfg.get("width", 1024), model_cfg.get("depth", 6)
        heads, mlp = model_cfg.get("heads", 16), model_cfg.get("mlp_dim", 1024)

        def build():
            return Transformer(TOKENS["vocab"], width, heads, mlp, depth).to(dev)

        def batch(g):
            shape = (BATCH["tokens"], TOKENS["seq_len"])
            return torch.randint(1, TOKENS["vocab"], shape, generator=g).to(dev), torch.randint(1, TOKENS["vocab"], shape, generator=g).to(dev)

    model, reference = build(), build()
    params = list(model.parameters())
    ref = [p.detach() for p in reference.parameters()]
    g = torch.Generator().manual_seed(0)

    # A: what autograd keeps for one minibatch's backward pass, parameters excluded.
    own = {p.data_ptr() for p in params}
    saved = {}

    def pack(t):
        if t.data_ptr() not in own:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x, y = batch(g)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, y)
    activations = sum(saved.values()) + out.numel() * out.element_size()
    del out, saved

    def pieces(t):
        flat = t.reshape(-1)
        step = (1 << 16) if t.device.type == "cpu" else (1 << 22)
        return [flat[i : i + step] for i in range(0, flat.numel(), step)]

    results = []
    for snapshot in range(STEPS):
        with torch.no_grad():
            for p in params:  # the load of x^k: in place
                p.normal_(generator=None)
        for _ in range(1 + PROBE["extra_batches"]):
            x, y = batch(g)
            with torch.no_grad():
                loss_ref = reference(x, y).double().mean().item()
            model.zero_grad(set_to_none=True)  # as abcond (and PyTorch's default)
            per = model(x, y)
            (per.sum() / len(per)).backward()
            with torch.no_grad():
                inner = grad_sq = dist_sq = 0.0
                for p, r in zip(params, ref):
                    for gp, pp, rp in zip(pieces(p.grad), pieces(p), pieces(r)):
                        d = pp.double() - rp.double()
                        gd = gp.double()
                        inner += float((gd * d).sum())
                        grad_sq += float((gd * gd).sum())
                        dist_sq += float((d * d).sum())
            results.append((per.double().mean().item(), loss_ref, inner, grad_sq, dist_sq))
    info = {"activation_bytes": activations, "parameters": sum(p.numel() for p in params), "rows": len(results)}
    if dev.type == "cuda":
        torch.cuda.synchronize()
        info["cuda_max_allocated"] = torch.cuda.max_memory_allocated()
        info["cuda_max_reserved"] = torch.cuda.max_memory_reserved()
    info["own_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(info))


# ---------------------------------------------------------------- driver


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/abcond"))
    ap.add_argument("--model", default="10m,100m,130m", help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", help="scratch directory (default: a temporary one, removed afterwards)")
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--torch-side", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_side:
        return torch_side(a.torch_side, a.device, a.threads)
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"{a.bin} is not an executable; build it with `cargo build --release`")
    work = a.work or tempfile.mkdtemp(prefix="abcond-memory-")
    os.makedirs(work, exist_ok=True)
    results = {"machine": machine(a.bin), "device": a.device, "models": {}}
    failed = []
    for size in a.model.split(","):
        model, kind, params = SIZES[size]
        out = os.path.join(work, f"runs-{size}")
        shutil.rmtree(out, ignore_errors=True)
        peaks = {}
        for role, m in (("model", model), ("baseline", BASELINE[kind])):
            experiment = f"mem-{size}-{role}"
            cfg = os.path.join(work, f"{experiment}.yaml")
            with open(cfg, "w") as f:
                f.write(config_text(experiment, m, data_section(kind, work), a.device, BATCH[kind], STEPS, PROBE))
            abcond(a.bin, ["--out", out, "train", cfg], threads=a.threads)
            peaks[role] = probe_peak(a.bin, out, experiment, a.device, a.threads)
        with open(os.path.join(run_dir(out, f"mem-{size}-model"), "run.yaml")) as f:
            got = next(int(l.split(":")[1]) for l in f if l.strip().startswith("parameters:"))
        assert got == params, f"{size}: run.yaml says {got} parameters, expected {params}"
        r = {"parameters": params, "model_bytes": params * 4}
        r["abcond"] = {"peak_rss": peaks["model"][0], "baseline_rss": peaks["baseline"][0]}
        if a.device == "cuda":
            r["abcond"].update(peak_gpu=peaks["model"][1], baseline_gpu=peaks["baseline"][1], gpu_measured=peaks["model"][2])
        if not a.no_torch:
            t_model = torch_peak(size, a.device, a.threads)
            t_base = torch_peak(f"baseline:{kind}", a.device, a.threads)
            r["activation_bytes"] = t_model[3]["activation_bytes"]
            r["baseline_activation_bytes"] = t_base[3]["activation_bytes"]
            r["baseline_parameters"] = t_base[3]["parameters"]
            assert t_model[3]["parameters"] == params, (size, t_model[3]["parameters"])
            r["torch"] = {"peak_rss": t_model[0], "baseline_rss": t_base[0]}
            if a.device == "cuda":
                r["torch"].update(
                    peak_gpu=t_model[1], baseline_gpu=t_base[1], gpu_measured=t_model[2],
                    cuda_max_allocated=t_model[3]["cuda_max_allocated"], baseline_cuda_max_allocated=t_base[3]["cuda_max_allocated"],
                )
        mem = "gpu" if a.device == "cuda" else "rss"
        r["target_bytes"] = 3 * (r["model_bytes"] - 4 * r.get("baseline_parameters", 0)) + r.get("activation_bytes", 0) - r.get("baseline_activation_bytes", 0)
        r["abcond"]["probe_pass"] = r["abcond"][f"peak_{mem}"] - r["abcond"][f"baseline_{mem}"]
        if "torch" in r:
            r["torch"]["probe_pass"] = r["torch"][f"peak_{mem}"] - r["torch"][f"baseline_{mem}"]
        r["within_target"] = r["abcond"]["probe_pass"] <= r["target_bytes"]
        # Below this, the noise of peak memory (allocator, libraries: tens of
        # MiB, for PyTorch as for abcond) exceeds 3 M: such sizes are smoke tests.
        r["judged"] = r["model_bytes"] >= 64 * MB
        if r["judged"] and not r["within_target"]:
            failed.append(size)
        results["models"][size] = r
        print(f"{size}: probe pass {r['abcond']['probe_pass'] / MB:.0f} MiB, target {r['target_bytes'] / MB:.0f} MiB", file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)
    print(report(results))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit(f"over the target: {', '.join(failed)}")


def report(results):
    gpu = results["device"] == "cuda"
    what = "GPU memory (nvidia-smi)" if gpu else "host memory (max RSS)"
    lines = [
        f"Peak {what} of the probe pass, MiB; probe pass = peak − baseline (same command and data, negligible model);",
        "target = 3 (M − M_b) + (A − A_b), the baseline's model and activations being part of its peak already.",
        "",
        "| model | parameters | M = 4·params | A (activations) | A_b (baseline) | target | abcond peak | abcond baseline | abcond probe pass | within target | PyTorch probe pass | abcond / PyTorch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    key = "gpu" if gpu else "rss"
    for size, r in results["models"].items():
        ab, t = r["abcond"], r.get("torch")
        a_bytes = r.get("activation_bytes")
        cells = [
            size,
            f"{r['parameters']:,}",
            f"{r['model_bytes'] / MB:.0f}",
            f"{a_bytes / MB:.0f}" if a_bytes is not None else "–",
            f"{r['baseline_activation_bytes'] / MB:.0f}" if a_bytes is not None else "–",
            f"{r['target_bytes'] / MB:.0f}",
            f"{ab[f'peak_{key}'] / MB:.0f}",
            f"{ab[f'baseline_{key}'] / MB:.0f}",
            f"{ab['probe_pass'] / MB:.0f} ({ab['probe_pass'] / r['model_bytes']:.2f} M)",
            ("✓" if r["within_target"] else "✗") + ("" if r["judged"] else " (smoke test: M < 64 MiB)"),
            f"{t['probe_pass'] / MB:.0f}" if t else "–",
            f"{ab['probe_pass'] / t['probe_pass']:.2f}" if t and t["probe_pass"] > 0 else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if gpu:
            extra = f"abcond host RSS peak {ab['peak_rss'] / MB:.0f} MiB (baseline {ab['baseline_rss'] / MB:.0f}); GPU measured {ab['gpu_measured']}"
            if t:
                extra += f"; PyTorch torch.cuda.max_memory_allocated {t['cuda_max_allocated'] / MB:.0f} MiB (baseline {t['baseline_cuda_max_allocated'] / MB:.0f})"
            lines.append(f"| | {extra} | | | | | | | | | | |")
    # Two sizes of one architecture give the marginal cost per model byte,
    # free of what the baseline subtraction leaves in or takes out.
    mlps = sorted((r["model_bytes"], r, size) for size, r in results["models"].items() if size in ("10m", "100m"))
    if len(mlps) == 2:
        (m1, r1, s1), (m2, r2, s2) = mlps
        def slope(side):
            return (r2[side][f"peak_{key}"] - r1[side][f"peak_{key}"]) / (m2 - m1)
        line = f"Marginal peak memory per model byte, {s1} → {s2}: abcond {slope('abcond'):.2f} M"
        if "torch" in r1 and "torch" in r2:
            line += f", PyTorch {slope('torch'):.2f} M"
        lines += ["", line + " (target 3 M plus the activations' growth, here < 0.1 M)."]
    lines.append("")
    lines.append("Machine: " + "; ".join(f"{k}: {v}" for k, v in results["machine"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()

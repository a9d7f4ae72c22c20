"""Shared pieces of the storage benchmarks (bench/snapshot_io.py, bench/memory.py):
the model sizes, self-contained data, running abcond, and a description of the
machine. See docs/benchmarks-storage.md."""

import gzip
import json
import os
import platform
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name → (model section, data kind, parameter count). The MLPs (784 → W → W → 10)
# are sized to 10M and 100M parameters: W² + 796 W + 10. The 130M model is
# AlgoPerf's WMT Transformer (models/transformer-wmt.yaml) on synthetic tokens.
SIZES = {
    "tiny": ({"preset": "mlp", "width": 64}, "idx", 55_050),
    "10m": ({"preset": "mlp", "width": 2790}, "idx", 10_004_950),
    "100m": ({"preset": "mlp", "width": 9610}, "idx", 100_001_670),
    "130m": ({"preset": "transformer-wmt"}, "tokens", 133_521_408),
    "transformer-tiny": (
        {"preset": "transformer-wmt", "width": 32, "depth": 1, "heads": 4, "mlp_dim": 32},
        "tokens",
        1_040_960,
    ),
}
# The baseline of a size: the same data and process, a negligible model.
BASELINE = {
    "idx": {"preset": "mlp", "width": 1},
    "tokens": {"preset": "transformer-wmt", "width": 4, "depth": 1, "heads": 1, "mlp_dim": 4},
}
TOKENS = {"vocab": 32000, "seq_len": 64}


def write_idx_images(directory, n=512, seed=0):
    """A Fashion-MNIST-format training set of `n` random 28×28 images (IDX files),
    so that the benchmarks need no downloaded data and the data stay small."""
    import numpy as np

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    with gzip.open(os.path.join(directory, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
    with open(os.path.join(directory, "train-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels.tobytes())


def data_section(kind, work):
    if kind == "idx":
        path = os.path.join(work, "idx-data")
        if not os.path.exists(os.path.join(path, "train-labels-idx1-ubyte")):
            write_idx_images(path)
        return {"dataset": "fashion-mnist", "path": path}
    return {"dataset": "synthetic-translation", "examples": 256, **TOKENS}


def config_text(experiment, model, data, device, batch_size, steps, probe):
    """An abcond config (JSON is YAML) for `steps` SGD steps with a snapshot
    at every step."""
    return json.dumps(
        {
            "experiment": experiment,
            "seed": 0,
            "device": device,
            "model": model,
            "data": data,
            "train": {"batch_size": batch_size, "steps": steps},
            "optim": {"name": "sgd", "lr": 0.01},
            "snapshots": {"every": 1},
            "probe": probe,
        },
        indent=1,
    )


def abcond(binary, args, threads, **kw):
    """Runs abcond, raising with its stderr on failure."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, "--quiet", "--threads", str(threads), *args], env=env, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"abcond {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out


def run_dir(out, experiment):
    exp = os.path.join(out, experiment)
    (d,) = [os.path.join(exp, e) for e in os.listdir(exp) if os.path.isdir(os.path.join(exp, e))]
    return d


def cpu_info():
    """The CPU model, logical CPUs and threads per core, from lscpu (empty without it)."""
    info = {}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return info
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core"):
            info[key.strip()] = value.strip()
    return info


def machine(binary=None):
    """What the numbers were measured on."""
    info = {"python": platform.python_version(), "kernel": platform.release(), **cpu_info()}
    with open("/proc/meminfo") as f:
        info["memory"] = f.readline().split(":")[1].strip()
    info["load average (1, 5, 15 min)"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import safetensors

        info["safetensors"] = safetensors.__version__
    except ImportError:
        pass
    if binary:
        info["abcond"] = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    return info

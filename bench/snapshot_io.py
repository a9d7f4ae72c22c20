#!/usr/bin/env python3
"""Snapshot write and read throughput of abcond against torch.save/torch.load and
safetensors, on the same tensors (docs/benchmarks-storage.md).

    python3 bench/snapshot_io.py --bin target/release/abcond \\
        --io-bin target/release/examples/snapshot_io --sizes 10m,100m --repeats 7

For each size, `abcond train` writes the snapshot of an MLP of that many
parameters (bench/storage_common.py); its tensors, read with pyarrow, are what
all three methods write and read. Each repeat runs the three methods in a
rotating order, each writing the tensors durably (write to a temporary, fsync,
rename, fsync the directory — what abcond always does) and reading the file it
just wrote into tensors allocated beforehand (a model's parameters). abcond's
times come from examples/snapshot_io.rs, which calls the writer of `abcond
train` and the streaming reader of `abcond probe`, timed in-process like the
Python calls, after one untimed warm-up of the same operation (the Python
process is warm after its first repeat). One intra-op thread everywhere. The
page cache is warm for every read (the file was just written), unless
--drop-caches (root; drops the whole machine's cache before each read).

MB/s = parameter bytes (values × 4 for f32) / seconds. Reported: medians over
the repeats, and the ratios abcond/safetensors and abcond/torch against the
targets (≥ 0.5× safetensors and ≥ 1× torch).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import torch

from storage_common import ROOT, SIZES, abcond, config_text, data_section, machine, run_dir

METHODS = ["abcond", "torch", "safetensors"]


def durable(path, write):
    """write(tmp) then fsync, rename over `path`, fsync the directory; returns
    (seconds, seconds before the fsync)."""
    tmp = path + ".tmp"
    t0 = time.perf_counter()
    write(tmp)
    before = time.perf_counter() - t0
    fd = os.open(tmp, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    return time.perf_counter() - t0, before


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def read_snapshot(path):
    """{name: tensor} of an abcond tensor file (chunk rows joined): the plain
    pandas/pyarrow way a user would read it, timed as a baseline (so not the
    companion's abcond.read_tensors, whose checksum pass it would add)."""
    t = pq.read_table(path).to_pylist()
    parts = {}
    for r in sorted(t, key=lambda r: (r["name"], r["chunk"])):
        parts.setdefault(r["name"], (r["shape"], []))[1].append(np.asarray(r["values"], dtype=np.float32))
    return {n: torch.from_numpy(np.concatenate(p)).reshape(s) for n, (s, p) in parts.items()}


def one_round(method, src, work, tensors, dest, io_bins, cold):
    """Write then read with `method`; returns {write, write_before_sync, read} seconds."""
    if method in io_bins:
        io_bin = io_bins[method]
        dst = os.path.join(work, "abcond.parquet")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        run = lambda *args: json.loads(subprocess.run([io_bin, *args], check=True, capture_output=True, text=True, env=env).stdout)  # noqa: E731
        w = run("write", src, dst, "--warmup")
        if cold:
            drop_caches()
        r = run("read", dst, "--warmup", src)
        os.remove(dst)
        before = w["seconds_before_sync"]
        return {"write": w["seconds"], "write_before_sync": before if before is not None else float("nan"), "read": r["seconds"], "bytes": w["bytes"]}
    if method == "torch":
        path = os.path.join(work, "state.pt")
        total, before = durable(path, lambda p: torch.save(tensors, p))
        load = lambda p: torch.load(p, weights_only=True)  # noqa: E731
    else:
        from safetensors.torch import load_file, save_file

        path = os.path.join(work, "state.safetensors")
        total, before = durable(path, lambda p: save_file(tensors, p))
        load = load_file
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    state = load(path)
    with torch.no_grad():
        for name, d in dest.items():
            d.copy_(state[name])
    del state
    read = time.perf_counter() - t0
    size = os.path.getsize(path)
    os.remove(path)
    return {"write": total, "write_before_sync": before, "read": read, "bytes": size}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/abcond"))
    ap.add_argument("--io-bin", default=os.path.join(ROOT, "target/release/examples/snapshot_io"))
    ap.add_argument("--sizes", default="10m,100m", help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--work", help="scratch directory (default: a temporary one; its filesystem is the one measured)")
    ap.add_argument("--drop-caches", action="store_true", help="cold reads: drop the page cache before each read (root)")
    ap.add_argument("--json", help="write all measurements here")
    ap.add_argument("--before-io-bin", help="a build of the same timing program from an earlier abcond, measured as a fourth method `abcond-before` (before/after)")
    a = ap.parse_args()
    io_bins = {"abcond": a.io_bin}
    if a.before_io_bin:
        io_bins["abcond-before"] = a.before_io_bin
    methods = METHODS + (["abcond-before"] if a.before_io_bin else [])
    for b in (a.bin, a.io_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is not an executable; build with `cargo build --release --example snapshot_io`")
    torch.set_num_threads(1)
    work = a.work or tempfile.mkdtemp(prefix="abcond-snapshot-io-")
    os.makedirs(work, exist_ok=True)
    results = {"machine": machine(a.bin), "work": work, "cache": "cold (dropped before each read)" if a.drop_caches else "warm", "sizes": {}}
    for size in a.sizes.split(","):
        model, data_kind, params = SIZES[size]
        out = os.path.join(work, f"runs-{size}")
        shutil.rmtree(out, ignore_errors=True)
        cfg = os.path.join(work, f"{size}.yaml")
        with open(cfg, "w") as f:
            f.write(config_text(f"io-{size}", model, data_section(data_kind, work), "cpu", 16, 1, {"extra_batches": 0, "full": False}))
        abcond(a.bin, ["--out", out, "train", cfg], threads=1)
        src = os.path.join(run_dir(out, f"io-{size}"), "iterates", "step=1", "part-0.parquet")
        tensors = read_snapshot(src)
        values = sum(t.numel() for t in tensors.values())
        assert values == params, f"{size}: {values} values, expected {params}"
        dest = {n: torch.zeros_like(t) for n, t in tensors.items()}
        mb = values * 4 / 1e6
        runs = {m: [] for m in methods}
        for r in range(a.repeats):
            order = methods[r % len(methods):] + methods[: r % len(methods)]
            for m in order:
                runs[m].append(one_round(m, src, work, tensors, dest, io_bins, a.drop_caches))
            print(f"{size} repeat {r + 1}/{a.repeats}: " + ", ".join(f"{m} w {mb / runs[m][-1]['write']:.0f} r {mb / runs[m][-1]['read']:.0f} MB/s" for m in methods), file=sys.stderr)
        med = {m: {k: statistics.median(x[k] for x in runs[m]) for k in ("write", "write_before_sync", "read", "bytes")} for m in methods}
        results["sizes"][size] = {"parameters": values, "megabytes": mb, "runs": runs, "median_seconds": med}
        shutil.rmtree(out, ignore_errors=True)
    print(report(results))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


def report(results):
    methods = list(next(iter(results["sizes"].values()))["median_seconds"]) if results["sizes"] else METHODS
    lines = [
        "| model | op | " + " | ".join(f"{m} MB/s" for m in methods) + " | abcond/safetensors (≥ 0.5) | abcond/torch (≥ 1) |",
        "|---|---|" + "---|" * (len(methods) + 2),
    ]
    for size, r in results["sizes"].items():
        mb, med = r["megabytes"], r["median_seconds"]
        for op, label in (("write", "write (durable)"), ("write_before_sync", "write (before fsync)"), ("read", "read")):
            rate = {m: mb / med[m][op] for m in methods}
            vs_st, vs_t = rate["abcond"] / rate["safetensors"], rate["abcond"] / rate["torch"]
            ok = lambda x, t: f"{x:.2f} {'✓' if x >= t else '✗'}"  # noqa: E731
            targets = f"{ok(vs_st, 0.5)} | {ok(vs_t, 1.0)}" if op != "write_before_sync" else f"{vs_st:.2f} | {vs_t:.2f}"
            cells = " | ".join("–" if rate[m] != rate[m] else f"{rate[m]:.0f}" for m in methods)
            lines.append(f"| {size} ({r['parameters']:,} params, {mb:.0f} MB) | {label} | {cells} | {targets} |")
        sizes = ", ".join(f"{m} {med[m]['bytes'] / 1e6:.1f} MB" for m in methods)
        lines.append(f"| | file size | {sizes} |" + " |" * (len(methods) + 1))
    reps = {len(r["runs"]["abcond"]) for r in results["sizes"].values()}
    lines.append("")
    lines.append(f"Medians of {', '.join(map(str, sorted(reps)))} repeats; page cache {results['cache']}; scratch {results['work']}.")
    lines.append("Machine: " + "; ".join(f"{k}: {v}" for k, v in results["machine"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()

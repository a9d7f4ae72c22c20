#!/usr/bin/env python3
"""Reads every table of an abcond run directory with pandas, Polars, DuckDB and
pyarrow, asserts the documented dtypes (docs/schemas.md), and runs the README's
Python snippets against the run.

usage: read_outputs.py RUN_DIR      exit status 1 on any mismatch
"""

import os
import re
import tempfile
import sys

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import yaml

run = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def expect(what, got, want):
    if got != want:
        print(f"{what}:\n  got  {got}\n  want {want}")
        sys.exit(1)


# steps.parquet
steps = pl.read_parquet(f"{run}/steps.parquet")
expect(
    "steps (polars)",
    dict(steps.schema),
    {
        "run_id": pl.String,
        "seed": pl.Int64,
        "step": pl.Int64,
        "epoch": pl.Int64,
        "lr": pl.Float64,
        "step_size": pl.Float64,
        "loss": pl.Float64,
        "grad_norm": pl.Float64,
        "batch_indices": pl.List(pl.Int64),
        "wall_time_s": pl.Float64,
    },
)
sp = pd.read_parquet(f"{run}/steps.parquet")
expect("steps (pandas)", [str(t) for t in sp.dtypes], ["str", "int64", "int64", "int64", "float64", "float64", "float64", "float64", "object", "float64"])
expect("steps are 0..K-1", sp["step"].tolist(), list(range(len(sp))))
manifest = yaml.safe_load(open(f"{run}/run.yaml"))
expect("steps run_id (run.yaml)", set(sp["run_id"]), {manifest["run_id"]})
expect("steps seed (run.yaml)", set(sp["seed"]), {manifest["config"]["seed"]})
wall = sp["wall_time_s"].to_numpy()
assert np.isfinite(wall).all() and (wall >= 0).all() and (np.diff(wall) >= 0).all(), wall
expect("steps metadata", pq.read_table(f"{run}/steps.parquet").schema.metadata[b"abcond.format"], b"abcond.steps/4")

# landscape.parquet
land = pl.read_parquet(f"{run}/landscape.parquet")
expect(
    "landscape (polars)",
    dict(land.schema),
    {
        "experiment": pl.String,
        "run_id": pl.String,
        "seed": pl.Int64,
        "step": pl.Int64,
        "probe": pl.String,
        "batch_size": pl.Int64,
        "loss_k": pl.Float64,
        "loss_ref": pl.Float64,
        "inner": pl.Float64,
        "grad_norm": pl.Float64,
        "dist": pl.Float64,
        "cos": pl.Float64,
        "ref_step": pl.Int64,
        "batch_indices": pl.List(pl.Int64),
        "source": pl.String,
    },
)
expect("landscape sources", set(land["source"].unique()), {"snapshot"})
lp = pd.read_parquet(f"{run}/landscape.parquet")
expect("landscape (pandas) numeric", [str(lp[c].dtype) for c in ["step", "loss_k", "inner", "cos"]], ["int64", "float64", "float64", "float64"])
meta = pq.read_table(f"{run}/landscape.parquet").schema.metadata
expect("landscape metadata", meta[b"abcond.format"], b"abcond.landscape/3")
probes = set(land["probe"].unique())
assert "train" in probes and "extra-0" in probes, probes
# cos is inner / (grad_norm · dist)
chk = land.filter(pl.col("dist") > 0).select(
    ((pl.col("cos") - pl.col("inner") / (pl.col("grad_norm") * pl.col("dist"))).abs().max()).alias("e")
)
assert chk["e"][0] < 1e-12, chk
con = duckdb.connect()
n = con.execute(f"select count(*) from read_parquet('{run}/landscape.parquet')").fetchone()[0]
expect("duckdb landscape rows", n, land.height)
types = {r[0]: r[1] for r in con.execute(f"describe select * from read_parquet('{run}/landscape.parquet')").fetchall()}
expect("duckdb landscape types", [types[c] for c in ["step", "probe", "inner", "batch_indices", "source"]], ["BIGINT", "VARCHAR", "DOUBLE", "BIGINT[]", "VARCHAR"])

# iterates: hive-partitioned
it = pl.scan_parquet(f"{run}/iterates/**/*.parquet", hive_partitioning=True).collect()
dtype = pl.Float64 if "f64" in open(f"{run}/run.yaml").read().split("dtype:")[1].split()[0] else pl.Float32
expect(
    "iterates (polars, hive)",
    dict(it.schema),
    {
        "name": pl.String,
        "kind": pl.String,
        "shape": pl.List(pl.Int64),
        "numel": pl.Int64,
        "chunk": pl.Int32,
        "offset": pl.Int64,
        "values": pl.List(dtype),
        "step": pl.Int64,
    },
)
steps_on_disk = sorted(int(d.split("=")[1]) for d in os.listdir(f"{run}/iterates"))
expect("iterate steps", sorted(it["step"].unique().to_list()), steps_on_disk)
# chunks add up to the shape
tot = it.group_by("step", "name").agg(pl.col("values").list.len().sum().alias("n"), pl.col("numel").first())
assert (tot["n"] == tot["numel"]).all()
nk = con.execute(
    f"select count(distinct step) from read_parquet('{run}/iterates/*/*.parquet', hive_partitioning=true)"
).fetchone()[0]
expect("duckdb iterate steps", nk, len(steps_on_disk))
fc = pd.read_parquet(f"{run}/iterates/step={steps_on_disk[-1]}/part-0.parquet")
w = np.concatenate(fc.sort_values(["name", "chunk"]).groupby("name")["values"].apply(lambda s: np.concatenate(list(s))).tolist())
assert np.isfinite(w).all()

# data.parquet
data = pl.read_parquet(f"{run}/data.parquet")
assert data["index"].to_list() == list(range(data.height))
assert data.schema["source_index"] == pl.Int64



def described(path):
    """Every column of a Parquet file abcond wrote has a non-empty
    description in its field metadata (pyarrow)."""
    schema = pq.read_schema(path)
    assert len(schema) > 0, path
    for name in schema.names:
        meta = schema.field(name).metadata or {}
        d = meta.get(b"description", b"").decode()
        if not d.strip():
            print(f"{path}: column `{name}` has no description (field metadata {meta})")
            sys.exit(1)
    unit = (schema.field("wall_time_s").metadata or {}).get(b"unit") if "wall_time_s" in schema.names else b"s"
    expect(f"{path}: unit of wall_time_s", unit, b"s")


tables = []
for d, _, files in os.walk(run):
    tables += [os.path.join(d, f) for f in files if f.endswith(".parquet")]
kinds = {os.path.basename(t) for t in tables}
assert {"steps.parquet", "landscape.parquet", "data.parquet", "part-0.parquet"} <= kinds, kinds
for t in tables:
    described(t)

# The Python snippets of docs/loading.md and the README, pointed at this run.
snippets = lambda f: re.findall(r"```python\n(.*?)```", open(os.path.join(root, f)).read(), re.S)
blocks = snippets("docs/loading.md") + snippets("README.md")
assert len(snippets("docs/loading.md")) >= 3, "docs/loading.md has no python snippets"
assert len(snippets("README.md")) >= 2, "README has no python snippets"
# Snippets that write files (the export example) write them in a scratch directory.
run = os.path.abspath(run)
os.chdir(tempfile.mkdtemp(prefix="abcond-readme-"))
# One namespace: a snippet may go on from the one before (the Logger loop
# trains the model the export snippet made).
namespace = {}
for code in blocks:
    code = re.sub(r'^run = ".*?"(.*)$', f"run = {run!r}", code, flags=re.M)
    code = re.sub(r'^adir = ".*?"(.*)$', f"adir = {os.path.join(run, 'analysis')!r}", code, flags=re.M)
    exec(compile(code, "snippet", "exec"), namespace)
import abcond  # noqa: E402

logged = abcond.read_manifest("results/mine/seed0")  # the README's Logger loop
assert logged["status"] == "completed" and logged["training"]["total_steps"] == 16, logged
# The Logger writes the current steps format, described like the binary's.
for d, _, files in os.walk("results/mine/seed0"):
    for f in files:
        if f.endswith(".parquet"):
            described(os.path.join(d, f))
ls = pq.read_table("results/mine/seed0/steps.parquet")
expect("Logger steps format", ls.schema.metadata[b"abcond.format"], b"abcond.steps/4")
expect("Logger steps run_id", set(ls.column("run_id").to_pylist()), {"seed0"})
lw = np.array(ls.column("wall_time_s").to_pylist())
assert (lw >= 0).all() and (np.diff(lw) >= 0).all(), lw
print(f"read_outputs {run}: steps {steps.height} rows, landscape {land.height} rows, iterates {it.height} chunk rows; README snippets {len(blocks)} OK")
print("OK")

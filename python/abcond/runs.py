"""Reading abcond's run directories: tables, snapshots, run.yaml, with every
checksum verified (a file whose content differs from what abcond recorded
raises ChecksumError naming it; files written before checksums are read as
they are)."""

import os
from collections import OrderedDict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from .checksum import KEY, VALUE_SUMS_KEY, ChecksumError, table_checksum, text_body, toc_checksum, values_checksum


def _footer_meta(path):
    kv = pq.read_metadata(path).metadata or {}
    return {k.decode(): v.decode() for k, v in kv.items()}


def read_table(path, verify=True):
    """A row table abcond wrote (steps, landscape, curvature, data, runs, the
    analysis tables) as a pyarrow Table, its checksum verified. The file's
    ``abcond.*`` metadata is in ``table.schema.metadata``."""
    meta = _footer_meta(path)
    table = pq.read_table(path)
    want = meta.get(KEY)
    if verify and want is not None:
        got = table_checksum(table, meta)
        if got != want:
            raise ChecksumError(
                f"{path}: checksum mismatch (metadata {KEY} {want}, values {got}): "
                "the file is corrupt; restore it or recompute it (`abcond verify` says how)"
            )
    return table


def read_tensors(path, verify=True):
    """A tensor file (snapshot or checkpoint): (tensors, roles, metadata) with
    ``tensors`` an OrderedDict name → numpy array in the file's order and
    dtype, ``roles`` name → "param" / "buffer" / "optim"; every tensor's value
    checksum and the table of contents verified."""
    meta = _footer_meta(path)
    t = pq.read_table(path, columns=["name", "kind", "shape", "numel", "chunk", "offset", "values"])
    names = t.column("name").to_pylist()
    kinds = t.column("kind").to_pylist()
    shapes = t.column("shape").to_pylist()
    numels = t.column("numel").to_pylist()
    chunks = t.column("chunk").to_pylist()
    values = t.column("values")
    order, parts, info = [], {}, {}
    for i, name in enumerate(names):
        if name not in parts:
            order.append(name)
            parts[name] = []
            info[name] = (kinds[i], shapes[i], numels[i])
        parts[name].append((chunks[i], i))
    dtype = np.float32 if pa.types.is_float32(values.type.value_type) else np.float64
    tensors, roles = OrderedDict(), {}
    for name in order:
        kind, shape, numel = info[name]
        pieces = [np.asarray(values[i].values.to_numpy(zero_copy_only=False), dtype=dtype) for _, i in sorted(parts[name])]
        flat = np.concatenate(pieces) if pieces else np.empty(0, dtype)
        if flat.size != numel:
            raise ChecksumError(f"{path}: tensor `{name}` has {flat.size} values, its table of contents says {numel}")
        tensors[name] = flat.reshape(shape)
        roles[name] = kind
    sums = meta.get(VALUE_SUMS_KEY)
    if verify and sums is not None:
        sums = sums.split(",")
        if len(sums) != len(order):
            raise ChecksumError(f"{path}: {VALUE_SUMS_KEY} holds {len(sums)} sums for {len(order)} tensors")
        for name, want in zip(order, sums):
            got = values_checksum(tensors[name].reshape(-1))
            if got != want:
                raise ChecksumError(f"{path}: tensor `{name}`: checksum mismatch (recorded {want}, values {got})")
        toc = toc_checksum([(n, info[n][0], info[n][1], info[n][2]) for n in order], meta[VALUE_SUMS_KEY], meta)
        if meta.get(KEY) != toc:
            raise ChecksumError(f"{path}: table-of-contents checksum mismatch (recorded {meta.get(KEY)}, computed {toc})")
    return tensors, roles, meta


def read_manifest(run_dir):
    """run.yaml as a dict, its checksum line verified."""
    path = os.path.join(run_dir, "run.yaml")
    with open(path) as f:
        text = f.read()
    return yaml.safe_load(text_body(path, text))


def load_iterate(run_dir, step, torch_tensors=True):
    """The snapshot x^k of a run as a state_dict (parameters and buffers, under
    the names of the model's state_dict): torch tensors (or numpy arrays with
    ``torch_tensors=False``) for ``model.load_state_dict(state)``."""
    path = os.path.join(run_dir, "iterates", f"step={step}", "part-0.parquet")
    if not os.path.exists(path):
        have = sorted(int(d.split("=")[1]) for d in os.listdir(os.path.join(run_dir, "iterates")) if d.startswith("step="))
        raise FileNotFoundError(f"{path}: no snapshot of step {step}; the run has snapshots of steps {have}")
    tensors, roles, meta = read_tensors(path)
    if meta.get("abcond.step") not in (None, str(step)):
        raise ValueError(f"{path} holds the iterate of step {meta.get('abcond.step')}, not {step}")
    state = OrderedDict((n, v) for n, v in tensors.items() if roles[n] != "optim")
    if torch_tensors:
        import torch

        state = OrderedDict((n, torch.from_numpy(np.ascontiguousarray(v))) for n, v in state.items())
    return state


def _frame(table, frame):
    if frame == "arrow":
        return table
    if frame == "polars":
        import polars as pl

        return pl.from_arrow(table)
    if frame == "pandas":
        return table.to_pandas()
    raise ValueError(f"frame={frame!r}: expected 'polars', 'pandas' or 'arrow'")


class Run:
    """One run directory: ``manifest`` (run.yaml), ``steps``, ``landscape``,
    ``curvature`` (None where absent) and ``analysis`` (name → table) as
    frames of the chosen kind."""

    def __init__(self, path, frame="polars"):
        self.path = path
        self.manifest = read_manifest(path)
        self.run_id = self.manifest["run_id"]

        def opt(name):
            p = os.path.join(path, name)
            return _frame(read_table(p), frame) if os.path.exists(p) else None

        self.steps = opt("steps.parquet")
        self.landscape = opt("landscape.parquet")
        self.curvature = opt("curvature.parquet")
        self.analysis = _analysis(os.path.join(path, "analysis"), frame)

    def __repr__(self):
        return f"abcond.Run({self.path!r}, status={self.manifest.get('status')})"


def _analysis(dirname, frame):
    out = {}
    if os.path.isdir(dirname):
        for f in sorted(os.listdir(dirname)):
            if f.endswith(".parquet"):
                out[f[: -len(".parquet")]] = _frame(read_table(os.path.join(dirname, f)), frame)
    return out


def load_run(path, frame="polars"):
    """A run directory (with run.yaml) as a :class:`Run`."""
    if not os.path.exists(os.path.join(path, "run.yaml")):
        raise FileNotFoundError(f"{path} is not an abcond run directory (no run.yaml)")
    return Run(path, frame)


def _run_dirs(path):
    found = []
    for root, dirs, files in os.walk(path):
        depth = os.path.relpath(root, path).count(os.sep)
        if "run.yaml" in files:
            found.append(root)
            dirs[:] = []
        elif depth >= 2:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "analysis"]
    return sorted(found)


def _steps_columns(t, run_id, seed):
    """A run's step rows with the columns of the current format
    (``abcond.steps/4``): files of older formats get ``run_id`` and ``seed``
    from run.yaml (first) and a null ``wall_time_s`` (last)."""
    n = t.num_rows
    if "run_id" not in t.column_names:
        t = t.add_column(0, pa.field("run_id", pa.string()), pa.array([run_id] * n, pa.string()))
    if "seed" not in t.column_names:
        t = t.add_column(1, pa.field("seed", pa.int64()), pa.array([seed] * n, pa.int64()))
    if "wall_time_s" not in t.column_names:
        t = t.append_column(pa.field("wall_time_s", pa.float64()), pa.nulls(n, pa.float64()))
    return t


class Experiment:
    """Every run under an experiment directory: ``runs`` (run_id → Run),
    ``steps`` (all runs' step rows with ``run_id`` and ``seed`` columns),
    ``landscape`` (all rows; they carry experiment, run_id, seed and the
    swept keys), ``table`` (runs.parquet of a sweep, or None) and
    ``analysis`` (the experiment's analysis tables)."""

    def __init__(self, path, frame="polars"):
        self.path = path
        dirs = _run_dirs(path)
        if not dirs:
            raise FileNotFoundError(f"no run directories under {path}")
        runs = [Run(d, "arrow") for d in dirs]
        self.runs = {r.run_id: r for r in runs}
        steps = []
        for r in runs:
            if r.steps is not None:
                seed = int(r.manifest["config"].get("seed", 0))
                steps.append(_steps_columns(r.steps, r.run_id, seed).replace_schema_metadata(None))
        lands = [r.landscape.replace_schema_metadata(None) for r in runs if r.landscape is not None]
        self.steps = _frame(pa.concat_tables(steps, promote_options="default"), frame) if steps else None
        self.landscape = _frame(pa.concat_tables(lands, promote_options="default"), frame) if lands else None
        t = os.path.join(path, "runs.parquet")
        self.table = _frame(read_table(t), frame) if os.path.exists(t) else None
        self.analysis = _analysis(os.path.join(path, "analysis"), frame)
        if frame != "arrow":
            for r in runs:
                r.steps = _frame(r.steps, frame) if r.steps is not None else None
                r.landscape = _frame(r.landscape, frame) if r.landscape is not None else None

    def __repr__(self):
        return f"abcond.Experiment({self.path!r}, {len(self.runs)} runs)"


def load_experiment(path, frame="polars"):
    """An experiment directory (``results/<experiment>``) as an :class:`Experiment`."""
    return Experiment(path, frame)

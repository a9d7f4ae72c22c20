"""Writing abcond's files from Python: tensor files (snapshots), row tables
(steps.parquet, data.parquet) and sealed text (run.yaml), in exactly the
formats the abcond binary writes and reads (docs/schemas.md), each written
atomically: a hidden temporary beside the target, fsync, rename, fsync of the
directory. A process killed at any point leaves the old file or the complete
new one, never a torn one."""

import itertools
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .checksum import KEY, VALUE_SUMS_KEY, table_checksum, toc_checksum, values_checksum

TENSORS_FORMAT = "abcond.tensors/2"
STEPS_FORMAT = "abcond.steps/4"
DATA_FORMAT = "abcond.data/1"
#: Values per chunk row (4 MiB of f32), as the binary writes them.
CHUNK = 1 << 20
#: Largest row group, in bytes of values.
MAX_ROW_GROUP_BYTES = 128 << 20
#: Prefix of the temporaries of atomic writes (hidden; abcond never reads them).
TMP_PREFIX = ".tmp-"

_counter = itertools.count()


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, durable=True, visible=False):
    """Calls ``write(tmp_path)`` to make the file, then puts it in place of
    ``path`` atomically (with ``durable``: fsync of the file before the rename
    and of the directory after it). The temporary is hidden, unless
    ``visible`` (torch.jit.save refuses a name starting with a dot); it keeps
    the target's extension."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    base = os.path.basename(path)
    stem = f"abcond-tmp-{os.getpid()}-{next(_counter)}" if visible else f"{TMP_PREFIX}{base}.{os.getpid()}.{next(_counter)}"
    tmp = os.path.join(d, stem + (os.path.splitext(base)[1] if visible else ""))
    try:
        write(tmp)
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        _fsync_dir(d)


def seal(body):
    """Text with abcond's checksum line: ``# checksum: xxh64:<hex>``, the XXH64
    of everything before it."""
    import xxhash

    if not body.endswith("\n"):
        body += "\n"
    return f"{body}# checksum: xxh64:{xxhash.xxh64(body.encode(), seed=0).intdigest():016x}\n"


def write_text(path, text, durable=True):
    atomic_write(path, lambda tmp: open(tmp, "w", encoding="utf-8").write(text), durable)


_COLUMNS = None


def columns():
    """The column descriptions of every table abcond writes (columns.yaml,
    the file the binary embeds): table → column → {description, unit}."""
    global _COLUMNS
    if _COLUMNS is None:
        import yaml

        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "columns.yaml"), encoding="utf-8") as f:
            _COLUMNS = yaml.safe_load(f)
    return _COLUMNS


def with_descriptions(schema, table):
    """``schema`` with each field's ``description`` (and ``unit``) from
    columns.yaml in its field metadata, as the binary writes them."""
    cols = columns()[table]
    fields = []
    for f in schema:
        c = cols.get(f.name)
        if c is None:
            if "*" not in cols:
                raise KeyError(f"abcond/columns.yaml: table `{table}` has no description of column `{f.name}`")
            c = {"description": cols["*"]["description"].replace("{name}", f.name), **({"unit": cols["*"]["unit"]} if "unit" in cols["*"] else {})}
        meta = dict(f.metadata or {})
        meta[b"description"] = c["description"].encode()
        if c.get("unit"):
            meta[b"unit"] = c["unit"].encode()
        fields.append(f.with_metadata(meta))
    return pa.schema(fields, metadata=schema.metadata)


def _list_type(item):
    return pa.list_(pa.field("item", item, nullable=False))


def write_table(path, table, fmt, meta=(), durable=True):
    """A row table with ``abcond.format`` = ``fmt``, the metadata ``meta`` (pairs)
    and its content checksum."""
    kv = {"abcond.format": fmt}
    kv.update(dict(meta))
    kv[KEY] = table_checksum(table, kv)
    table = table.replace_schema_metadata(kv)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, use_compliant_nested_type=False), durable)


def steps_table(rows, run_id, seed):
    """steps.parquet's table (format ``abcond.steps/4``) of run ``run_id``
    with seed ``seed``, from rows (step, epoch, lr, step_size, loss,
    grad_norm, batch_indices, wall_time_s)."""
    cols = list(zip(*rows)) if rows else [[]] * 8
    indices, wall = cols[6], cols[7]
    cols = cols[:6]
    schema = pa.schema(
        [
            pa.field("run_id", pa.string()),
            pa.field("seed", pa.int64()),
            pa.field("step", pa.int64(), nullable=False),
            pa.field("epoch", pa.int64(), nullable=False),
            pa.field("lr", pa.float64(), nullable=False),
            pa.field("step_size", pa.float64()),
            pa.field("loss", pa.float64(), nullable=False),
            pa.field("grad_norm", pa.float64(), nullable=False),
            pa.field("batch_indices", _list_type(pa.int64())),
            pa.field("wall_time_s", pa.float64()),
        ]
    )
    n = len(rows)
    arrays = [pa.array([run_id] * n, pa.string()), pa.array([int(seed)] * n, pa.int64())]
    arrays += [pa.array(list(c), type=ty) for c, ty in zip(cols, schema.types[2:8])]
    # The minibatches: numpy int64 arrays (or None), as one list column.
    arrays.append(_int_lists(indices, schema.field("batch_indices").type))
    arrays.append(pa.array(list(wall), pa.float64()))
    return pa.Table.from_arrays(arrays, schema=with_descriptions(schema, "steps"))


def _int_lists(items, type_):
    """A list<int64> column from numpy arrays and Nones, without a Python
    object per index."""
    valid = [i is not None for i in items]
    lengths = [len(i) if i is not None else 0 for i in items]
    offsets = np.zeros(len(items) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [np.asarray(i, dtype=np.int64) for i in items if i is not None]
    values = np.concatenate(present) if present else np.empty(0, np.int64)
    mask = None if all(valid) else pa.array([not v for v in valid])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), type=type_, mask=mask)


def write_steps(path, rows, run_id, seed, durable=True):
    write_table(path, steps_table(rows, run_id, seed), STEPS_FORMAT, [("abcond.run_id", run_id)], durable)


def write_data_table(path, examples, source):
    """data.parquet of a ``tensors`` data set: example index i → row i of ``source``."""
    idx = pa.array(np.arange(examples, dtype=np.int64))
    schema = with_descriptions(pa.schema([pa.field("index", pa.int64(), nullable=False), pa.field("source_index", pa.int64(), nullable=False)]), "data")
    table = pa.Table.from_arrays([idx, idx], schema=schema)
    write_table(path, table, DATA_FORMAT, [("abcond.dataset", "tensors"), ("abcond.source_dir", source)])


_DTYPES = {"f32": np.float32, "f64": np.float64}


def write_tensors(path, tensors, dtype, meta, chunk=CHUNK, durable=True):
    """A tensor file: ``tensors`` maps name → (role, numpy array), role
    ``param`` or ``buffer``; values converted to ``dtype`` (``f32``/``f64``);
    ``meta`` the ``abcond.*`` identity entries (content, run id, step, …)."""
    np_dtype = _DTYPES[dtype]
    item = pa.float32() if dtype == "f32" else pa.float64()
    kv = {"abcond.format": TENSORS_FORMAT, "abcond.dtype": dtype, "abcond.chunk_size": str(chunk)}
    kv.update(dict(meta))
    names = sorted(tensors)
    flat, shapes, roles = {}, {}, {}
    for n in names:
        role, a = tensors[n]
        if role not in ("param", "buffer"):
            raise ValueError(f"tensor `{n}`: role {role!r}, expected 'param' or 'buffer'")
        a = np.asarray(a)
        shapes[n] = [int(d) for d in a.shape]
        flat[n] = np.ascontiguousarray(a, dtype=np_dtype).reshape(-1)
        roles[n] = role
    sums = ",".join(values_checksum(flat[n]) for n in names)
    kv[VALUE_SUMS_KEY] = sums
    kv[KEY] = toc_checksum([(n, roles[n], shapes[n], flat[n].size) for n in names], sums, kv)
    # Chunk rows, sorted by name then chunk; an empty tensor has one empty row.
    rows = []
    for n in names:
        size = flat[n].size
        for c in range(max(1, -(-size // chunk))):
            off = c * chunk
            rows.append((n, c, off, min(chunk, size - off)))
    schema = with_descriptions(pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("shape", _list_type(pa.int64()), nullable=False),
            pa.field("numel", pa.int64(), nullable=False),
            pa.field("chunk", pa.int32(), nullable=False),
            pa.field("offset", pa.int64(), nullable=False),
            pa.field("values", _list_type(item), nullable=False),
        ],
        metadata=kv,
    ), "tensors")
    # Row groups of at most MAX_ROW_GROUP_BYTES of values (a larger row alone).
    groups, start, values = [], 0, 0
    limit = MAX_ROW_GROUP_BYTES // np.dtype(np_dtype).itemsize
    for i, r in enumerate(rows):
        if i > start and values + r[3] > limit:
            groups.append(rows[start:i])
            start, values = i, 0
        values += r[3]
    groups.append(rows[start:])

    def group_table(g):
        lens = [r[3] for r in g]
        offsets = np.zeros(len(g) + 1, dtype=np.int32)
        np.cumsum(lens, out=offsets[1:])
        vals = np.concatenate([flat[r[0]][r[2] : r[2] + r[3]] for r in g]) if g else np.empty(0, np_dtype)
        shape_lens = np.zeros(len(g) + 1, dtype=np.int32)
        np.cumsum([len(shapes[r[0]]) for r in g], out=shape_lens[1:])
        shape_vals = np.array([d for r in g for d in shapes[r[0]]], dtype=np.int64)
        arrays = [
            pa.array([r[0] for r in g], pa.string()),
            pa.array([roles[r[0]] for r in g], pa.string()),
            pa.ListArray.from_arrays(pa.array(shape_lens), pa.array(shape_vals), type=schema.field("shape").type),
            pa.array([flat[r[0]].size for r in g], pa.int64()),
            pa.array([r[1] for r in g], pa.int32()),
            pa.array([r[2] for r in g], pa.int64()),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(vals, item), type=schema.field("values").type),
        ]
        return pa.Table.from_arrays(arrays, schema=schema)

    def write(tmp):
        # As the binary writes them: PLAIN values, no dictionary, no
        # statistics, uncompressed (readers stream the values from the pages).
        with pq.ParquetWriter(tmp, schema, compression="none", use_dictionary=False, write_statistics=False, use_compliant_nested_type=False) as w:
            for g in groups:
                w.write_table(group_table(g), row_group_size=max(1, len(g)))

    atomic_write(path, write, durable)

"""abcond's checksums, computed here independently of the Rust code from their
definitions (docs/schemas.md, "Checksums"), so that what Python reads is
what abcond wrote.

- Row tables: ``abcond.checksum`` = ``xxh64:<hex>`` over the values in a
  canonical encoding (per column: name, 0; per row: 0 for null, else 1 and the
  value; little-endian numbers, floats by bit pattern; strings and lists with
  a u64 length), the column sums combined in order with the sum of the other
  ``abcond.*`` metadata.
- Tensor files: one XXH64 per tensor over its values (little-endian bytes of
  the file dtype) in ``abcond.value_checksums``, and ``abcond.checksum`` over
  the table of contents, those sums and the metadata.
- Text files: a last line ``# checksum: xxh64:<hex>`` (or ``<!-- checksum: …
  -->``), the XXH64 of the bytes before it.
"""

import struct

import numpy as np
import pyarrow as pa

try:
    import xxhash
except ImportError:  # export() does not need it; the readers say what to install
    xxhash = None

KEY = "abcond.checksum"
VALUE_SUMS_KEY = "abcond.value_checksums"


class ChecksumError(ValueError):
    """A file's content differs from the checksum abcond recorded in it."""


def _need_xxhash():
    if xxhash is None:
        raise ImportError("abcond's readers verify XXH64 checksums: pip install xxhash")


def _meta_digest(meta, skip=(KEY,)):
    h = xxhash.xxh64(seed=0)
    for k in sorted(k for k in meta if k.startswith("abcond.") and k not in skip):
        h.update(k.encode() + b"\0" + meta[k].encode() + b"\0")
    return h.intdigest()


def _hash_array(h, arr):
    """Feeds one Arrow array (a column, or a list's items) to ``h``."""
    t = arr.type
    valid = None if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_list(t):
        offsets = arr.offsets.to_numpy()
        values = arr.values
        for i in range(len(arr)):
            if valid is not None and not valid[i]:
                h.update(b"\0")
                continue
            a, b = int(offsets[i]), int(offsets[i + 1])
            h.update(b"\1" + struct.pack("<Q", b - a))
            _hash_array(h, values.slice(a, b - a))
        return
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        for i, v in enumerate(arr.to_pylist()):
            if v is None:
                h.update(b"\0")
            else:
                raw = v.encode()
                h.update(b"\1" + struct.pack("<Q", len(raw)) + raw)
        return
    fmt = {
        pa.int64(): "<i8",
        pa.int32(): "<i4",
        pa.float64(): "<f8",
        pa.float32(): "<f4",
        pa.bool_(): "u1",
    }.get(t)
    if fmt is None:
        raise ChecksumError(f"no canonical checksum encoding for column type {t}")
    if pa.types.is_boolean(t):
        vals = np.asarray(arr.to_pylist(), dtype=object)
        raw = [bytes([1 if v else 0]) if v is not None else None for v in vals]
    else:
        # Fill nulls with 0 only to get a dense buffer; null rows are hashed as 0.
        dense = arr.fill_null(0) if arr.null_count else arr
        data = dense.to_numpy(zero_copy_only=False).astype(fmt, copy=False)
        raw = data.view(np.uint8).reshape(len(arr), -1) if len(arr) else []
    if valid is None and not pa.types.is_boolean(t):
        # Interleave the 1 flags with the values in one buffer.
        width = np.dtype(fmt).itemsize
        buf = np.empty((len(arr), width + 1), dtype=np.uint8)
        buf[:, 0] = 1
        if len(arr):
            buf[:, 1:] = raw
        h.update(buf.tobytes())
        return
    for i in range(len(arr)):
        if valid is not None and not valid[i]:
            h.update(b"\0")
        elif pa.types.is_boolean(t):
            h.update(b"\1" + raw[i])
        else:
            h.update(b"\1" + bytes(raw[i]))


def table_checksum(table, meta):
    """``xxh64:<hex>`` of a row table (a pyarrow Table) and its metadata."""
    _need_xxhash()
    total = xxhash.xxh64(seed=0)
    for name, col in zip(table.column_names, table.columns):
        h = xxhash.xxh64(seed=0)
        h.update(name.encode() + b"\0")
        for chunk in col.chunks:
            _hash_array(h, chunk)
        total.update(struct.pack("<Q", h.intdigest()))
    total.update(struct.pack("<Q", _meta_digest(meta)))
    return f"xxh64:{total.intdigest():016x}"


def toc_checksum(tensors, value_sums, meta):
    """``xxh64:<hex>`` of a tensor file's table of contents: ``tensors`` is a
    list of (name, role, shape, numel) in file order."""
    _need_xxhash()
    h = xxhash.xxh64(seed=0)
    for name, role, shape, numel in tensors:
        h.update(name.encode() + b"\0" + role.encode() + b"\0")
        h.update(struct.pack("<Q", len(shape)))
        for d in shape:
            h.update(struct.pack("<q", d))
        h.update(struct.pack("<Q", numel))
    h.update(value_sums.encode() + b"\0")
    for k in sorted(k for k in meta if k.startswith("abcond.") and k not in (KEY, VALUE_SUMS_KEY)):
        h.update(k.encode() + b"\0" + meta[k].encode() + b"\0")
    return f"xxh64:{h.intdigest():016x}"


def values_checksum(values):
    """The XXH64 (16 hex digits) of a tensor's values (a numpy array in the file dtype)."""
    _need_xxhash()
    return f"{xxhash.xxh64(np.ascontiguousarray(values).astype(values.dtype.newbyteorder('<'), copy=False).tobytes(), seed=0).intdigest():016x}"


def text_body(path, text):
    """The text of a sealed file without its checksum line, checked; a text
    without one is returned whole."""
    trimmed = text[:-1] if text.endswith("\n") else text
    start = trimmed.rfind("\n") + 1
    last = trimmed[start:]
    recorded = None
    if last.startswith("# checksum: "):
        recorded = last[len("# checksum: "):]
    elif last.startswith("<!-- checksum: ") and last.endswith(" -->"):
        recorded = last[len("<!-- checksum: "):-len(" -->")]
    if recorded is None:
        return text
    _need_xxhash()
    body = text[:start]
    got = f"xxh64:{xxhash.xxh64(body.encode(), seed=0).intdigest():016x}"
    if recorded.strip() != got:
        raise ChecksumError(f"{path}: checksum mismatch (last line {recorded.strip()}, text {got}): edited or damaged after abcond wrote it")
    return body

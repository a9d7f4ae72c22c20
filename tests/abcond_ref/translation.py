"""Tokenised sentence pairs in the two formats abcond's `translation` data set
reads, written and read here independently of the Rust reader:

- TFRecord files of serialised tf.train.Example protos (written by hand: the
  protobuf wire format and TFRecord's framing with masked CRC-32C), int64
  features `inputs` and `targets`;
- token-id text files, one sentence a line.

    write_tfrecord(path, pairs, packed=True, extra=True)
    read_tfrecord(path) -> [(inputs, targets)]
    write_ids(src_path, tgt_path, pairs)
    padded(pairs, seq_len) -> (kept record numbers, src [N, L], tgt [N, L])
    read_run_pairs(data config, source_index) -> (src, tgt) of a run's examples
"""

import gzip
import os
import struct

import numpy as np


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # two's complement, as protobuf writes int64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _int64_feature(values, packed: bool) -> bytes:
    if packed:
        lst = _field(1, 2, b"".join(_varint(v) for v in values))
    else:
        lst = b"".join(_field(1, 0, _varint(v)) for v in values)
    return _field(3, 2, lst)  # Feature.int64_list


def example(features: dict, packed: bool = True) -> bytes:
    """A serialised tf.train.Example; values are int lists or bytes."""
    entries = b""
    for name, values in features.items():
        if isinstance(values, bytes):
            feat = _field(1, 2, _field(1, 2, values))  # bytes_list
        else:
            feat = _int64_feature(values, packed)
        entry = _field(1, 2, name.encode()) + _field(2, 2, feat)
        entries += _field(1, 2, entry)
    return _field(1, 2, entries)


def record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc(length)) + payload + struct.pack("<I", masked_crc(payload))


def write_tfrecord(path, pairs, packed=True, extra=True):
    """One Example per pair; `extra` adds a bytes feature readers must skip."""
    with open(path, "wb") as f:
        for s, t in pairs:
            feats = {"inputs": list(s), "targets": list(t)}
            if extra:
                feats = {"source_text": b"ein Satz", **feats}
            f.write(record(example(feats, packed)))


def _read_varint(b, at):
    v, shift = 0, 0
    while True:
        byte = b[at]
        at += 1
        v |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return v, at


def _fields(b):
    at = 0
    while at < len(b):
        key, at = _read_varint(b, at)
        wire = key & 7
        if wire == 0:
            v, at = _read_varint(b, at)
        elif wire == 2:
            n, at = _read_varint(b, at)
            v, at = b[at:at + n], at + n
        else:
            raise ValueError(f"wire type {wire}")
        yield key >> 3, wire, v


def read_tfrecord(path):
    """The (inputs, targets) of every record of a TFRecord file (gzipped or not)."""
    data = open(path, "rb").read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    at, pairs = 0, []
    while at < len(data):
        (n,) = struct.unpack_from("<Q", data, at)
        assert struct.unpack_from("<I", data, at + 8)[0] == masked_crc(data[at:at + 8])
        payload = data[at + 12:at + 12 + n]
        assert struct.unpack_from("<I", data, at + 12 + n)[0] == masked_crc(payload)
        at += 16 + n
        feats = {}
        for _, _, features in _fields(payload):
            for _, _, entry in _fields(features):
                parts = {num: v for num, _, v in _fields(entry)}
                name = parts[1].decode()
                for num, _, lst in _fields(parts[2]):
                    if num != 3:
                        continue
                    vals = []
                    for _, wire, v in _fields(lst):
                        if wire == 2:
                            i = 0
                            while i < len(v):
                                x, i = _read_varint(v, i)
                                vals.append(x)
                        else:
                            vals.append(v)
                    feats[name] = vals
        pairs.append((feats["inputs"], feats["targets"]))
    return pairs


def write_ids(src_path, tgt_path, pairs):
    with open(src_path, "w") as fs, open(tgt_path, "w") as ft:
        for s, t in pairs:
            fs.write(" ".join(map(str, s)) + "\n")
            ft.write(" ".join(map(str, t)) + "\n")


def padded(pairs, seq_len):
    """The pairs a reader keeps (both sides of 1..seq_len tokens), padded with 0."""
    keep = [i for i, (s, t) in enumerate(pairs) if 1 <= len(s) <= seq_len and 1 <= len(t) <= seq_len]
    src = np.zeros((len(keep), seq_len), dtype=np.int64)
    tgt = np.zeros((len(keep), seq_len), dtype=np.int64)
    for r, i in enumerate(keep):
        s, t = pairs[i]
        src[r, :len(s)], tgt[r, :len(t)] = s, t
    return keep, src, tgt


def read_run_pairs(data, source_index):
    """The pairs of a `translation` run, read from its files with the reference reader."""
    path, length = data["path"], data["seq_len"]
    if data.get("source"):
        def lines(name):
            with open(os.path.join(path, name)) as f:
                return [[int(w) for w in line.split()] for line in f]
        pairs = list(zip(lines(data["source"]), lines(data["target"])))
    else:
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(path, f) for f in os.listdir(path) if ".tfrecord" in f)
        pairs = [p for f in files for p in read_tfrecord(f)]
    keep, src, tgt = padded(pairs, length)
    if data.get("examples"):
        keep, src, tgt = keep[:data["examples"]], src[:data["examples"]], tgt[:data["examples"]]
    if not data.get("subset"):
        assert list(source_index) == keep, f"kept records {source_index} != {keep}"
    row = {rec: r for r, rec in enumerate(keep)}
    rows = [row[i] for i in source_index]
    return src[rows], tgt[rows]

//! Tokenised sentence pairs (`data.dataset: translation`): the data of
//! AlgoPerf's WMT workload after its SentencePiece step, as ids. Two formats:
//!
//! - **TFRecord** (`data.path` a file, or a directory of shards: every regular
//!   file whose name contains `.tfrecord`, in name order; each possibly
//!   gzipped). A record is a little-endian u64 length, the masked CRC-32C of
//!   those 8 bytes, the payload, and the masked CRC-32C of the payload; both
//!   CRCs are checked. The payload is a serialised `tf.train.Example` whose
//!   int64 features `inputs` (source ids) and `targets` (target ids) are read,
//!   packed or not; other features are ignored.
//! - **Token-id text** (`data.source` and `data.target`, relative to
//!   `data.path`): one sentence a line, ids separated by white space, the two
//!   files line for line (what `spm_encode --output_format=id` writes).
//!
//! Ids must lie in 1..`data.vocab`: 0 is the padding. A pair with a side longer
//! than `data.seq_len` (AlgoPerf's length filter, 256) or an empty side is
//! skipped; `data.parquet`'s `source_index` is the record (or line) number of
//! each kept pair, counted from 0. Each side is padded with 0 to `seq_len`.
//! Unlike AlgoPerf's training pipeline, pairs are not packed several to a row:
//! example i of f_i is one sentence pair. Reading is streamed (one record at
//! a time); `data.examples` stops after that many kept pairs.

use super::{Dataset, Targets};
use crate::data::config::{DatasetKind, ParallelData};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Largest TFRecord payload accepted (a sentence pair is a few kB).
const MAX_RECORD: u64 = 64 << 20;

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// TFRecord's masked CRC: rotated right by 15 bits plus a constant.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One sentence pair: source ids and target ids.
type Pair = (Vec<i64>, Vec<i64>);

/// Reads the TFRecords of `file`, calling `each(record number, payload)`
/// until it returns false.
fn tfrecords(file: &Path, mut each: impl FnMut(u64, &[u8]) -> Result<bool>) -> Result<()> {
    let mut r = super::open_stream(file)?;
    let what = |n: u64| format!("{}: record {n}", file.display());
    let mut payload = Vec::new();
    for n in 0u64.. {
        let mut head = [0u8; 12];
        let got = read_full(&mut r, &mut head).with_context(|| what(n))?;
        if got == 0 {
            return Ok(());
        }
        if got < 12 {
            bail!(
                "{}: the file ends inside the record's header (truncated)",
                what(n)
            );
        }
        let len_bytes: [u8; 8] = head[..8].try_into().unwrap();
        let crc = u32::from_le_bytes(head[8..].try_into().unwrap());
        if masked_crc(&len_bytes) != crc {
            bail!(
                "{}: the CRC of the record length does not match: {}",
                what(n),
                if n == 0 {
                    "this is not a TFRecord file"
                } else {
                    "the file is corrupt"
                }
            );
        }
        let len = u64::from_le_bytes(len_bytes);
        if len > MAX_RECORD {
            bail!(
                "{}: {len} bytes, more than abcond's limit of {MAX_RECORD} for one sentence pair",
                what(n)
            );
        }
        payload.resize(len as usize + 4, 0);
        let got = read_full(&mut r, &mut payload).with_context(|| what(n))?;
        if got < payload.len() {
            bail!(
                "{}: the file ends after {got} of the record's {} bytes (truncated)",
                what(n),
                len + 4
            );
        }
        let (data, crc) = payload.split_at(len as usize);
        if masked_crc(data) != u32::from_le_bytes(crc.try_into().unwrap()) {
            bail!(
                "{}: the CRC of the record's data does not match (the file is corrupt)",
                what(n)
            );
        }
        if !each(n, data)? {
            return Ok(());
        }
    }
    unreachable!()
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A protocol-buffer reader over one message's bytes.
struct Proto<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Proto<'a> {
    fn new(b: &'a [u8]) -> Self {
        Proto { b, at: 0 }
    }

    fn done(&self) -> bool {
        self.at >= self.b.len()
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.b.get(self.at) else {
                bail!("a varint runs past the end of its message");
            };
            self.at += 1;
            if shift == 63 && byte > 1 {
                bail!("a varint longer than 64 bits");
            }
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("a varint longer than 10 bytes")
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.varint()?;
        let end = (self.at as u64)
            .checked_add(len)
            .filter(|&e| e <= self.b.len() as u64);
        let Some(end) = end else {
            bail!("a field of {len} bytes runs past the end of its message");
        };
        let s = &self.b[self.at..end as usize];
        self.at = end as usize;
        Ok(s)
    }

    /// The next field: (number, wire type).
    fn key(&mut self) -> Result<(u64, u8)> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => self.advance(8)?,
            2 => {
                self.bytes()?;
            }
            5 => self.advance(4)?,
            w => bail!("wire type {w} (groups or invalid) in a tf.train.Example"),
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) -> Result<()> {
        if self.at + n > self.b.len() {
            bail!("a fixed-width field runs past the end of its message");
        }
        self.at += n;
        Ok(())
    }
}

/// The int64 lists of the features `names` of a serialised tf.train.Example
/// (None for a feature the record lacks; an error for one of another type).
fn example_int64s(bytes: &[u8], names: &[&str]) -> Result<Vec<Option<Vec<i64>>>> {
    let mut out = vec![None; names.len()];
    let mut ex = Proto::new(bytes);
    while !ex.done() {
        match ex.key()? {
            (1, 2) => {
                // Features: repeated map entry {1: key, 2: Feature}.
                let mut feats = Proto::new(ex.bytes()?);
                while !feats.done() {
                    match feats.key()? {
                        (1, 2) => {
                            let mut entry = Proto::new(feats.bytes()?);
                            let (mut name, mut value) = (None, None);
                            while !entry.done() {
                                match entry.key()? {
                                    (1, 2) => name = Some(entry.bytes()?),
                                    (2, 2) => value = Some(entry.bytes()?),
                                    (_, w) => entry.skip(w)?,
                                }
                            }
                            let Some(slot) =
                                name.and_then(|n| names.iter().position(|&m| m.as_bytes() == n))
                            else {
                                continue;
                            };
                            out[slot] = Some(int64_list(value.unwrap_or(&[]), names[slot])?);
                        }
                        (_, w) => feats.skip(w)?,
                    }
                }
            }
            (_, w) => ex.skip(w)?,
        }
    }
    Ok(out)
}

/// A Feature's Int64List (field 3), packed or not.
fn int64_list(feature: &[u8], name: &str) -> Result<Vec<i64>> {
    let mut f = Proto::new(feature);
    let mut values = Vec::new();
    while !f.done() {
        match f.key()? {
            (3, 2) => {
                let mut list = Proto::new(f.bytes()?);
                while !list.done() {
                    match list.key()? {
                        (1, 2) => {
                            let mut packed = Proto::new(list.bytes()?);
                            while !packed.done() {
                                values.push(packed.varint()? as i64);
                            }
                        }
                        (1, 0) => values.push(list.varint()? as i64),
                        (_, w) => list.skip(w)?,
                    }
                }
            }
            (k @ (1 | 2), 2) => bail!(
                "feature `{name}` is a {} list, expected int64 token ids",
                if k == 1 { "bytes" } else { "float" }
            ),
            (_, w) => f.skip(w)?,
        }
    }
    Ok(values)
}

/// Checks one side's ids (`where_` names the file and record).
fn check_ids(ids: &[i64], vocab: i64, side: &str, where_: &dyn Fn() -> String) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&t| t < 1 || t >= vocab) {
        bail!(
            "{}: {side} token id {bad} is outside 1..{} (`data.vocab` is {vocab}; 0 is the padding)",
            where_(),
            vocab - 1
        );
    }
    Ok(())
}

/// The kept pairs and their record numbers.
struct Kept {
    src: Vec<i64>,
    tgt: Vec<i64>,
    index: Vec<i64>,
    len: usize,
    cfg_len: usize,
    limit: u64,
}

impl Kept {
    fn full(&self) -> bool {
        self.index.len() as u64 >= self.limit
    }

    /// Keeps the pair if both sides fit; its ids are already checked.
    fn offer(&mut self, n: u64, (s, t): Pair) {
        let l = self.cfg_len;
        if s.is_empty() || t.is_empty() || s.len() > l || t.len() > l {
            return;
        }
        for (side, out) in [(s, &mut self.src), (t, &mut self.tgt)] {
            let pad = l - side.len();
            out.extend(side);
            out.extend(std::iter::repeat_n(0, pad));
        }
        self.index.push(n as i64);
        self.len += 1;
    }
}

fn read_tfrecords(path: &Path, cfg: &ParallelData, kept: &mut Kept) -> Result<()> {
    let mut n = 0u64;
    let shards = super::data_files(
        path,
        |name| name.contains(".tfrecord"),
        "no TFRecord shards (files named *.tfrecord*); for token-id text files set `data.source` and `data.target`",
    )?;
    for file in shards {
        if kept.full() {
            break;
        }
        tfrecords(&file, |rec, bytes| {
            let where_ = || format!("{}: record {rec}", file.display());
            let feats = example_int64s(bytes, &["inputs", "targets"])
                .with_context(|| format!("{}: not a tf.train.Example", where_()))?;
            let mut sides = feats.into_iter();
            let (Some(s), Some(t)) = (sides.next().unwrap(), sides.next().unwrap()) else {
                bail!("{}: the Example lacks the int64 feature `inputs` or `targets` (the source and target token ids)", where_());
            };
            check_ids(&s, cfg.vocab, "source", &where_)?;
            check_ids(&t, cfg.vocab, "target", &where_)?;
            kept.offer(n, (s, t));
            n += 1;
            Ok(!kept.full())
        })?;
    }
    Ok(())
}

fn read_id_files(
    dir: &Path,
    source: &Path,
    target: &Path,
    cfg: &ParallelData,
    kept: &mut Kept,
) -> Result<()> {
    let open = |p: &Path| -> Result<(PathBuf, std::io::Lines<BufReader<std::fs::File>>)> {
        let p = dir.join(p);
        let f = std::fs::File::open(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok((p, BufReader::new(f).lines()))
    };
    let (sp, mut sl) = open(source)?;
    let (tp, mut tl) = open(target)?;
    let parse =
        |p: &Path, line: u64, text: std::io::Result<String>, side: &str| -> Result<Vec<i64>> {
            let where_ = || format!("{}, line {}", p.display(), line + 1);
            let text =
                text.with_context(|| format!("{}: not UTF-8 text of token ids", where_()))?;
            let ids = text
                .split_whitespace()
                .map(|w| {
                    w.parse::<i64>().with_context(|| {
                        format!(
                            "{}: `{w}` is not a token id (expected integers separated by spaces)",
                            where_()
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            check_ids(&ids, cfg.vocab, side, &where_)?;
            Ok(ids)
        };
    for n in 0u64.. {
        if kept.full() {
            break;
        }
        match (sl.next(), tl.next()) {
            (None, None) => break,
            (Some(s), Some(t)) => {
                let s = parse(&sp, n, s, "source")?;
                let t = parse(&tp, n, t, "target")?;
                kept.offer(n, (s, t));
            }
            (s, _) => {
                let (short, long) = if s.is_none() { (&sp, &tp) } else { (&tp, &sp) };
                bail!(
                    "{} ends after {n} lines but {} goes on: the source and target files must pair line for line",
                    short.display(),
                    long.display()
                );
            }
        }
    }
    Ok(())
}

pub fn load(cfg: &ParallelData) -> Result<Dataset> {
    let path = cfg
        .path
        .as_deref()
        .context("dataset `translation` needs key `data.path`")?;
    let mut kept = Kept {
        src: Vec::new(),
        tgt: Vec::new(),
        index: Vec::new(),
        len: 0,
        cfg_len: cfg.seq_len as usize,
        limit: cfg.examples.unwrap_or(u64::MAX),
    };
    match (&cfg.source, &cfg.target) {
        (Some(s), Some(t)) => read_id_files(path, s, t, cfg, &mut kept)?,
        _ => read_tfrecords(path, cfg, &mut kept)?,
    }
    if kept.len == 0 {
        bail!(
            "{}: no sentence pair with both sides of 1..{} tokens (`data.seq_len`)",
            path.display(),
            cfg.seq_len
        );
    }
    let (n, l) = (kept.len as i64, cfg.seq_len);
    Ok(Dataset {
        kind: DatasetKind::Translation,
        x: Tensor::from_slice(&kept.src).view([n, l]),
        y: Tensor::from_slice(&kept.tgt).view([n, l]),
        len: n as u64,
        input_shape: vec![l],
        targets: Targets::Tokens {
            vocab: cfg.vocab,
            len: l,
        },
        source_index: kept.index,
        source_dir: Some(path.to_path_buf()),
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The CRC-32C check value (RFC 3720 B.4 and every CRC catalogue).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn example_packed_and_unpacked() {
        // Example{features{feature{"inputs": int64_list{value: [3, 300] packed}},
        //                  feature{"targets": int64_list{value: 7, value: 1} unpacked}}}
        // Packed: field 1, wire type 2, the varints; unpacked: field 1, wire type 0, each.
        let int64_list = |list: &[u8]| -> Vec<u8> {
            let mut feature = vec![0x1a, list.len() as u8];
            feature.extend(list);
            feature
        };
        let entry = |name: &str, feature: Vec<u8>| -> Vec<u8> {
            let mut e = vec![0x0a, name.len() as u8];
            e.extend(name.as_bytes());
            e.extend([0x12, feature.len() as u8]);
            e.extend(feature);
            let mut m = vec![0x0a, e.len() as u8];
            m.extend(e);
            m
        };
        let mut feats = entry("inputs", int64_list(&[0x0a, 3, 3, 0xac, 0x02]));
        feats.extend(entry("targets", int64_list(&[0x08, 7, 0x08, 1])));
        let mut ex = vec![0x0a, feats.len() as u8];
        ex.extend(feats);
        let got = example_int64s(&ex, &["inputs", "targets", "weights"]).unwrap();
        assert_eq!(got, vec![Some(vec![3, 300]), Some(vec![7, 1]), None]);
        // A truncated message is an error, not a panic.
        assert!(example_int64s(&ex[..ex.len() - 3], &["inputs"]).is_err());
    }
}

//! Click logs in Criteo's TSV format (`data.dataset: criteo`): the day files
//! of the Criteo 1TB click logs (AlgoPerf's criteo1tb) or of the Kaggle
//! Display Advertising Challenge. Each line holds 40 tab-separated fields: the
//! label (0/1), 13 integer features I1..I13 and 26 categorical features
//! C1..C26 (hexadecimal strings); any field may be empty.
//!
//! What abcond makes of a line (AlgoPerf's input pipeline, except the hash):
//! - label: the number (empty: 0);
//! - integer feature x: log(max(x, 0) + 1), an empty field or −1 (TF's
//!   missing value) counting as 0; computed in f64, stored in the model dtype;
//! - categorical feature j (0..25): the low 63 bits of the 64-bit FNV-1a hash
//!   of the field's bytes followed by the decimal column index j, an empty
//!   field being AlgoPerf's default `00000000`. The model takes this value
//!   modulo its vocabulary. AlgoPerf hashes the same string with TensorFlow's
//!   FarmHash Fingerprint64 (`to_hash_bucket_fast`) modulo a per-column size
//!   and then modulo the vocabulary, so the rows an id lands in differ from
//!   AlgoPerf's (its statistics, collisions aside, do not).
//!
//! `data.path` is a file or a directory of day files (every regular file not
//! starting with `.`, in name order), each plain or gzipped (detected by its
//! first bytes). Files are read line by line (streamed); `data.examples`
//! stops after that many lines (blank lines skipped). Example i is line i.
//! A minibatch carries the tensors `dense` [B, 13], `categorical` [B, 26]
//! (int64) and `label` [B], in this order (a TorchScript module receives them
//! so).

use super::{Dataset, Targets};
use crate::data::config::{CriteoData, DatasetKind};
use crate::torch::dtype::Dtype;
use anyhow::{bail, Context, Result};
use std::io::BufRead;
use tch::Tensor;

pub const DENSE: usize = 13;
pub const SPARSE: usize = 26;

/// Most lines read without `data.examples` (each example holds 13 dense
/// values and 26 ids, 260 bytes in f32: 67M lines ≈ 17 GB).
const MAX_LINES: u64 = 1 << 26;

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The value of categorical field `field` in column `column` (0..25).
pub fn categorical(field: &[u8], column: usize, scratch: &mut Vec<u8>) -> i64 {
    scratch.clear();
    scratch.extend_from_slice(if field.is_empty() { b"00000000" } else { field });
    scratch.extend_from_slice(column.to_string().as_bytes());
    (fnv1a64(scratch) & (i64::MAX as u64)) as i64
}

/// AlgoPerf's transform of an integer feature.
fn dense_value(field: &[u8]) -> Option<f64> {
    if field.is_empty() || field == b"-1" {
        return Some(0.0);
    }
    let x: f64 = std::str::from_utf8(field).ok()?.parse().ok()?;
    x.is_finite().then(|| x.max(0.0).ln_1p())
}

pub fn load(cfg: &CriteoData, dtype: Dtype) -> Result<Dataset> {
    let path = cfg
        .path
        .as_deref()
        .context("dataset `criteo` needs key `data.path`")?;
    let limit = cfg.examples.unwrap_or(u64::MAX);
    let (mut labels, mut dense, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    let mut scratch = Vec::new();
    let mut line = Vec::new();
    let mut n: u64 = 0;
    let files = super::data_files(
        path,
        |name| !name.starts_with('.'),
        "no files (expected Criteo TSV day files such as day_0 or train.txt)",
    )?;
    'files: for file in files {
        let mut r = super::open_stream(&file)?;
        for number in 1u64.. {
            if n >= limit {
                break 'files;
            }
            line.clear();
            let got = r
                .read_until(b'\n', &mut line)
                .with_context(|| format!("{}, line {number}", file.display()))?;
            if got == 0 {
                break;
            }
            let mut text: &[u8] = &line;
            if let Some(t) = text.strip_suffix(b"\n") {
                text = t;
            }
            if let Some(t) = text.strip_suffix(b"\r") {
                text = t;
            }
            if text.is_empty() {
                continue;
            }
            let where_ = || format!("{}, line {number}", file.display());
            let fields: Vec<&[u8]> = text.split(|&b| b == b'\t').collect();
            if fields.len() != 1 + DENSE + SPARSE {
                bail!(
                    "{}: {} tab-separated fields, expected 40 (label, 13 integer and 26 categorical features): not a Criteo TSV line",
                    where_(),
                    fields.len()
                );
            }
            let label = if fields[0].is_empty() {
                Some(0.0)
            } else {
                std::str::from_utf8(fields[0])
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
            };
            match label {
                Some(l) if (0.0..=1.0).contains(&l) => labels.push(l),
                _ => bail!(
                    "{}: label `{}` is not 0 or 1",
                    where_(),
                    String::from_utf8_lossy(fields[0])
                ),
            }
            for (j, f) in fields[1..1 + DENSE].iter().enumerate() {
                let Some(v) = dense_value(f) else {
                    bail!(
                        "{}: integer feature I{} is `{}`, not a number",
                        where_(),
                        j + 1,
                        String::from_utf8_lossy(f)
                    );
                };
                dense.push(v);
            }
            for (j, f) in fields[1 + DENSE..].iter().enumerate() {
                ids.push(categorical(f, j, &mut scratch));
            }
            n += 1;
            if cfg.examples.is_none() && n > MAX_LINES {
                bail!(
                    "{}: more than {MAX_LINES} lines; set `data.examples` to the number of lines to read",
                    path.display()
                );
            }
        }
    }
    if n == 0 {
        bail!("{}: no Criteo TSV lines", path.display());
    }
    let n = n as i64;
    let x = Tensor::from_slice(&dense)
        .view([n, DENSE as i64])
        .to_kind(dtype.kind());
    let y = Tensor::from_slice(&labels).to_kind(dtype.kind());
    Ok(Dataset {
        kind: DatasetKind::Criteo,
        x: x.shallow_clone(),
        y: y.shallow_clone(),
        len: n as u64,
        input_shape: vec![DENSE as i64],
        targets: Targets::Clicks,
        source_index: (0..n).collect(),
        source_dir: Some(path.to_path_buf()),
        augment: None,
        images: None,
        inputs: vec![
            ("dense".into(), x),
            (
                "categorical".into(),
                Tensor::from_slice(&ids).view([n, SPARSE as i64]),
            ),
            ("label".into(), y),
        ],
        vocab: vec![],
        graphs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_known_values() {
        // The FNV reference test vectors (Fowler/Noll/Vo).
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        let mut s = Vec::new();
        assert_eq!(
            categorical(b"68fd1e64", 3, &mut s),
            (fnv1a64(b"68fd1e643") & (i64::MAX as u64)) as i64
        );
        assert_eq!(
            categorical(b"", 0, &mut s),
            categorical(b"00000000", 0, &mut s)
        );
    }

    #[test]
    fn dense_transform() {
        assert_eq!(dense_value(b""), Some(0.0));
        assert_eq!(dense_value(b"-1"), Some(0.0));
        assert_eq!(dense_value(b"-3"), Some(0.0));
        assert_eq!(dense_value(b"4"), Some(5f64.ln()));
        assert_eq!(dense_value(b"x1"), None);
        assert_eq!(dense_value(b"inf"), None);
    }
}

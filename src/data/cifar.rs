//! CIFAR-10 / CIFAR-100 in the "binary version" distributed by Krizhevsky
//! (https://www.cs.toronto.edu/~kriz/cifar.html):
//!
//! - CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin` (10 000 records each),
//!   records of 3073 bytes: label (0..9), then 1024 R, 1024 G, 1024 B bytes
//!   (row-major 32×32 planes);
//! - CIFAR-100: `train.bin` (50 000 records), records of 3074 bytes: coarse label
//!   (0..19), fine label (0..99), then the 3072 pixel bytes. abcond uses the fine
//!   label.
//!
//! Only the training files are read (f is the training loss). Example index i
//! is the record's position in the concatenation of the files in the order above
//! (after `data.classes` filtering and `data.subset`), recorded in data.parquet's
//! `source_index`.
//!
//! Normalisation (`data.normalize: standard`, the default): per channel,
//! (x/255 − mean_c)/std_c with the mean and the standard deviation of each
//! channel over all 50 000 training images:
//!   CIFAR-10  mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616);
//!   CIFAR-100 mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762).
//! (The std (0.2023, 0.1994, 0.2010) found in many CIFAR-10 scripts is the mean
//! of per-image stds, not the channel std; we use the channel std.)

use super::{Dataset, Targets};
use crate::data::config::{CifarData, DatasetKind, Normalize};
use crate::torch::dtype::Dtype;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

pub const PIXELS: usize = 3 * 32 * 32;

/// Per-channel (mean, std) of the training images after /255.
pub fn norm_constants(kind: DatasetKind) -> ([f64; 3], [f64; 3]) {
    match kind {
        DatasetKind::Cifar100 => ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
        _ => ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    }
}

/// The training files of `kind`, in example order.
pub fn train_files(kind: DatasetKind) -> Vec<String> {
    match kind {
        DatasetKind::Cifar100 => vec!["train.bin".to_string()],
        _ => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
    }
}

/// Label bytes before the pixels of one record, and the label used.
fn record_layout(kind: DatasetKind) -> (usize, usize, u8) {
    match kind {
        // coarse, fine; use the fine label (0..99)
        DatasetKind::Cifar100 => (2, 1, 100),
        _ => (1, 0, 10),
    }
}

/// Directories searched when `data.path` is not given: $ABCOND_DATA/<name> and
/// ./data/<name>; in each, also the folder the official archive unpacks to
/// (cifar-10-batches-bin, cifar-100-binary).
pub fn default_dirs(kind: DatasetKind) -> Vec<PathBuf> {
    let name = kind.name();
    let mut dirs = Vec::new();
    if let Ok(root) = std::env::var("ABCOND_DATA") {
        dirs.push(Path::new(&root).join(name));
    }
    dirs.push(Path::new("data").join(name));
    dirs
}

fn archive_dir(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Cifar100 => "cifar-100-binary",
        _ => "cifar-10-batches-bin",
    }
}

/// Parses the records of one CIFAR binary file into labels and pixels.
pub fn parse(bytes: &[u8], kind: DatasetKind, what: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    let (label_bytes, label_at, classes) = record_layout(kind);
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        bail!(
            "{what}: {} bytes is not a whole number of {record}-byte {} records ({} label byte{} + 3072 pixel bytes); is this the {} binary version?",
            bytes.len(),
            kind.name(),
            label_bytes,
            if label_bytes > 1 { "s" } else { "" },
            kind.name()
        );
    }
    let n = bytes.len() / record;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * PIXELS);
    for (r, rec) in bytes.chunks_exact(record).enumerate() {
        let l = rec[label_at];
        if l >= classes {
            bail!(
                "{what}: record {r} has label {l}, outside 0..{} ({}-byte records of {})",
                classes - 1,
                record,
                kind.name()
            );
        }
        labels.push(l);
        pixels.extend_from_slice(&rec[label_bytes..]);
    }
    Ok((labels, pixels))
}

/// Builds the bytes of a CIFAR binary file (for tests and fixtures): one record
/// per (label, 3072 pixels); CIFAR-100 records get coarse label fine/5.
pub fn encode(kind: DatasetKind, labels: &[u8], pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        if kind == DatasetKind::Cifar100 {
            out.push(l / 5);
        }
        out.push(l);
        out.extend_from_slice(&pixels[i * PIXELS..(i + 1) * PIXELS]);
    }
    out
}

pub fn load(kind: DatasetKind, cfg: &CifarData, dtype: Dtype) -> Result<Dataset> {
    load_files(kind, cfg, dtype, train_files(kind))
}

/// The test files of `kind` (the held-out evaluation, `probe.eval`).
pub fn test_files(kind: DatasetKind) -> Vec<String> {
    match kind {
        DatasetKind::Cifar100 => vec!["test.bin".to_string()],
        _ => vec!["test_batch.bin".to_string()],
    }
}

/// Reads `files` (in this order) of the data set in `cfg`'s directory.
pub fn load_files(
    kind: DatasetKind,
    cfg: &CifarData,
    dtype: Dtype,
    files: Vec<String>,
) -> Result<Dataset> {
    let roots = match &cfg.path {
        Some(p) => vec![p.clone()],
        None => default_dirs(kind),
    };
    let candidates: Vec<PathBuf> = roots
        .iter()
        .flat_map(|d| [d.clone(), d.join(archive_dir(kind))])
        .collect();
    let Some(dir) = candidates
        .iter()
        .find(|d| files.iter().all(|f| d.join(f).is_file()))
        .cloned()
    else {
        bail!(
            "{} training files not found: looked for {} in {}. CIFAR is in no package registry: download the binary version from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it, and set data.path (or put it under $ABCOND_DATA/{} or ./data/{}).",
            kind.name(),
            files.join(", "),
            candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            kind.name(),
            kind.name()
        );
    };
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    for f in &files {
        let path = dir.join(f);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (l, p) = parse(&bytes, kind, &path.display().to_string())?;
        labels.extend(l);
        pixels.extend(p);
    }
    let n = labels.len();
    let total_classes = record_layout(kind).2 as i64;
    let (keep, y) = super::filter_classes(&labels, cfg.classes.as_deref());
    let num_classes = cfg
        .classes
        .as_ref()
        .map_or(total_classes, |c| c.len() as i64);
    let images = Tensor::from_slice(&pixels).view([n as i64, 3, 32, 32]);
    let images = if keep.len() == n {
        images
    } else {
        images.index_select(0, &Tensor::from_slice(&keep))
    };
    let (mean, std) = norm_constants(kind);
    let standard = cfg.normalize == Normalize::Standard;
    // What a zero pixel (black, the padding of a random crop) becomes.
    let pad_fill = if standard {
        (0..3).map(|c| -mean[c] / std[c]).collect()
    } else {
        vec![0.0; 3]
    };
    let m = Tensor::from_slice(&mean).view([1, 3, 1, 1]);
    let s = Tensor::from_slice(&std).view([1, 3, 1, 1]);
    let x = super::convert_blocks(&images, dtype.kind(), |block| {
        let x = block.to_kind(Kind::Double) / 255.0;
        if standard {
            (x - &m) / &s
        } else {
            x
        }
    });
    Ok(Dataset {
        kind,
        x,
        y: Tensor::from_slice(&y),
        len: keep.len() as u64,
        input_shape: vec![3, 32, 32],
        targets: Targets::Classes(num_classes),
        source_index: keep,
        source_dir: Some(dir),
        augment: cfg
            .augment
            .map(|a| super::augment::Augmenter::new(a, pad_fill)),
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
    fn parses_records_and_names_the_record_size() {
        let pixels: Vec<u8> = (0..2 * PIXELS).map(|i| (i % 251) as u8).collect();
        let b10 = encode(DatasetKind::Cifar10, &[3, 9], &pixels);
        assert_eq!(b10.len(), 2 * 3073);
        let (l, p) = parse(&b10, DatasetKind::Cifar10, "f").unwrap();
        assert_eq!(l, vec![3, 9]);
        assert_eq!(p, pixels);
        let b100 = encode(DatasetKind::Cifar100, &[42, 99], &pixels);
        assert_eq!(b100.len(), 2 * 3074);
        assert_eq!(b100[0], 8); // coarse label
        let (l, p) = parse(&b100, DatasetKind::Cifar100, "f").unwrap();
        assert_eq!(l, vec![42, 99]);
        assert_eq!(p, pixels);
        // A CIFAR-100 file read as CIFAR-10 is not a whole number of records.
        let e = parse(&b100, DatasetKind::Cifar10, "train.bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.bin") && e.contains("3073-byte"), "{e}");
        let mut bad = b10.clone();
        bad[3073] = 10;
        let e = parse(&bad, DatasetKind::Cifar10, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("record 1 has label 10"), "{e}");
    }
}

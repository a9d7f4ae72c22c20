//! Training data: the examples f_i is defined on, held as tensors on the run's
//! device. Example indices (the i in f_i, the entries of a minibatch i_k) are
//! positions in this dataset after class filtering and subsetting;
//! `source_index` maps them back to rows of the source files.

pub mod config;
pub mod idx;
pub mod sampler;
pub mod synthetic;
// --- CIFAR ---
pub mod augment;
pub mod cifar;
// ImageNet-layout image trees, decoded per minibatch.
pub mod imagefolder;
mod load;
// Any data set as a file of named tensors (for TorchScript models).
pub mod tensors;
// Text corpora and token files for language models.
pub mod text;
// Molecular graphs in OGB's raw CSV format.
pub mod ogbg;
// Tokenised sentence pairs (TFRecord or token-id text).
pub mod translation;
// Criteo click logs (TSV).
pub mod criteo;
// fastMRI volumes (HDF5).
pub mod fastmri;

use crate::data::config::DatasetKind;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// What the targets are, which decides the models that fit the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Class indices 0..n (int64).
    Classes(i64),
    /// Matrix entries X_ij for examples (i, j) given as int64 pairs.
    MatrixEntries { rows: i64, cols: i64 },
    /// Component indices i of a known-answer problem with n components
    /// (inputs [n, 1] int64; the label is the index again).
    Components(i64),
    /// Token sequences: sources x and targets y, int64 [N, len] in 0..vocab.
    Tokens { vocab: i64, len: i64 },
    /// Language modelling: windows x of `len` tokens and their next tokens y
    /// (x shifted by one), int64 [N, len] in 0..vocab.
    NextTokens { vocab: i64, len: i64 },
    /// Named tensors passed to a TorchScript module as they are (`tensors`).
    Tensors,
    /// Graphs (`ogbg`) with `tasks` binary labels each, NaN where missing.
    Graphs { tasks: i64 },
    /// Click logs (`criteo`): labels 0/1 in the model dtype; inputs `dense`
    /// [N, 13] (model dtype), `categorical` [N, 26] (int64 hash values) and
    /// `label` [N].
    Clicks,
    /// Image-to-image (`fastmri`): inputs and targets [N, height, width] in
    /// the model dtype.
    Images { height: i64, width: i64 },
}

pub struct Dataset {
    pub kind: DatasetKind,
    /// Inputs [N, …] in the model dtype, or [N, 2] int64 (row, col) pairs.
    pub x: Tensor,
    /// Targets [N]: int64 classes, or matrix entries in the model dtype.
    pub y: Tensor,
    pub len: u64,
    /// Shape of one input.
    pub input_shape: Vec<i64>,
    pub targets: Targets,
    /// Row of each example in the source (IDX file row or generator order).
    pub source_index: Vec<i64>,
    /// Directory the files were read from (IDX data sets).
    pub source_dir: Option<PathBuf>,
    /// Augmentation of training minibatches (`data.augment`), if any.
    pub augment: Option<augment::Augmenter>,
    /// imagefolder: the index → file table; `x` is then empty and minibatches
    /// are decoded on demand (see [`Dataset::batch_at`]).
    pub images: Option<Arc<imagefolder::ImageFolder>>,
    /// `tensors`: every tensor of the file in the declared order, [N, …] each
    /// (`x` is the first); empty for the other data sets.
    pub inputs: Vec<(String, Tensor)>,
    /// `text`: the vocabulary, token id → (word, occurrences in the training
    /// text); written to the run directory as vocab.parquet. Empty otherwise.
    pub vocab: Vec<(String, u64)>,
    /// `ogbg`: the graphs; `x` and `y` are then empty and minibatches are
    /// assembled by concatenation (see [`ogbg::Graphs::batch`]).
    pub graphs: Option<std::rc::Rc<ogbg::Graphs>>,
}

/// A minibatch: inputs and targets of the examples `indices`.
pub struct Batch {
    pub x: Tensor,
    pub y: Tensor,
    pub len: usize,
    /// `tensors` data: the minibatch of every tensor in the declared order
    /// (empty for the other data sets, whose tensors are x and y).
    pub inputs: Vec<Tensor>,
}

impl Batch {
    /// The tensors a TorchScript module's forward pass takes: the `tensors`
    /// data set's in their declared order, else (x, y).
    pub fn tensors(&self) -> Vec<Tensor> {
        if self.inputs.is_empty() {
            vec![self.x.shallow_clone(), self.y.shallow_clone()]
        } else {
            self.inputs.iter().map(Tensor::shallow_clone).collect()
        }
    }
}

impl Dataset {
    pub fn device(&self) -> Device {
        self.x.device()
    }

    /// The un-augmented minibatch of examples `indices` (in that order; the
    /// evaluation transform for image files); see [`Dataset::batch_for`].
    pub fn batch(&self, indices: &[i64]) -> Batch {
        self.batch_for(indices, None)
    }

    /// [`Dataset::batch_at`] for the measuring code (probe, curvature), whose
    /// signatures return numbers: panics with the file's name if an image cannot
    /// be decoded (training calls `batch_at` and reports the error).
    pub fn batch_for(&self, indices: &[i64], augment_at: Option<augment::AugmentAt>) -> Batch {
        self.batch_at(indices, augment_at)
            .unwrap_or_else(|e| panic!("building a minibatch: {e:#}"))
    }

    /// The minibatch of examples `indices` as training step `step` of a run with
    /// seed `seed` sees it: `augment_at` = Some(AugmentAt { seed, step }) applies
    /// the configured training augmentation of that step (CIFAR crop-flip,
    /// imagefolder random-resized-crop), None the evaluation transform. Data without
    /// augmentation give the same batch either way.
    pub fn batch_at(
        &self,
        indices: &[i64],
        augment_at: Option<augment::AugmentAt>,
    ) -> Result<Batch> {
        if let Some(g) = &self.graphs {
            return Ok(g.batch(indices, self.device()));
        }
        let idx = Tensor::from_slice(indices).to_device(self.device());
        let x = match &self.images {
            Some(images) => {
                let s = images.size as i64;
                let pixels = images.pixels(indices, augment_at.map(|a| (a.seed, a.step)))?;
                Tensor::from_slice(&pixels)
                    .view([indices.len() as i64, 3, s, s])
                    .to_kind(self.x.kind())
                    .to_device(self.device())
            }
            None => self.x.index_select(0, &idx),
        };
        // CIFAR crop-flip acts on the stored (normalised) tensors.
        let x = match (&self.augment, augment_at) {
            (Some(aug), Some(at)) => aug.apply(&x, indices, at),
            _ => x,
        };
        Ok(Batch {
            x,
            y: self.y.index_select(0, &idx),
            len: indices.len(),
            inputs: self
                .inputs
                .iter()
                .map(|(_, t)| t.index_select(0, &idx))
                .collect(),
        })
    }
}

/// `convert(block)` (raw pixels → values in f64) over blocks of examples of
/// `pixels`, each block cast to `kind` and written into one tensor allocated
/// up front. Converting all examples at once would hold several f64 copies of
/// the whole data set at the peak (over 1 GB for Fashion-MNIST, 3.6 GB for
/// CIFAR) — more than any model the probe handles. Element-wise, so the result
/// is bit-identical to the one-shot conversion.
pub(crate) fn convert_blocks(
    pixels: &Tensor,
    kind: Kind,
    convert: impl Fn(Tensor) -> Tensor,
) -> Tensor {
    const BLOCK: i64 = 4096;
    let n = pixels.size()[0];
    let out = Tensor::empty(pixels.size(), (kind, pixels.device()));
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let mut dst = out.narrow(0, start, len);
        dst.copy_(&convert(pixels.narrow(0, start, len)).to_kind(kind));
        start += len;
    }
    out
}

/// Published per-pixel mean and std of the training images (after /255).
pub(crate) fn norm_constants(kind: DatasetKind) -> (f64, f64) {
    match kind {
        DatasetKind::FashionMnist => (0.2860, 0.3530),
        _ => (0.1307, 0.3081),
    }
}

/// The files of a data set at `path`: the file itself, or the regular files of
/// the directory whose names `keep` accepts, in name order; `none` completes
/// the error when the directory holds none.
pub(crate) fn data_files(
    path: &Path,
    keep: impl Fn(&str) -> bool,
    none: &str,
) -> Result<Vec<PathBuf>> {
    use anyhow::Context;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("key `data.path`: {} cannot be read", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("{}: {none}", path.display());
    }
    Ok(files)
}

/// `file` read as a stream, through gzip when it starts with gzip's magic bytes.
pub(crate) fn open_stream(file: &Path) -> Result<Box<dyn std::io::BufRead>> {
    use anyhow::Context;
    use std::io::{BufRead, BufReader};
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let gz = r
        .fill_buf()
        .with_context(|| format!("reading {}", file.display()))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else {
        Box::new(r)
    })
}

/// Directories searched for an IDX data set when `data.path` is not given.
pub fn default_dirs(kind: DatasetKind) -> Vec<PathBuf> {
    let name = kind.name();
    let mut dirs = Vec::new();
    if let Ok(root) = std::env::var("ABCOND_DATA") {
        dirs.push(Path::new(&root).join(name));
    }
    dirs.push(Path::new("/usr/share/datasets").join(name));
    dirs.push(Path::new("data").join(name));
    dirs
}

/// Class filter: the rows to keep and their labels; with `classes`, keeps the
/// listed classes and relabels them 0, 1, … in that order.
pub(crate) fn filter_classes(labels: &[u8], classes: Option<&[i64]>) -> (Vec<i64>, Vec<i64>) {
    match classes {
        None => (
            (0..labels.len() as i64).collect(),
            labels.iter().map(|&l| l as i64).collect(),
        ),
        Some(classes) => labels
            .iter()
            .enumerate()
            .filter_map(|(i, &l)| {
                classes
                    .iter()
                    .position(|&c| c == l as i64)
                    .map(|p| (i as i64, p as i64))
            })
            .unzip(),
    }
}

//! The `data:` section of a config: which data set, where it lives, and the
//! generators' settings, with each data set's defaults and checks.

use crate::config::validate::{only, positive};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    FashionMnist,
    Mnist,
    Halfspace,
    MatrixFactorisation,
    /// The component indices i of a known-answer problem (a minibatch is a
    /// set of components); the count comes from the model.
    Components,
    // --- CIFAR binary files ---
    /// CIFAR-10 binary version: data_batch_{1..5}.bin.
    Cifar10,
    /// CIFAR-100 binary version: train.bin, fine labels.
    Cifar100,
    /// An ImageFolder tree (ImageNet layout): `data.path/<class>/<image>.{jpg,png}`.
    Imagefolder,
    /// Seeded token sequences and their "translations" (reversal plus a token
    /// shift; src/data/synthetic.rs), the stand-in for WMT's sentence pairs.
    SyntheticTranslation,
}

impl DatasetKind {
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Halfspace => "halfspace",
            DatasetKind::MatrixFactorisation => "matrix-factorisation",
            DatasetKind::Components => "components",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Imagefolder => "imagefolder",
            DatasetKind::SyntheticTranslation => "synthetic-translation",
        }
    }
}

/// Data augmentation of training minibatches (`data.augment`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    /// Random 32×32 crop of the image zero-padded by 4 pixels (zero in pixel
    /// values, before normalisation) and a horizontal flip with probability ½,
    /// drawn per (seed, step, example) (src/data/augment.rs).
    CropFlip,
    /// imagefolder: torchvision RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3)
    /// to `data.image_size`, then a horizontal flip with probability ½, drawn
    /// from the portable rng per (seed, step, example) (src/data/imagefolder.rs).
    RandomResizedCrop,
}

impl Augment {
    pub fn name(self) -> &'static str {
        match self {
            Augment::CropFlip => "crop-flip",
            Augment::RandomResizedCrop => "random-resized-crop",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Normalize {
    /// (x/255 − mean)/std with the data set's published mean and std.
    Standard,
    /// x/255.
    Unit,
}

/// The training data. Image data sets read IDX files; the others are generated
/// from `data.seed`, which is separate from the run seed so that seeds of a sweep
/// share one data set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Directory holding the IDX files (default: search $ABCOND_DATA, the Debian
    /// package location and ./data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Keep only these classes, relabelled 0, 1, … in this order. A binary model
    /// (two-layer-relu, halfspace) maps the first to −1 and the second to +1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    /// Seed of the synthetic generator and of the subset draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    // halfspace generator
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_std: Option<f64>,
    // matrix-factorisation generator
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_rank: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<f64>,
    // components: filled in from the model (n), not set by hand
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<i64>,
    // --- imagefolder ---
    /// imagefolder: side of the square model input in pixels (default 224).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<i64>,
    /// Augmentation of the training minibatches (default none): `crop-flip`
    /// for CIFAR, `random-resized-crop` for imagefolder. The probe's `train`
    /// rows rebuild the augmentation of step k; other rows are un-augmented
    /// (imagefolder: the evaluation transform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
    // --- synthetic-translation generator ---
    /// synthetic-translation: number of sentence pairs (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<u64>,
    /// synthetic-translation: tokens per sentence (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<i64>,
    /// synthetic-translation: vocabulary size V, token 0 the padding (default
    /// 32000, WMT's; the Transformer's shared embedding has V rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<i64>,
}

impl DataConfig {
    /// Checks that every key applies to the data set and is in range, and
    /// fills in its defaults.
    pub(crate) fn resolve(&mut self) -> Result<()> {
        let d = self;
        let set = [
            ("path", d.path.is_some()),
            ("subset", d.subset.is_some()),
            ("classes", d.classes.is_some()),
            ("normalize", d.normalize.is_some()),
            ("dim", d.dim.is_some()),
            ("per_class", d.per_class.is_some()),
            ("variance", d.variance.is_some()),
            ("mean_std", d.mean_std.is_some()),
            ("rows", d.rows.is_some()),
            ("cols", d.cols.is_some()),
            ("true_rank", d.true_rank.is_some()),
            ("noise", d.noise.is_some()),
            ("components", d.components.is_some()),
            ("image_size", d.image_size.is_some()),
            ("augment", d.augment.is_some()),
            ("examples", d.examples.is_some()),
            ("seq_len", d.seq_len.is_some()),
            ("vocab", d.vocab.is_some()),
        ];
        let what = format!("dataset `{}`", d.dataset.name());
        d.seed.get_or_insert(0);
        match d.dataset {
            DatasetKind::FashionMnist | DatasetKind::Mnist => {
                only(
                    "data",
                    &what,
                    &set,
                    &["path", "subset", "classes", "normalize", "seed"],
                )?;
                d.normalize.get_or_insert(Normalize::Standard);
                if let Some(classes) = &d.classes {
                    let mut sorted = classes.clone();
                    sorted.sort();
                    sorted.dedup();
                    if classes.len() < 2 || sorted.len() != classes.len() {
                        bail!("key `data.classes` must list at least two distinct classes, got {classes:?}");
                    }
                    if let Some(c) = classes.iter().find(|c| !(0..10).contains(*c)) {
                        bail!("key `data.classes`: class {c} does not exist; classes are 0..9");
                    }
                }
            }
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => {
                only(
                    "data",
                    &what,
                    &set,
                    &["path", "subset", "classes", "normalize", "seed", "augment"],
                )?;
                if let Some(a) = d.augment.filter(|a| *a != Augment::CropFlip) {
                    bail!("key `data.augment`: `{}` does not apply to {what}; its augmentation is crop-flip", a.name());
                }
                d.normalize.get_or_insert(Normalize::Standard);
                let n = if d.dataset == DatasetKind::Cifar10 {
                    10
                } else {
                    100
                };
                if let Some(classes) = &d.classes {
                    let mut sorted = classes.clone();
                    sorted.sort();
                    sorted.dedup();
                    if classes.len() < 2 || sorted.len() != classes.len() {
                        bail!("key `data.classes` must list at least two distinct classes, got {classes:?}");
                    }
                    if let Some(c) = classes.iter().find(|c| !(0..n).contains(*c)) {
                        bail!(
                            "key `data.classes`: class {c} does not exist; classes are 0..{}",
                            n - 1
                        );
                    }
                }
            }
            DatasetKind::Halfspace => {
                only(
                    "data",
                    &what,
                    &set,
                    &["dim", "per_class", "variance", "mean_std", "subset", "seed"],
                )?;
                let dim = *d.dim.get_or_insert(2);
                let pc = *d.per_class.get_or_insert(20);
                if dim < 1 || pc < 1 {
                    bail!("keys `data.dim` and `data.per_class` must be at least 1");
                }
                positive("data.variance", *d.variance.get_or_insert(2.0))?;
                positive("data.mean_std", *d.mean_std.get_or_insert(1.0))?;
            }
            DatasetKind::Imagefolder => {
                only(
                    "data",
                    &what,
                    &set,
                    &["path", "subset", "image_size", "augment", "seed"],
                )?;
                if let Some(a) = d.augment.filter(|a| *a != Augment::RandomResizedCrop) {
                    bail!("key `data.augment`: `{}` does not apply to {what}; its augmentation is random-resized-crop", a.name());
                }
                if d.path.is_none() {
                    bail!("dataset `imagefolder` needs key `data.path`: the root directory with one sub-directory per class");
                }
                let size = *d.image_size.get_or_insert(224);
                if size < 1 {
                    bail!("key `data.image_size` must be at least 1, got {size}");
                }
            }
            DatasetKind::Components => {
                // No `subset`: the known-answer problem (S, f*, f_i*) is defined by
                // all n components, and rows name components by index.
                only("data", &what, &set, &["components", "seed"])?;
            }
            DatasetKind::SyntheticTranslation => {
                only(
                    "data",
                    &what,
                    &set,
                    &["examples", "seq_len", "vocab", "subset", "seed"],
                )?;
                let n = *d.examples.get_or_insert(1024);
                let len = *d.seq_len.get_or_insert(32);
                let vocab = *d.vocab.get_or_insert(32_000);
                if n < 1 || len < 1 || vocab < 2 {
                    bail!("keys `data.examples` and `data.seq_len` must be at least 1 and `data.vocab` at least 2 (token 0 is the padding), got {n}, {len}, {vocab}");
                }
            }
            DatasetKind::MatrixFactorisation => {
                only(
                    "data",
                    &what,
                    &set,
                    &["rows", "cols", "true_rank", "noise", "subset", "seed"],
                )?;
                let r = *d.rows.get_or_insert(20);
                let c = *d.cols.get_or_insert(15);
                let k = *d.true_rank.get_or_insert(5);
                if r < 1 || c < 1 || k < 1 {
                    bail!("keys `data.rows`, `data.cols`, `data.true_rank` must be at least 1");
                }
                let noise = *d.noise.get_or_insert(0.1);
                if !(noise.is_finite() && noise >= 0.0) {
                    bail!("key `data.noise` must be ≥ 0, got {noise}");
                }
            }
        }
        if d.subset == Some(0) {
            bail!("key `data.subset` must be at least 1 (or absent for all data)");
        }
        Ok(())
    }
}

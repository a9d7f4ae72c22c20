//! The `data:` section of a config: the data set (`data.dataset`), one
//! variant per data set holding the settings struct of its loader
//! (`IdxData`, `CifarData`, `HalfspaceData`, …) whose `Default` is the one
//! place of its defaults, and `data.seed`, which is separate from the run
//! seed so that the seeds of a sweep share one data set.

use crate::config::validate::{read_keys, to_keys, Settings};
use crate::data::{cifar, idx, imagefolder, synthetic};
use anyhow::{bail, Result};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// Declares the data sets once: the [`DatasetKind`] names and the [`Source`]
/// variants with their settings types.
macro_rules! data_sets {
    ($( $(#[$doc:meta])* $Var:ident = $name:literal => $Settings:ty, )*) => {
        /// Which data set (`data.dataset`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DatasetKind {
            $( $(#[$doc])* $Var, )*
        }

        impl DatasetKind {
            /// Every data set, in the order of this list.
            pub const ALL: &'static [DatasetKind] = &[$(DatasetKind::$Var),*];

            /// The name in configs (`data.dataset`).
            pub fn name(self) -> &'static str {
                match self {
                    $(DatasetKind::$Var => $name,)*
                }
            }

            pub fn from_name(name: &str) -> Option<DatasetKind> {
                match name {
                    $($name => Some(DatasetKind::$Var),)*
                    _ => None,
                }
            }
        }

        /// The data set and its settings (`data.dataset` and the data set's keys).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Source {
            $( $Var($Settings), )*
        }

        impl Source {
            pub fn kind(&self) -> DatasetKind {
                match self {
                    $(Source::$Var(_) => DatasetKind::$Var,)*
                }
            }

            fn read(kind: DatasetKind, keys: Mapping) -> std::result::Result<Source, String> {
                let what = format!("dataset `{}`", kind.name());
                match kind {
                    $(DatasetKind::$Var => read_keys("data", &what, FIXED_KEYS, keys).map(Source::$Var),)*
                }
            }

            fn keys(&self) -> Mapping {
                match self {
                    $(Source::$Var(s) => to_keys(s),)*
                }
            }

            fn check(&self) -> Result<()> {
                let what = format!("dataset `{}`", self.kind().name());
                match self {
                    $(Source::$Var(s) => s.check(&what),)*
                }
            }
        }
    };
}

data_sets! {
    /// Fashion-MNIST, IDX files (Debian package dataset-fashion-mnist).
    FashionMnist = "fashion-mnist" => idx::IdxData,
    /// MNIST, IDX files.
    Mnist = "mnist" => idx::IdxData,
    /// The paper's half-space data (seeded).
    Halfspace = "halfspace" => synthetic::HalfspaceData,
    /// Low-rank matrix entries with noise (seeded).
    MatrixFactorisation = "matrix-factorisation" => synthetic::MatFactData,
    /// The component indices i of a known-answer problem (a minibatch is a
    /// set of components); the count comes from the model.
    Components = "components" => synthetic::ComponentsData,
    /// CIFAR-10 binary version: data_batch_{1..5}.bin.
    Cifar10 = "cifar10" => cifar::CifarData,
    /// CIFAR-100 binary version: train.bin, fine labels.
    Cifar100 = "cifar100" => cifar::CifarData,
    /// An ImageFolder tree (ImageNet layout): `data.path/<class>/<image>.{jpg,png}`.
    Imagefolder = "imagefolder" => imagefolder::ImageFolderData,
    /// Seeded token sequences and their "translations" (reversal plus a token
    /// shift; src/data/synthetic.rs), the stand-in for WMT's sentence pairs.
    SyntheticTranslation = "synthetic-translation" => synthetic::TranslationData,
}

/// The keys of `data:` besides the data set's own settings.
const FIXED_KEYS: &[&str] = &["dataset", "seed"];

/// The order of the keys in a written config (run ids hash the text).
const KEY_ORDER: &[&str] = &[
    "dataset",
    "path",
    "subset",
    "classes",
    "normalize",
    "seed",
    "dim",
    "per_class",
    "variance",
    "mean_std",
    "rows",
    "cols",
    "true_rank",
    "noise",
    "components",
    "image_size",
    "augment",
    "examples",
    "seq_len",
    "vocab",
];

impl DatasetKind {
    /// Classes of the labelled image data sets.
    pub fn classes(self) -> Option<i64> {
        match self {
            DatasetKind::FashionMnist | DatasetKind::Mnist | DatasetKind::Cifar10 => Some(10),
            DatasetKind::Cifar100 => Some(100),
            _ => None,
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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Normalize {
    /// (x/255 − mean)/std with the data set's published mean and std.
    #[default]
    Standard,
    /// x/255.
    Unit,
}

/// The training data: the data set with its settings, and the seed of the
/// generators and of the subset draw.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    pub source: Source,
    /// Seed of the synthetic generator and of the subset draw (default 0).
    pub seed: u64,
}

impl DataConfig {
    pub fn kind(&self) -> DatasetKind {
        self.source.kind()
    }

    /// `data.path`: where the files are (data sets read from disk).
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::FashionMnist(s) | Source::Mnist(s) => s.path.as_deref(),
            Source::Cifar10(s) | Source::Cifar100(s) => s.path.as_deref(),
            Source::Imagefolder(s) => s.path.as_deref(),
            _ => None,
        }
    }

    /// Forgets `data.path` (the run identity: moving the files must not
    /// orphan a run).
    pub fn clear_path(&mut self) {
        match &mut self.source {
            Source::FashionMnist(s) | Source::Mnist(s) => s.path = None,
            Source::Cifar10(s) | Source::Cifar100(s) => s.path = None,
            Source::Imagefolder(s) => s.path = None,
            _ => {}
        }
    }

    /// `data.subset`: train on a fixed random subset of this many examples.
    pub fn subset(&self) -> Option<u64> {
        match &self.source {
            Source::FashionMnist(s) | Source::Mnist(s) => s.subset,
            Source::Cifar10(s) | Source::Cifar100(s) => s.subset,
            Source::Imagefolder(s) => s.subset,
            Source::Halfspace(s) => s.subset,
            Source::MatrixFactorisation(s) => s.subset,
            Source::SyntheticTranslation(s) => s.subset,
            Source::Components(_) => None,
        }
    }

    /// `data.classes`: the classes kept (image data sets).
    pub fn classes(&self) -> Option<&[i64]> {
        match &self.source {
            Source::FashionMnist(s) | Source::Mnist(s) => s.classes.as_deref(),
            Source::Cifar10(s) | Source::Cifar100(s) => s.classes.as_deref(),
            _ => None,
        }
    }

    /// Checks the settings' ranges, and the keys every data set shares.
    pub(crate) fn resolve(&mut self) -> Result<()> {
        self.source.check()?;
        if let (Some(classes), Some(n)) = (self.classes(), self.kind().classes()) {
            let mut sorted = classes.to_vec();
            sorted.sort();
            sorted.dedup();
            if classes.len() < 2 || sorted.len() != classes.len() {
                bail!(
                    "key `data.classes` must list at least two distinct classes, got {classes:?}"
                );
            }
            if let Some(c) = classes.iter().find(|c| !(0..n).contains(*c)) {
                bail!(
                    "key `data.classes`: class {c} does not exist; classes are 0..{}",
                    n - 1
                );
            }
        }
        if self.subset() == Some(0) {
            bail!("key `data.subset` must be at least 1 (or absent for all data)");
        }
        Ok(())
    }
}

/// Written as `dataset`, then the keys in [`KEY_ORDER`].
impl Serialize for DataConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut keys = self.source.keys();
        keys.insert("dataset".into(), Value::String(self.kind().name().into()));
        keys.insert("seed".into(), Value::from(self.seed));
        let rank = |k: &Value| {
            KEY_ORDER
                .iter()
                .position(|o| k.as_str() == Some(o))
                .unwrap_or(KEY_ORDER.len())
        };
        let mut entries: Vec<(Value, Value)> = keys.into_iter().collect();
        entries.sort_by_key(|(k, _)| rank(k));
        entries.into_iter().collect::<Mapping>().serialize(s)
    }
}

impl<'de> Deserialize<'de> for DataConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut keys = Mapping::deserialize(d)?;
        // A null key is an unset key (`--set data.subset=null` restores the default).
        keys.retain(|_, v| !v.is_null());
        let names = || {
            DatasetKind::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let kind = match keys.remove("dataset") {
            Some(Value::String(s)) => DatasetKind::from_name(&s).ok_or_else(|| {
                D::Error::custom(format!(
                    "key `data.dataset`: unknown data set `{s}`; the data sets are {}",
                    names()
                ))
            })?,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "key `data.dataset`: expected a data set name ({}), got {other:?}",
                    names()
                )))
            }
            None => {
                return Err(D::Error::custom(format!(
                    "key `data.dataset` is missing: one of {}",
                    names()
                )))
            }
        };
        let seed = match keys.remove("seed") {
            None => 0,
            Some(v) => serde_yaml::from_value(v)
                .map_err(|e| D::Error::custom(format!("key `data.seed`: {e}")))?,
        };
        let source = Source::read(kind, keys).map_err(D::Error::custom)?;
        Ok(DataConfig { source, seed })
    }
}

//! The `data:` section of a config: the data set (`data.dataset`), one
//! variant per data set holding the settings struct of its loader
//! (`IdxData`, `CifarData`, `HalfspaceData`, …) whose `Default` is the one
//! place of its defaults, and `data.seed`, which is separate from the run
//! seed so that the seeds of a sweep share one data set.

use crate::config::validate::{at_least_one, positive, read_keys, to_keys, Settings};
use anyhow::{bail, Result};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

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
    FashionMnist = "fashion-mnist" => IdxData,
    /// MNIST, IDX files.
    Mnist = "mnist" => IdxData,
    /// The paper's half-space data (seeded).
    Halfspace = "halfspace" => HalfspaceData,
    /// Low-rank matrix entries with noise (seeded).
    MatrixFactorisation = "matrix-factorisation" => MatFactData,
    /// The component indices i of a known-answer problem (a minibatch is a
    /// set of components); the count comes from the model.
    Components = "components" => ComponentsData,
    /// CIFAR-10 binary version: data_batch_{1..5}.bin.
    Cifar10 = "cifar10" => CifarData,
    /// CIFAR-100 binary version: train.bin, fine labels.
    Cifar100 = "cifar100" => CifarData,
    /// An ImageFolder tree (ImageNet layout): `data.path/<class>/<image>.{jpg,png}`.
    Imagefolder = "imagefolder" => ImageFolderData,
    /// Seeded token sequences and their "translations" (reversal plus a token
    /// shift; src/data/synthetic.rs), the stand-in for WMT's sentence pairs.
    SyntheticTranslation = "synthetic-translation" => TranslationData,
    /// Any data: a file of named tensors (safetensors, .npz, .npy) whose first
    /// dimension is the example, for TorchScript models (src/data/tensors.rs).
    Tensors = "tensors" => TensorsData,
    /// A word-level text corpus (PTB, WikiText, or plain text files such as
    /// the Debian fortunes package): examples are windows of seq_len + 1
    /// consecutive tokens (src/data/text.rs).
    Text = "text" => TextData,
    /// Token ids already made: a flat binary of uint16/uint32 (the
    /// nanoGPT/Megatron `.bin`) or a 1-D `.npy`; examples are windows as for
    /// `text` (src/data/text.rs).
    Tokens = "tokens" => TokensData,
    /// Molecular graphs in OGB's on-disk graph-property format (`raw/`
    /// CSVs, gzipped or not; src/data/ogbg.rs): ogbg-molpcba, ogbg-molhiv, or
    /// molecules converted by scripts/molecules-to-ogb.py.
    Ogbg = "ogbg" => OgbgData,
    /// Tokenised sentence pairs (WMT after SentencePiece): TFRecord shards of
    /// `tf.train.Example` with int64 features `inputs` and `targets`, or two
    /// text files of token ids, one sentence a line (src/data/translation.rs).
    Translation = "translation" => ParallelData,
    /// Click logs in Criteo's TSV format (label, 13 integer and 26
    /// categorical features a line; src/data/criteo.rs), for DLRM.
    Criteo = "criteo" => CriteoData,
    /// fastMRI single-coil knee volumes (HDF5; src/data/fastmri.rs), for the
    /// U-Net.
    Fastmri = "fastmri" => FastmriData,
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
    "source",
    "target",
    "examples",
    "seq_len",
    "vocab",
    "inputs",
    "max_vocab",
    "token_dtype",
    "acceleration",
    "tasks",
    "split",
    "digest",
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
            Source::Tensors(s) => s.path.as_deref(),
            Source::Text(s) => s.path.as_deref(),
            Source::Tokens(s) => s.path.as_deref(),
            Source::Ogbg(s) => s.path.as_deref(),
            Source::Translation(s) => s.path.as_deref(),
            Source::Criteo(s) => s.path.as_deref(),
            Source::Fastmri(s) => s.path.as_deref(),
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
            Source::Tensors(s) => s.path = None,
            Source::Text(s) => s.path = None,
            Source::Tokens(s) => s.path = None,
            Source::Ogbg(s) => s.path = None,
            Source::Translation(s) => s.path = None,
            Source::Criteo(s) => s.path = None,
            Source::Fastmri(s) => s.path = None,
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
            Source::Tensors(s) => s.subset,
            Source::Text(s) => s.subset,
            Source::Tokens(s) => s.subset,
            Source::Ogbg(s) => s.subset,
            Source::Translation(s) => s.subset,
            Source::Criteo(s) => s.subset,
            Source::Fastmri(s) => s.subset,
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
        // What the tensor file is, recorded once (in the run identity and
        // run.yaml) and checked whenever it is loaded.
        if let Source::Tensors(s) = &mut self.source {
            // Absolute: the probe may run from another directory.
            if let Some(p) = s.path.as_ref().and_then(|p| std::fs::canonicalize(p).ok()) {
                s.path = Some(p);
            }
            if let (None, Some(p)) = (&s.digest, &s.path) {
                if p.is_file() {
                    s.digest = Some(crate::util::file_digest(p)?);
                }
            }
        }
        // Absolute: the probe may run from another directory.
        match &mut self.source {
            Source::Text(TextData { path: Some(p), .. })
            | Source::Tokens(TokensData { path: Some(p), .. })
            | Source::Ogbg(OgbgData { path: Some(p), .. })
            | Source::Translation(ParallelData { path: Some(p), .. })
            | Source::Criteo(CriteoData { path: Some(p), .. })
            | Source::Fastmri(FastmriData { path: Some(p), .. }) => {
                if let Ok(abs) = std::fs::canonicalize(&*p) {
                    *p = abs;
                }
            }
            _ => {}
        }
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

// --- the settings of each data set ---

/// `data:` settings of the IDX data sets (Fashion-MNIST, MNIST).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdxData {
    /// Directory holding the IDX files (default: search $ABCOND_DATA, the
    /// Debian package location and ./data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Keep only these classes, relabelled 0, 1, … in this order. A binary
    /// model (two-layer-relu, halfspace) maps the first to −1, the second to +1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<i64>>,
    pub normalize: Normalize,
}

impl Settings for IdxData {}

/// `data:` settings of CIFAR-10 and CIFAR-100.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CifarData {
    /// Directory holding the binary files (default: $ABCOND_DATA, ./data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Keep only these classes, relabelled 0, 1, … in this order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<i64>>,
    pub normalize: Normalize,
    /// `crop-flip` augmentation of the training minibatches (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
}

impl Settings for CifarData {
    fn check(&self, what: &str) -> Result<()> {
        if let Some(a) = self.augment.filter(|a| *a != Augment::CropFlip) {
            bail!(
                "key `data.augment`: `{}` does not apply to {what}; its augmentation is crop-flip",
                a.name()
            );
        }
        Ok(())
    }
}

/// `data:` settings of an ImageFolder tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFolderData {
    /// The root directory, one sub-directory per class (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Side of the square model input in pixels.
    pub image_size: i64,
    /// `random-resized-crop` augmentation of the training minibatches (default
    /// none: the evaluation transform).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
}

impl Default for ImageFolderData {
    fn default() -> Self {
        ImageFolderData {
            path: None,
            subset: None,
            image_size: 224,
            augment: None,
        }
    }
}

impl Settings for ImageFolderData {
    fn check(&self, what: &str) -> Result<()> {
        if let Some(a) = self.augment.filter(|a| *a != Augment::RandomResizedCrop) {
            bail!("key `data.augment`: `{}` does not apply to {what}; its augmentation is random-resized-crop", a.name());
        }
        if self.path.is_none() {
            bail!("dataset `imagefolder` needs key `data.path`: the root directory with one sub-directory per class");
        }
        at_least_one("data.image_size", self.image_size)
    }
}

/// `data:` settings of the half-space generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HalfspaceData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Dimension of the points.
    pub dim: i64,
    /// Points per class (the paper's 20).
    pub per_class: i64,
    /// Variance of the points around their class mean (the paper's 2).
    pub variance: f64,
    /// Standard deviation of the class means around 0.
    pub mean_std: f64,
}

impl Default for HalfspaceData {
    fn default() -> Self {
        HalfspaceData {
            subset: None,
            dim: 2,
            per_class: 20,
            variance: 2.0,
            mean_std: 1.0,
        }
    }
}

impl Settings for HalfspaceData {
    fn check(&self, _what: &str) -> Result<()> {
        if self.dim < 1 || self.per_class < 1 {
            bail!("keys `data.dim` and `data.per_class` must be at least 1");
        }
        crate::config::validate::synthetic_size(
            "`data.per_class` × 2 × `data.dim`",
            &[self.per_class, 2, self.dim],
        )?;
        positive("data.variance", self.variance)?;
        positive("data.mean_std", self.mean_std)
    }
}

/// `data:` settings of the matrix-factorisation generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatFactData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    pub rows: i64,
    pub cols: i64,
    /// Rank of the noiseless matrix.
    pub true_rank: i64,
    /// Standard deviation of the additive noise.
    pub noise: f64,
}

impl Default for MatFactData {
    fn default() -> Self {
        MatFactData {
            subset: None,
            rows: 20,
            cols: 15,
            true_rank: 5,
            noise: 0.1,
        }
    }
}

impl Settings for MatFactData {
    fn check(&self, _what: &str) -> Result<()> {
        if self.rows < 1 || self.cols < 1 || self.true_rank < 1 {
            bail!("keys `data.rows`, `data.cols`, `data.true_rank` must be at least 1");
        }
        crate::config::validate::synthetic_size(
            "`data.rows` × `data.cols`",
            &[self.rows, self.cols],
        )?;
        let noise = self.noise;
        if !(noise.is_finite() && noise >= 0.0) {
            bail!("key `data.noise` must be ≥ 0, got {noise}");
        }
        Ok(())
    }
}

/// `data:` settings of a known-answer problem's components. No `subset`: the
/// problem (S, f*, f_i*) is defined by all n components, and rows name
/// components by index.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentsData {
    /// The number of components n, filled in from the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<i64>,
}

impl Settings for ComponentsData {}

/// `data:` settings of the synthetic translation data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranslationData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Number of sentence pairs.
    pub examples: u64,
    /// Tokens per sentence.
    pub seq_len: i64,
    /// Vocabulary size V, token 0 the padding (WMT's 32000; the Transformer's
    /// shared embedding has V rows).
    pub vocab: i64,
}

impl Default for TranslationData {
    fn default() -> Self {
        TranslationData {
            subset: None,
            examples: 1024,
            seq_len: 32,
            vocab: 32_000,
        }
    }
}

impl Settings for TranslationData {
    fn check(&self, _what: &str) -> Result<()> {
        let (n, len, vocab) = (self.examples, self.seq_len, self.vocab);
        if n < 1 || len < 1 || vocab < 2 {
            bail!("keys `data.examples` and `data.seq_len` must be at least 1 and `data.vocab` at least 2 (token 0 is the padding), got {n}, {len}, {vocab}");
        }
        crate::config::validate::synthetic_size(
            "`data.examples` × 2 × `data.seq_len`",
            &[n.min(i64::MAX as u64) as i64, 2, len],
        )?;
        crate::config::validate::at_most("data.vocab", vocab as u64, 1 << 24)?;
        Ok(())
    }
}

/// `data:` settings of a file of named tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TensorsData {
    /// The file: `.safetensors`, `.npz` or `.npy` (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// The tensors passed to the model, in order (default: the order the file
    /// declares; src/data/tensors.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// XXH64 of the file (`xxh64:<hex>`), recorded when the config is read and
    /// checked when the file is loaded: a changed file is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Settings for TensorsData {
    fn check(&self, what: &str) -> Result<()> {
        if self.path.is_none() {
            bail!("key `data.path` is required for {what}: the file of named tensors (.safetensors, .npz or .npy)");
        }
        if let Some(i) = &self.inputs {
            if i.is_empty() {
                bail!("key `data.inputs` must name at least one tensor");
            }
        }
        Ok(())
    }
}

/// `data:` settings of a graph-property data set in OGB's raw format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct OgbgData {
    /// The data set's directory (holding `raw/`) or its `raw/` directory:
    /// edge.csv, edge-feat.csv, node-feat.csv, num-node-list.csv,
    /// num-edge-list.csv and graph-label.csv, each possibly `.gz` (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many graphs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// The number of tasks (columns of graph-label.csv) the file must have;
    /// absent: whatever it has (128 for ogbg-molpcba).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u64>,
    /// Only the graphs of this split (`train`, `valid` or `test`), listed in
    /// the data set's `split/<scheme>/<split>.csv(.gz)` (OGB's scaffold
    /// split); absent: every graph of raw/.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

impl Settings for OgbgData {
    fn check(&self, what: &str) -> Result<()> {
        if self.path.is_none() {
            bail!("key `data.path` is required for {what}: an OGB graph data set's directory (with raw/edge.csv.gz, raw/node-feat.csv.gz, …)");
        }
        if let Some(sp) = &self.split {
            if !["train", "valid", "test"].contains(&sp.as_str()) {
                bail!(
                    "key `data.split` must be train, valid or test (OGB's split files), got {sp:?}"
                );
            }
        }
        if let Some(t) = self.tasks {
            if t == 0 {
                bail!("key `data.tasks` must be at least 1");
            }
            crate::config::validate::at_most("data.tasks", t, 1 << 16)?;
        }
        Ok(())
    }
}

/// `data:` settings of tokenised sentence pairs (src/data/translation.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParallelData {
    /// A TFRecord file, a directory of TFRecord shards (every regular file
    /// whose name contains `.tfrecord`, in name order), or, with `source` and
    /// `target`, the directory of the two token-id files (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// The token-id text file of the source sentences (relative to `path`):
    /// one sentence a line, ids separated by white space (`spm_encode
    /// --output_format=id`). Absent: `path` holds TFRecords.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// The token-id text file of the target sentences, line for line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
    /// Read only the first this many pairs that fit (absent: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<u64>,
    /// Longest sentence kept, in tokens (AlgoPerf's 256): pairs with a longer
    /// or an empty side are skipped; shorter ones are padded with 0.
    pub seq_len: i64,
    /// Vocabulary size V; ids must lie in 1..V (0 is the padding).
    pub vocab: i64,
}

impl Default for ParallelData {
    fn default() -> Self {
        ParallelData {
            path: None,
            subset: None,
            source: None,
            target: None,
            examples: None,
            seq_len: 256,
            vocab: 32_000,
        }
    }
}

impl Settings for ParallelData {
    fn check(&self, what: &str) -> Result<()> {
        if self.path.is_none() {
            bail!("key `data.path` is required for {what}: a TFRecord file or directory of shards, or the directory of the `data.source`/`data.target` token-id files");
        }
        if self.source.is_some() != self.target.is_some() {
            bail!("keys `data.source` and `data.target` go together: the two token-id files of a sentence pair, line for line");
        }
        if self.seq_len < 1 || self.vocab < 2 {
            bail!(
                "key `data.seq_len` must be at least 1 and `data.vocab` at least 2 (token 0 is the padding), got {} and {}",
                self.seq_len,
                self.vocab
            );
        }
        crate::config::validate::at_most("data.seq_len", self.seq_len as u64, 1 << 16)?;
        crate::config::validate::at_most("data.vocab", self.vocab as u64, 1 << 24)?;
        if self.examples == Some(0) {
            bail!("key `data.examples` must be at least 1");
        }
        Ok(())
    }
}

/// `data:` settings of fastMRI volumes (src/data/fastmri.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FastmriData {
    /// An `.h5` volume, or a directory of them (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many slices (of those read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Read only the first this many slices (absent: all, up to 20,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<u64>,
    /// k-space undersampling: about 1/acceleration of the columns kept
    /// (AlgoPerf's 4; 1 keeps them all).
    pub acceleration: f64,
}

impl Default for FastmriData {
    fn default() -> Self {
        FastmriData {
            path: None,
            subset: None,
            examples: None,
            acceleration: 4.0,
        }
    }
}

impl Settings for FastmriData {
    fn check(&self, what: &str) -> Result<()> {
        if self.path.is_none() {
            bail!("key `data.path` is required for {what}: a fastMRI .h5 volume or a directory of them");
        }
        if self.examples == Some(0) {
            bail!("key `data.examples` must be at least 1");
        }
        if !(self.acceleration >= 1.0 && self.acceleration <= 1e6) {
            bail!(
                "key `data.acceleration` must be at least 1 (1 keeps every k-space column; AlgoPerf uses 4), got {}",
                self.acceleration
            );
        }
        Ok(())
    }
}

/// `data:` settings of Criteo click logs (src/data/criteo.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CriteoData {
    /// A TSV file, or a directory of day files (plain or gzipped; required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many lines (of those read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Read only the first this many lines (absent: all, up to 2^26).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<u64>,
}

impl Settings for CriteoData {
    fn check(&self, what: &str) -> Result<()> {
        if self.path.is_none() {
            bail!("key `data.path` is required for {what}: a Criteo TSV file or a directory of day files");
        }
        if self.examples == Some(0) {
            bail!("key `data.examples` must be at least 1");
        }
        Ok(())
    }
}

/// `data:` settings of a word-level text corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextData {
    /// A text file, or a directory holding PTB's `ptb.train.txt`,
    /// WikiText's `wiki.train.tokens`, or plain text files (every regular
    /// file not ending in `.dat`, e.g. /usr/share/games/fortunes); required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Train on a fixed random subset of this many windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Tokens the model reads per example; it predicts the next seq_len
    /// (default 35, the PTB literature's).
    pub seq_len: i64,
    /// Keep the most frequent words (ties: first seen first) and map the
    /// others to `<unk>`; absent: every word of the training text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_vocab: Option<u64>,
}

impl Default for TextData {
    fn default() -> Self {
        TextData {
            path: None,
            subset: None,
            seq_len: 35,
            max_vocab: None,
        }
    }
}

impl Settings for TextData {
    fn check(&self, what: &str) -> Result<()> {
        if self.path.is_none() {
            bail!("key `data.path` is required for {what}: a text file, or a directory with ptb.train.txt, wiki.train.tokens or plain text files (e.g. /usr/share/games/fortunes, `apt-get install fortunes`)");
        }
        at_least_one("data.seq_len", self.seq_len)?;
        crate::config::validate::at_most("data.seq_len", self.seq_len as u64, 1 << 20)?;
        if let Some(v) = self.max_vocab {
            if v < 2 {
                bail!("key `data.max_vocab` must be at least 2 (one word and <unk>), got {v}");
            }
            crate::config::validate::at_most("data.max_vocab", v, 1 << 24)?;
        }
        Ok(())
    }
}

/// The element type of a flat token file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    U16,
    U32,
}

/// `data:` settings of a file of token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensData {
    /// A flat little-endian binary of token ids (`.bin`, with
    /// `token_dtype`) or a one-dimensional integer `.npy`; required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u64>,
    /// Tokens the model reads per example (default 128).
    pub seq_len: i64,
    /// The vocabulary size; every id must be below it (default: the largest
    /// id + 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab: Option<i64>,
    /// Element type of a `.bin` file (default u16, nanoGPT's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_dtype: Option<TokenDtype>,
}

impl Default for TokensData {
    fn default() -> Self {
        TokensData {
            path: None,
            subset: None,
            seq_len: 128,
            vocab: None,
            token_dtype: None,
        }
    }
}

impl Settings for TokensData {
    fn check(&self, what: &str) -> Result<()> {
        if self.path.is_none() {
            bail!("key `data.path` is required for {what}: a .bin file of uint16/uint32 token ids or a 1-D .npy");
        }
        at_least_one("data.seq_len", self.seq_len)?;
        crate::config::validate::at_most("data.seq_len", self.seq_len as u64, 1 << 20)?;
        if let Some(v) = self.vocab {
            if !(2..=1 << 24).contains(&v) {
                bail!("key `data.vocab` must be in 2..=16777216, got {v}");
            }
        }
        Ok(())
    }
}

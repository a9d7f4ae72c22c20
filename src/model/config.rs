//! The `model:` section of a config: the parameters' dtype and the
//! architecture, one variant per `model.kind`, each with the settings struct
//! of its model file (candle style: `MlpConfig`, `VitConfig::s16()`, …) whose
//! `Default` is the one place of its defaults. A preset (models/*.yaml) is
//! merged into the section before it is read (crate::config).
//!
//! Adding an architecture: its file in src/model/ with a settings struct that
//! implements [`Settings`], one line in [`model_kinds!`] below, one arm in
//! [`crate::model::Model::build`], and a preset in models/.

use crate::config::validate::{at_least_one, positive, read_keys, to_keys, NoSettings, Settings};
use crate::torch::dtype::Dtype;
use anyhow::{bail, Result};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_yaml::{Mapping, Value};

/// Declares the model kinds once: the [`ModelKind`] names and the [`Arch`]
/// variants with their settings types.
macro_rules! model_kinds {
    ($( $(#[$doc:meta])* $Var:ident = $name:literal => $Settings:ty, )*) => {
        /// Which architecture (`model.kind`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ModelKind {
            $( $(#[$doc])* $Var, )*
        }

        impl ModelKind {
            /// Every kind, in the order of this list.
            pub const ALL: &'static [ModelKind] = &[$(ModelKind::$Var),*];

            /// The name in configs (`model.kind`).
            pub fn name(self) -> &'static str {
                match self {
                    $(ModelKind::$Var => $name,)*
                }
            }

            pub fn from_name(name: &str) -> Option<ModelKind> {
                match name {
                    $($name => Some(ModelKind::$Var),)*
                    _ => None,
                }
            }
        }

        /// The architecture and its settings (`model.kind` and the kind's keys).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Arch {
            $( $Var($Settings), )*
        }

        impl Arch {
            pub fn kind(&self) -> ModelKind {
                match self {
                    $(Arch::$Var(_) => ModelKind::$Var,)*
                }
            }

            fn read(kind: ModelKind, keys: Mapping) -> std::result::Result<Arch, String> {
                let what = format!("model kind `{}`", kind.name());
                match kind {
                    $(ModelKind::$Var => read_keys("model", &what, FIXED_KEYS, keys).map(Arch::$Var),)*
                }
            }

            fn keys(&self) -> Mapping {
                match self {
                    $(Arch::$Var(s) => to_keys(s),)*
                }
            }

            fn check(&self) -> Result<()> {
                let what = format!("model kind `{}`", self.kind().name());
                match self {
                    $(Arch::$Var(s) => s.check(&what),)*
                }
            }
        }
    };
}

model_kinds! {
    /// The paper's MLP (§5.1).
    Mlp = "mlp" => MlpConfig,
    /// Two-layer ReLU network with logistic loss (Example 5).
    TwoLayerRelu = "two-layer-relu" => TwoLayerConfig,
    /// The half-space learning problem (§5, Fig. 2).
    Halfspace = "halfspace" => HalfspaceConfig,
    /// Matrix factorisation (Example 4).
    MatrixFactorisation = "matrix-factorisation" => MatFactConfig,
    /// Known-answer problems (src/model/known): f64, parameter `x`, one
    /// example per component f_i.
    Example1 = "example1" => KnownConfig,
    Example2 = "example2" => KnownConfig,
    Example3 = "example3" => KnownConfig,
    Example6 = "example6" => KnownConfig,
    /// Example 1 with n components in R^d: f_i = g(1ᵀx + i), g(s) = s²/(1+s²).
    Example1Nd = "example1-nd" => Example1NdConfig,
    /// Example 6 with two centres in R^d: f_i = r_i²/(1+r_i²), r_i = ||x − c_i||.
    Example6Nd = "example6-nd" => Example6NdConfig,
    /// The paper's CNN (§5.2): two conv layers (max-pool + ReLU each), one linear.
    Cnn = "cnn" => CnnConfig,
    /// ResNet9 (DAWNBench/Myrtle layout), the paper's CIFAR-100 model (§5.3).
    Resnet9 = "resnet9" => NoSettings,
    /// ResNet18, CIFAR form (3×3 stem, stride 1, no max-pool).
    Resnet18 = "resnet18" => NoSettings,
    /// ResNet34, CIFAR form.
    Resnet34 = "resnet34" => NoSettings,
    /// ResNet-50 (torchvision layout, AlgoPerf imagenet_resnet).
    Resnet50 = "resnet50" => ResNet50Config,
    /// Vision Transformer (AlgoPerf imagenet_vit; ViT-S/16 by default).
    Vit = "vit" => VitConfig,
    /// Encoder-decoder Transformer of AlgoPerf's wmt workload.
    Transformer = "transformer" => TransformerConfig,
    /// The user's own PyTorch model as a TorchScript module returning
    /// per-example losses (src/model/torchscript.rs).
    Torchscript = "torchscript" => TorchScriptConfig,
    /// Word-level LSTM language model (embedding → LSTM → linear decoder),
    /// laid out as torch.nn.LSTM (src/model/lstm.rs).
    Lstm = "lstm" => LstmConfig,
    /// Decoder-only Transformer as in Pythia (GPT-NeoX; src/model/gpt_neox.rs).
    GptNeox = "gpt-neox" => GptNeoxConfig,
    /// Graph network of AlgoPerf's ogbg workload (src/model/gnn.rs).
    Gnn = "gnn" => GnnConfig,
    /// DLRM-small of AlgoPerf's criteo1tb workload (src/model/dlrm.rs).
    Dlrm = "dlrm" => DlrmConfig,
    /// The U-Net of AlgoPerf's fastMRI workload (src/model/unet.rs).
    Unet = "unet" => UnetConfig,
}

/// The keys of `model:` besides the kind's own settings.
const FIXED_KEYS: &[&str] = &["preset", "kind", "dtype"];

impl ModelKind {
    /// Models with BatchNorm layers (running statistics are snapshot buffers).
    pub fn has_batchnorm(self) -> bool {
        matches!(
            self,
            ModelKind::Resnet9 | ModelKind::Resnet18 | ModelKind::Resnet34 | ModelKind::Resnet50
        )
    }

    /// The known-answer problems (parameter `x`, data = component indices).
    pub fn is_known_answer(self) -> bool {
        KNOWN_KINDS.contains(&self.name())
    }
}

/// The model kinds whose minimiser set S is known (projection reference, cloud).
pub const KNOWN_KINDS: [&str; 6] = [
    "example1",
    "example2",
    "example3",
    "example6",
    "example1-nd",
    "example6-nd",
];

/// The model: the preset its settings came from, the dtype, the architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Preset the settings were taken from (recorded, not needed to rebuild).
    pub preset: Option<String>,
    pub dtype: Dtype,
    pub arch: Arch,
}

impl ModelConfig {
    pub fn kind(&self) -> ModelKind {
        self.arch.kind()
    }

    /// Range checks of the kind's settings; known-answer problems are always
    /// f64 (their answers are checked to 1e-10 and beyond).
    pub(crate) fn resolve(&mut self) -> Result<()> {
        if self.kind().is_known_answer() {
            self.dtype = Dtype::F64;
        }
        // What the module file is, recorded once (in the run identity and
        // run.yaml) and checked whenever it is loaded.
        if let Arch::Torchscript(s) = &mut self.arch {
            // Absolute: the probe may run from another directory.
            if let Ok(p) = std::fs::canonicalize(&s.path) {
                s.path = p;
            }
            if s.digest.is_none() && s.path.is_file() {
                s.digest = Some(crate::util::file_digest(&s.path)?);
            }
        }
        self.arch.check()
    }

    /// Forgets `model.path` (the run identity: moving the module file must
    /// not orphan a run; its digest stays).
    pub fn clear_path(&mut self) {
        if let Arch::Torchscript(s) = &mut self.arch {
            s.path = std::path::PathBuf::new();
        }
    }

    /// The number of components n of a known-answer model.
    pub fn known_components(&self) -> Option<i64> {
        match &self.arch {
            Arch::Example1Nd(s) => Some(s.components),
            a if a.kind().is_known_answer() => Some(2),
            _ => None,
        }
    }
}

/// Written as `preset` (when set), `kind`, `dtype`, then the kind's settings:
/// the key order run ids hash.
impl Serialize for ModelConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = Mapping::new();
        if let Some(p) = &self.preset {
            m.insert("preset".into(), Value::String(p.clone()));
        }
        m.insert("kind".into(), Value::String(self.kind().name().into()));
        m.insert(
            "dtype".into(),
            serde_yaml::to_value(self.dtype).map_err(serde::ser::Error::custom)?,
        );
        m.extend(self.arch.keys());
        m.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut keys = Mapping::deserialize(d)?;
        // A null key is an unset key (`--set model.width=null` restores the default).
        keys.retain(|_, v| !v.is_null());
        let preset = match keys.remove("preset") {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                return Err(D::Error::custom(
                    "key `model.preset`: expected a preset name or a .yaml path",
                ))
            }
        };
        let names = || {
            ModelKind::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let kind = match keys.remove("kind") {
            Some(Value::String(s)) => ModelKind::from_name(&s).ok_or_else(|| {
                D::Error::custom(format!(
                    "key `model.kind`: unknown kind `{s}`; the kinds are {}",
                    names()
                ))
            })?,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "key `model.kind`: expected a kind name ({}), got {other:?}",
                    names()
                )))
            }
            None => {
                return Err(D::Error::custom(format!(
                    "key `model.kind` is missing: set `model.preset` (see `abcond presets`) or `model.kind` ({})",
                    names()
                )))
            }
        };
        let dtype = match keys.remove("dtype") {
            None => Dtype::default(),
            Some(v) => serde_yaml::from_value(v)
                .map_err(|e| D::Error::custom(format!("key `model.dtype`: {e}")))?,
        };
        let arch = Arch::read(kind, keys).map_err(D::Error::custom)?;
        Ok(ModelConfig {
            preset,
            dtype,
            arch,
        })
    }
}

// --- the settings of each kind ---

/// `model:` settings of the MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    /// Hidden width W (fc1: d → W, fc2: W → W). Default 128, the quickstart width of the paper's §5.1 sweep.
    pub width: i64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig { width: 128 }
    }
}

impl Settings for MlpConfig {
    fn check(&self, _what: &str) -> Result<()> {
        at_least_one("model.width", self.width)
    }
}

/// `model:` settings of the two-layer ReLU network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwoLayerConfig {
    /// Hidden width k.
    pub width: i64,
}

impl Default for TwoLayerConfig {
    fn default() -> Self {
        TwoLayerConfig { width: 64 }
    }
}

impl Settings for TwoLayerConfig {
    fn check(&self, _what: &str) -> Result<()> {
        at_least_one("model.width", self.width)
    }
}

/// `model:` settings of the CNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnConfig {
    /// Channels W of the second conv layer.
    pub width: i64,
}

impl Default for CnnConfig {
    fn default() -> Self {
        CnnConfig { width: 64 }
    }
}

impl Settings for CnnConfig {
    fn check(&self, _what: &str) -> Result<()> {
        at_least_one("model.width", self.width)
    }
}

/// `model:` settings of ResNet-50.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResNet50Config {
    /// Stem width (64 in torchvision's ResNet-50).
    pub width: i64,
}

impl Default for ResNet50Config {
    fn default() -> Self {
        ResNet50Config { width: 64 }
    }
}

impl Settings for ResNet50Config {
    fn check(&self, _what: &str) -> Result<()> {
        at_least_one("model.width", self.width)
    }
}

/// `model:` settings of the half-space problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HalfspaceConfig {
    /// L2 coefficient λ inside the loss (the paper's 1e-5).
    pub lambda: f64,
    /// Standard deviation of the Gaussian initialisation of x.
    pub init_std: f64,
}

impl Default for HalfspaceConfig {
    fn default() -> Self {
        HalfspaceConfig {
            lambda: 1e-5,
            init_std: 1.0,
        }
    }
}

impl Settings for HalfspaceConfig {
    fn check(&self, _what: &str) -> Result<()> {
        let l = self.lambda;
        if !(l.is_finite() && l >= 0.0) {
            bail!("key `model.lambda` must be ≥ 0, got {l}");
        }
        positive("model.init_std", self.init_std)
    }
}

/// `model:` settings of matrix factorisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatFactConfig {
    /// Factorisation rank k.
    pub rank: i64,
    /// Standard deviation of the Gaussian initialisation of both factors.
    pub init_std: f64,
}

impl Default for MatFactConfig {
    fn default() -> Self {
        MatFactConfig {
            rank: 3,
            init_std: 0.3,
        }
    }
}

impl Settings for MatFactConfig {
    fn check(&self, _what: &str) -> Result<()> {
        at_least_one("model.rank", self.rank)?;
        positive("model.init_std", self.init_std)
    }
}

/// `model:` settings of a ViT: its architecture. Default: ViT-S/16.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VitConfig {
    /// Embedding width (a multiple of 4 for the 2-D sin-cos positions, and of `heads`).
    pub width: i64,
    /// Encoder blocks.
    pub depth: i64,
    /// Attention heads.
    pub heads: i64,
    /// Hidden width of the MLP blocks.
    pub mlp_dim: i64,
    /// Side of the square patches (the image side must be a multiple).
    #[serde(rename = "patch_size")]
    pub patch: i64,
    /// Dropout rate in training steps (AlgoPerf's places); the probe measures
    /// with dropout off.
    pub dropout: f64,
}

impl Default for VitConfig {
    fn default() -> Self {
        VitConfig::small16()
    }
}

impl Settings for VitConfig {
    fn check(&self, _what: &str) -> Result<()> {
        let VitConfig {
            width: w,
            depth,
            heads,
            mlp_dim,
            patch,
            dropout,
        } = *self;
        if w < 1 || depth < 1 || heads < 1 || mlp_dim < 1 || patch < 1 {
            bail!("keys `model.width`, `model.depth`, `model.heads`, `model.mlp_dim`, `model.patch_size` must be at least 1");
        }
        if w % heads != 0 || w % 4 != 0 {
            bail!("key `model.width` ({w}) must be a multiple of 4 (2-D sin-cos positions) and of `model.heads` ({heads})");
        }
        check_dropout(dropout)
    }
}

/// Fails unless the dropout rate is in [0, 1).
pub(crate) fn check_dropout(d: f64) -> Result<()> {
    if !(0.0..1.0).contains(&d) {
        bail!("key `model.dropout` must be in [0, 1), got {d}");
    }
    Ok(())
}

impl VitConfig {
    /// ViT-S/16.
    pub fn small16() -> VitConfig {
        VitConfig {
            width: 384,
            depth: 12,
            heads: 6,
            mlp_dim: 1536,
            patch: 16,
            dropout: 0.0,
        }
    }
}

/// `model:` settings of the Transformer: its architecture. Default: AlgoPerf's WMT model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformerConfig {
    /// d_model.
    pub width: i64,
    /// Layers of the encoder, and of the decoder.
    pub depth: i64,
    pub heads: i64,
    /// Hidden width of the feed-forward blocks.
    pub mlp_dim: i64,
    pub dropout: f64,
    /// Label smoothing ε of the training loss (AlgoPerf trains with 0.1):
    /// each target position's loss is (1 − ε)·CE + ε·mean over the vocabulary
    /// of −log p, as torch's `cross_entropy(label_smoothing=ε)`. Training
    /// only: the probe measures the plain cross-entropy f_i. Default 0 (not
    /// written when 0, so older run ids stay).
    #[serde(skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl TransformerConfig {
    /// AlgoPerf's WMT Transformer.
    pub fn wmt() -> TransformerConfig {
        TransformerConfig {
            width: 1024,
            depth: 6,
            heads: 16,
            mlp_dim: 1024,
            dropout: 0.0,
            label_smoothing: 0.0,
        }
    }
}

impl Default for TransformerConfig {
    fn default() -> Self {
        TransformerConfig::wmt()
    }
}

impl Settings for TransformerConfig {
    fn check(&self, _what: &str) -> Result<()> {
        let TransformerConfig {
            width: w,
            depth,
            heads,
            mlp_dim,
            dropout,
            label_smoothing,
        } = *self;
        if !(0.0..1.0).contains(&label_smoothing) {
            bail!("key `model.label_smoothing` must be in [0, 1), got {label_smoothing}");
        }
        if w < 1 || depth < 1 || heads < 1 || mlp_dim < 1 {
            bail!("keys `model.width`, `model.depth`, `model.heads`, `model.mlp_dim` must be at least 1");
        }
        if w % heads != 0 || w % 2 != 0 || w < 4 {
            bail!("key `model.width` ({w}) must be even, at least 4 (sinusoidal positions) and a multiple of `model.heads` ({heads})");
        }
        check_dropout(dropout)
    }
}

/// `model:` settings of the fastMRI U-Net. Default: AlgoPerf's
/// (models/unet-fastmri.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnetConfig {
    /// Input and output channels (1: a magnitude image).
    pub in_chans: i64,
    pub out_chans: i64,
    /// Channels of the first level (doubled at each pooling).
    pub channels: i64,
    /// Pooling levels.
    pub pool_layers: i64,
    /// Channel-wise dropout after each convolution's activation (training only).
    pub dropout: f64,
}

impl Default for UnetConfig {
    fn default() -> Self {
        UnetConfig {
            in_chans: 1,
            out_chans: 1,
            channels: 32,
            pool_layers: 4,
            dropout: 0.0,
        }
    }
}

impl Settings for UnetConfig {
    fn check(&self, _what: &str) -> Result<()> {
        at_least_one("model.in_chans", self.in_chans)?;
        at_least_one("model.out_chans", self.out_chans)?;
        at_least_one("model.channels", self.channels)?;
        at_least_one("model.pool_layers", self.pool_layers)?;
        crate::config::validate::at_most("model.pool_layers", self.pool_layers as u64, 8)?;
        crate::config::validate::at_most("model.channels", self.channels as u64, 4096)?;
        check_dropout(self.dropout)
    }
}

/// `model:` settings of DLRM-small. Default: AlgoPerf's criteo1tb model
/// (models/dlrm-small.yaml; models/dlrm-small-test.yaml is criteo1tb_test's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DlrmConfig {
    /// Rows V of the embedding table (categorical values are taken modulo V);
    /// a multiple of 4 (the table's four chunks).
    pub vocab: i64,
    /// Width D of each embedding.
    pub embed_dim: i64,
    /// Widths of the bottom MLP (dense features → D; the last must be D).
    pub bottom: Vec<i64>,
    /// Widths of the top MLP (the last must be 1: the logit).
    pub top: Vec<i64>,
    /// Dropout before the last top layer (training only).
    pub dropout: f64,
}

impl Default for DlrmConfig {
    fn default() -> Self {
        DlrmConfig {
            vocab: 4_194_304,
            embed_dim: 128,
            bottom: vec![512, 256, 128],
            top: vec![1024, 1024, 512, 256, 1],
            dropout: 0.0,
        }
    }
}

impl Settings for DlrmConfig {
    fn check(&self, _what: &str) -> Result<()> {
        if self.vocab < 4 || self.vocab % 4 != 0 {
            bail!(
                "key `model.vocab` must be a positive multiple of 4 (the table's four chunks), got {}",
                self.vocab
            );
        }
        crate::config::validate::at_most("model.vocab", self.vocab as u64, 1 << 28)?;
        at_least_one("model.embed_dim", self.embed_dim)?;
        if self.bottom.is_empty() || self.bottom.iter().any(|&w| w < 1) {
            bail!(
                "key `model.bottom` must list at least one width, each at least 1, got {:?}",
                self.bottom
            );
        }
        if self.bottom.last() != Some(&self.embed_dim) {
            bail!(
                "key `model.bottom` must end with `model.embed_dim` ({}): the dot interaction pairs the bottom output with the embeddings, got {:?}",
                self.embed_dim,
                self.bottom
            );
        }
        if self.top.last() != Some(&1) || self.top.iter().any(|&w| w < 1) {
            bail!("key `model.top` must list widths of at least 1 ending with 1 (the logit), got {:?}", self.top);
        }
        check_dropout(self.dropout)
    }
}

/// `model:` settings of the GPT-NeoX decoder. Default: Pythia-70M's
/// architecture (models/pythia-70m.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GptNeoxConfig {
    /// hidden_size.
    pub width: i64,
    /// num_hidden_layers.
    pub depth: i64,
    /// num_attention_heads.
    pub heads: i64,
    /// intermediate_size of the MLP.
    pub mlp_dim: i64,
    /// Fraction of each head's dimensions that rotary embeddings rotate.
    pub rotary_pct: f64,
    /// Base of the rotary frequencies.
    pub rotary_base: f64,
    /// x + attn(ln1(x)) + mlp(ln2(x)) (Pythia) instead of sequential blocks.
    pub parallel_residual: bool,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
}

impl Default for GptNeoxConfig {
    fn default() -> Self {
        GptNeoxConfig {
            width: 512,
            depth: 6,
            heads: 8,
            mlp_dim: 2048,
            rotary_pct: 0.25,
            rotary_base: 10000.0,
            parallel_residual: true,
            init_std: 0.02,
        }
    }
}

impl GptNeoxConfig {
    /// Dimensions of each head that are rotated: int(head_dim · rotary_pct).
    pub fn rotary_dims(&self) -> i64 {
        ((self.width / self.heads) as f64 * self.rotary_pct) as i64
    }
}

impl Settings for GptNeoxConfig {
    fn check(&self, _what: &str) -> Result<()> {
        let c = *self;
        if c.width < 1 || c.depth < 1 || c.heads < 1 || c.mlp_dim < 1 {
            bail!("keys `model.width`, `model.depth`, `model.heads` and `model.mlp_dim` must be at least 1");
        }
        if c.width % c.heads != 0 {
            bail!(
                "key `model.width` ({}) must be a multiple of `model.heads` ({})",
                c.width,
                c.heads
            );
        }
        if !(c.rotary_pct > 0.0 && c.rotary_pct <= 1.0)
            || c.rotary_dims() < 2
            || c.rotary_dims() % 2 != 0
        {
            bail!(
                "key `model.rotary_pct` ({}) must be in (0, 1] and rotate an even number ≥ 2 of each head's {} dimensions",
                c.rotary_pct,
                c.width / c.heads
            );
        }
        positive("model.rotary_base", c.rotary_base)?;
        positive("model.init_std", c.init_std)?;
        Ok(())
    }
}

/// The activation of the GNN's MLPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GnnActivation {
    Relu,
    /// GELU, tanh approximation (AlgoPerf's `gelu`).
    Gelu,
    Silu,
}

/// `model:` settings of the graph network. Default: AlgoPerf's ogbg model
/// (models/gnn-ogbg.yaml); the number of outputs is the data's tasks and the
/// embedders' input widths are its node and edge feature widths.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GnnConfig {
    /// Width of the node and edge embeddings.
    pub latent_dim: i64,
    /// Width of every MLP layer (AlgoPerf's hidden_dims, all equal).
    pub hidden_dim: i64,
    /// Layers of each edge, node and global MLP (Linear → LayerNorm →
    /// activation → dropout).
    pub mlp_layers: i64,
    /// Message-passing steps, each with its own MLPs.
    pub message_passing_steps: i64,
    pub activation: GnnActivation,
    /// Dropout after each MLP layer's activation (training only).
    pub dropout: f64,
}

impl Default for GnnConfig {
    fn default() -> Self {
        GnnConfig {
            latent_dim: 256,
            hidden_dim: 256,
            mlp_layers: 1,
            message_passing_steps: 5,
            activation: GnnActivation::Relu,
            dropout: 0.1,
        }
    }
}

impl Settings for GnnConfig {
    fn check(&self, _what: &str) -> Result<()> {
        let c = *self;
        if c.latent_dim < 1 || c.hidden_dim < 1 || c.mlp_layers < 1 || c.message_passing_steps < 1 {
            bail!("keys `model.latent_dim`, `model.hidden_dim`, `model.mlp_layers` and `model.message_passing_steps` must be at least 1");
        }
        crate::config::validate::at_most("model.latent_dim", c.latent_dim as u64, 1 << 16)?;
        crate::config::validate::at_most("model.hidden_dim", c.hidden_dim as u64, 1 << 16)?;
        crate::config::validate::at_most("model.mlp_layers", c.mlp_layers as u64, 64)?;
        crate::config::validate::at_most(
            "model.message_passing_steps",
            c.message_passing_steps as u64,
            64,
        )?;
        check_dropout(c.dropout)
    }
}

/// `model:` settings of the LSTM language model. Default: the preset
/// `lstm-3layer` (models/lstm-3layer.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LstmConfig {
    /// Embedding width (the LSTM's input size).
    pub embed: i64,
    /// Hidden width of every LSTM layer.
    pub hidden: i64,
    pub layers: i64,
    /// Dropout on the embeddings, between LSTM layers and on the last
    /// layer's output (training only).
    pub dropout: f64,
    /// The decoder's weight is the embedding matrix (needs embed = hidden).
    pub tie_weights: bool,
}

impl Default for LstmConfig {
    fn default() -> Self {
        LstmConfig {
            embed: 200,
            hidden: 200,
            layers: 3,
            dropout: 0.2,
            tie_weights: false,
        }
    }
}

impl Settings for LstmConfig {
    fn check(&self, _what: &str) -> Result<()> {
        let c = *self;
        if c.embed < 1 || c.hidden < 1 || c.layers < 1 {
            bail!("keys `model.embed`, `model.hidden` and `model.layers` must be at least 1");
        }
        crate::config::validate::at_most("model.layers", c.layers as u64, 64)?;
        if c.tie_weights && c.embed != c.hidden {
            bail!(
                "key `model.tie_weights`: the decoder can share the embedding only when model.embed = model.hidden (got {} and {})",
                c.embed,
                c.hidden
            );
        }
        check_dropout(c.dropout)
    }
}

/// `model:` settings of the two-dimensional known-answer problems (Examples
/// 1, 2, 3 and 6): the starting point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnownConfig {
    /// x^0 (length d); without it x^0 is drawn uniformly from `init_box` with
    /// the run seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Vec<f64>>,
    /// [lo, hi] of every coordinate of a random x^0.
    pub init_box: [f64; 2],
}

impl Default for KnownConfig {
    fn default() -> Self {
        KnownConfig {
            init: None,
            init_box: [-1.0, 2.0],
        }
    }
}

impl Settings for KnownConfig {
    fn check(&self, what: &str) -> Result<()> {
        check_start(&self.init, self.init_box, 2, what)
    }
}

/// `model:` settings of Example 1 in R^d with n components.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Example1NdConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Vec<f64>>,
    pub init_box: [f64; 2],
    /// Dimension d of x.
    pub dim: i64,
    /// Number of components n.
    pub components: i64,
}

impl Default for Example1NdConfig {
    fn default() -> Self {
        Example1NdConfig {
            init: None,
            init_box: [-1.0, 2.0],
            dim: 2,
            components: 2,
        }
    }
}

impl Settings for Example1NdConfig {
    fn check(&self, what: &str) -> Result<()> {
        let (d, n) = (self.dim, self.components);
        if d < 1 || n < 1 {
            bail!("keys `model.dim` and `model.components` must be at least 1, got {d} and {n}");
        }
        check_start(&self.init, self.init_box, d, what)
    }
}

/// `model:` settings of Example 6 in R^d (two centres).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Example6NdConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Vec<f64>>,
    pub init_box: [f64; 2],
    /// Dimension d of x.
    pub dim: i64,
}

impl Default for Example6NdConfig {
    fn default() -> Self {
        Example6NdConfig {
            init: None,
            init_box: [-1.0, 2.0],
            dim: 2,
        }
    }
}

impl Settings for Example6NdConfig {
    fn check(&self, what: &str) -> Result<()> {
        at_least_one("model.dim", self.dim)?;
        check_start(&self.init, self.init_box, self.dim, what)
    }
}

/// x^0 and its box: a box with lo < hi, and `init` of length d, finite.
fn check_start(init: &Option<Vec<f64>>, init_box: [f64; 2], d: i64, what: &str) -> Result<()> {
    let [lo, hi] = init_box;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        bail!("key `model.init_box` must be [lo, hi] with lo < hi, got [{lo}, {hi}]");
    }
    if let Some(x0) = init {
        if x0.len() as i64 != d || x0.iter().any(|v| !v.is_finite()) {
            bail!("key `model.init` must list {d} finite numbers (x^0 of {what} in R^{d}), got {x0:?}");
        }
    }
    Ok(())
}

/// `model:` settings of a TorchScript module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TorchScriptConfig {
    /// The module file written by `abcond.export` or `torch.jit.save` (required).
    pub path: std::path::PathBuf,
    /// XXH64 of the file (`xxh64:<hex>`), recorded when the config is read and
    /// checked when the module is loaded: a changed module is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Settings for TorchScriptConfig {
    fn check(&self, what: &str) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            bail!("key `model.path` is required for {what}: the TorchScript module file (abcond.export writes one)");
        }
        Ok(())
    }
}

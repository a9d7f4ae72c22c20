//! Experiment configuration: the YAML schema, `--set` overrides, model presets and
//! the resolved form that is written to `run.yaml` before training starts.
//!
//! Loading is two-staged: the file is read as a YAML tree, `--set key.path=value`
//! overrides and the model preset are merged into that tree, and only then is it
//! deserialised into [`Config`] with unknown keys rejected. [`Config::resolve`]
//! checks that every key applies to the chosen model/dataset/optimiser and fills
//! in every default, so the resolved YAML alone reproduces the run.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// A whole experiment: what to train, on what, how, and what to measure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Experiment name; the run directory is `<out>/<experiment>/<run_id>/`.
    pub experiment: String,
    /// Seed of every random source of the run (initialisation, minibatch order,
    /// extra probe minibatches).
    #[serde(default)]
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub snapshots: SnapshotConfig,
    #[serde(default)]
    pub probe: ProbeConfig,
    #[serde(default)]
    pub analysis: AnalysisConfig,
}

fn default_device() -> String {
    "auto".to_string()
}

/// Floating-point type of a model's parameters and data.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    F64,
}

impl Dtype {
    pub fn kind(self) -> tch::Kind {
        match self {
            Dtype::F32 => tch::Kind::Float,
            Dtype::F64 => tch::Kind::Double,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Mlp,
    TwoLayerRelu,
    Halfspace,
    MatrixFactorisation,
    /// Known-answer problems (docs/theory.md, Known-answer problems;
    /// src/model/known): f64, parameter `x`,
    /// one example per component f_i.
    Example1,
    Example2,
    Example3,
    Example6,
    /// Example 1 with n components in R^d: f_i = g(1ᵀx + i), g(s) = s²/(1+s²).
    #[serde(rename = "example1-nd")]
    Example1Nd,
    /// Example 6 with two centres in R^d: f_i = r_i²/(1+r_i²), r_i = ||x − c_i||.
    #[serde(rename = "example6-nd")]
    Example6Nd,
    // --- CIFAR vision models ---
    /// The paper's CNN (§5.2): two conv layers (max-pool + ReLU each), one linear.
    Cnn,
    /// ResNet9 (DAWNBench/Myrtle layout), the paper's CIFAR-100 model (§5.3).
    Resnet9,
    /// ResNet18, CIFAR form (3×3 stem, stride 1, no max-pool).
    Resnet18,
    /// ResNet34, CIFAR form.
    Resnet34,
    // --- ImageNet models (src/model/resnet50.rs, src/model/vit.rs) ---
    /// ResNet-50 (torchvision layout, AlgoPerf imagenet_resnet); `model.width` is
    /// the stem width (64).
    Resnet50,
    /// Vision Transformer (AlgoPerf imagenet_vit, ViT-S/16 by the preset).
    Vit,
    /// Encoder-decoder Transformer of AlgoPerf's wmt workload (src/model/transformer.rs).
    Transformer,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::TwoLayerRelu => "two-layer-relu",
            ModelKind::Halfspace => "halfspace",
            ModelKind::MatrixFactorisation => "matrix-factorisation",
            ModelKind::Example1 => "example1",
            ModelKind::Example2 => "example2",
            ModelKind::Example3 => "example3",
            ModelKind::Example6 => "example6",
            ModelKind::Example1Nd => "example1-nd",
            ModelKind::Example6Nd => "example6-nd",
            ModelKind::Cnn => "cnn",
            ModelKind::Resnet9 => "resnet9",
            ModelKind::Resnet18 => "resnet18",
            ModelKind::Resnet34 => "resnet34",
            ModelKind::Resnet50 => "resnet50",
            ModelKind::Vit => "vit",
            ModelKind::Transformer => "transformer",
        }
    }

    /// Models with BatchNorm layers (running statistics are snapshot buffers).
    pub fn has_batchnorm(self) -> bool {
        matches!(
            self,
            ModelKind::Resnet9 | ModelKind::Resnet18 | ModelKind::Resnet34 | ModelKind::Resnet50
        )
    }

    /// The known-answer problems (parameter `x`, data = component indices).
    pub fn is_known_answer(self) -> bool {
        matches!(
            self,
            ModelKind::Example1
                | ModelKind::Example2
                | ModelKind::Example3
                | ModelKind::Example6
                | ModelKind::Example1Nd
                | ModelKind::Example6Nd
        )
    }
}

/// The model: a preset from `models/*.yaml` (or a YAML path) plus overrides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Preset the settings were taken from (recorded, not needed to rebuild).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    pub kind: ModelKind,
    #[serde(default)]
    pub dtype: Dtype,
    /// Hidden width (mlp: square hidden layer; two-layer-relu: k; cnn: channels
    /// of the second conv layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// L2 coefficient inside the half-space loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// Factorisation rank k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<i64>,
    /// Standard deviation of the Gaussian initialisation (halfspace, matrix-factorisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<f64>,
    /// Known-answer problems: the initial point x^0 (length d). Without it x^0
    /// is drawn uniformly from `init_box` with the run seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Vec<f64>>,
    /// Known-answer problems: [lo, hi] of every coordinate of a random x^0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_box: Option<[f64; 2]>,
    /// example1-nd, example6-nd: dimension d of x.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<i64>,
    /// example1-nd: number of components n.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<i64>,
    // --- ImageNet models ---
    /// vit: number of encoder blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<i64>,
    /// vit: attention heads (must divide `width`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<i64>,
    /// vit: hidden width of the MLP blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_dim: Option<i64>,
    /// vit: side of the square patches (the image side must be a multiple).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_size: Option<i64>,
    /// vit: dropout rate in training steps (AlgoPerf's places); the probe
    /// measures with dropout off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
}

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

/// Length of training and minibatch size. Exactly one of `steps`, `epochs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Extra resume checkpoints every N steps (always written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
    /// Extra resume checkpoint when this many minutes passed since the last one.
    #[serde(default = "default_checkpoint_minutes")]
    pub checkpoint_minutes: f64,
    /// A snapshot step is also a resume checkpoint (a cheap one: the iterate
    /// is the snapshot) unless the last checkpoint was written less than this
    /// many seconds ago. 0: every snapshot step. The floor keeps a fast loop
    /// with frequent snapshots from writing the step rows, the optimiser state
    /// and run.yaml dozens of times a second; a crash then costs at most this
    /// much more work than with a checkpoint at every snapshot.
    #[serde(
        default = "default_checkpoint_min_seconds",
        skip_serializing_if = "is_default_checkpoint_min_seconds"
    )]
    pub checkpoint_min_seconds: f64,
    /// CUDA, f32 models: let cuBLAS matmuls and cuDNN convolutions of the
    /// training steps use TF32 tensor cores (10-bit mantissa products; several
    /// times faster on Ampere and later). Off by default, so that f32 training
    /// on a GPU stays close to the CPU and to other GPU generations; the probe
    /// never uses TF32 (src/reproducibility.rs).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_tf32: bool,
    /// Mixed precision of the training steps' forward pass and loss
    /// (`torch.autocast`): `bf16`, or absent for none. The backward pass
    /// follows the forward's dtypes; parameters, optimiser state and snapshots
    /// stay in `model.dtype`; steps.parquet records the autocast loss. The
    /// probe and curvature never autocast. f32 models only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autocast: Option<AutocastDtype>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The lower-precision dtype of `train.autocast`. bf16 only: it has f32's
/// exponent range, so no loss scaling (GradScaler) is needed; fp16 would need it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutocastDtype {
    Bf16,
}

impl AutocastDtype {
    pub fn name(self) -> &'static str {
        match self {
            AutocastDtype::Bf16 => "bf16",
        }
    }
    pub fn kind(self) -> tch::Kind {
        match self {
            AutocastDtype::Bf16 => tch::Kind::BFloat16,
        }
    }
}

fn default_checkpoint_minutes() -> f64 {
    10.0
}

fn default_checkpoint_min_seconds() -> f64 {
    10.0
}

/// Written to run.yaml only when set otherwise: run.yaml files stay readable
/// by builds that predate the key.
fn is_default_checkpoint_min_seconds(v: &f64) -> bool {
    *v == default_checkpoint_min_seconds()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OptimName {
    #[serde(rename = "sgd")]
    Sgd,
    #[serde(rename = "adam")]
    Adam,
    #[serde(rename = "adamw")]
    Adamw,
    /// torch.optim.NAdam (momentum decay psi, optional decoupled weight decay).
    #[serde(rename = "nadam")]
    Nadam,
    /// AlgoPerf's NAdamW baseline (no momentum decay, decoupled weight decay).
    #[serde(rename = "nadamw")]
    Nadamw,
    /// Normalised SGD with momentum: m_t = beta_t m + (1 − beta_t) g,
    /// x −= lr_t m_t/||m_t||, beta_t = 1 − t^(−momentum_power).
    #[serde(rename = "normalized-sgd")]
    NormalizedSgd,
    /// SPS_max: gamma_k = min{(f_i − f_i*)/(c ||∇f_i||²), gamma_b = lr_k}.
    #[serde(rename = "sps-max")]
    SpsMax,
    /// DecSPS: gamma_k = min{(f_i − f_i*)/||∇f_i||², c_{k−1} gamma_{k−1}}/c_k.
    #[serde(rename = "decsps")]
    DecSps,
    /// NGN: gamma_k = lr_k/(1 + lr_k ||∇f_i||²/(2 f_i)).
    #[serde(rename = "ngn")]
    Ngn,
    /// AdaGrad-norm-max: gamma_k = lr_k/b_k, b_k² = b_{k−1}² + max_{j≤k} ||∇f_{i_j}||².
    #[serde(rename = "adagrad-norm-max")]
    AdagradNormMax,
}

impl OptimName {
    pub fn name(self) -> &'static str {
        match self {
            OptimName::Sgd => "sgd",
            OptimName::Adam => "adam",
            OptimName::Adamw => "adamw",
            OptimName::Nadam => "nadam",
            OptimName::Nadamw => "nadamw",
            OptimName::NormalizedSgd => "normalized-sgd",
            OptimName::SpsMax => "sps-max",
            OptimName::DecSps => "decsps",
            OptimName::Ngn => "ngn",
            OptimName::AdagradNormMax => "adagrad-norm-max",
        }
    }

    /// Methods whose step size gamma_k is computed from f_i(x^k) and ||∇f_i(x^k)||.
    pub fn is_adaptive_step(self) -> bool {
        matches!(
            self,
            OptimName::SpsMax | OptimName::DecSps | OptimName::Ngn | OptimName::AdagradNormMax
        )
    }
}

/// Parameter classes that `optim.weight_decay_exclude` can exempt from weight decay.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DecayExclude {
    /// Parameters named `….bias`.
    Biases,
    /// Scales of normalisation layers: one-dimensional parameters named
    /// `<layer>.weight` (BatchNorm, LayerNorm and GroupNorm weights are the only
    /// such tensors of a layer; a bare `weight`, the half-space x, is not one).
    Norms,
}

/// The optimiser. SGD follows torch.optim.SGD (momentum, dampening, Nesterov,
/// coupled weight decay); Adam/AdamW/NAdam follow torch.optim; NAdamW follows
/// AlgoPerf's baseline; the paper's adaptive step sizes follow
/// docs/theory.md, Optimisers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub name: OptimName,
    pub lr: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Parameters exempt from weight decay (none by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_decay_exclude: Vec<DecayExclude>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// nadam: momentum decay psi (torch default 0.004).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_decay: Option<f64>,
    /// nadam: decoupled (AdamW-style) weight decay (torch default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoupled_weight_decay: Option<bool>,
    /// normalized-sgd: b in beta_t = 1 − t^(−b) (t = 1, 2, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_power: Option<f64>,
    /// sps-max: c; decsps: c_0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<f64>,
    /// decsps: p in c_k = c_0 (k+1)^p (non-decreasing; 0.5 gives sqrt(k+1)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_power: Option<f64>,
    /// sps-max, decsps: the lower bound f_i* used in the step size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_star: Option<f64>,
    /// adagrad-norm-max: b_{−1} (b_k² = b_{k−1}² + c_k²).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b0: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleName {
    #[default]
    Constant,
    Cosine,
    OneCycle,
    WarmupCosine,
    /// gamma_k = lr (k+1)^(−power); power 0.5 is the paper's gamma_0/sqrt(k+1).
    InversePower,
    /// torch.optim.lr_scheduler.PolynomialLR with a floor:
    /// gamma_k = floor + (lr − floor)(1 − k/K)^power.
    Polynomial,
}

/// Learning-rate schedule over the K training steps; `optim.lr` is the peak.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default)]
    pub name: ScheduleName,
    /// Final learning rate of cosine and warmup-cosine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// one-cycle: fraction of steps spent increasing the rate (torch default 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct_start: Option<f64>,
    /// one-cycle: initial rate = lr / div_factor (torch default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub div_factor: Option<f64>,
    /// one-cycle: final rate = initial / final_div_factor (torch default 1e4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_div_factor: Option<f64>,
    /// warmup-cosine: warm-up length as a fraction of all steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_fraction: Option<f64>,
    /// warmup-cosine: warm-up length in steps (instead of a fraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// inverse-power: exponent (default 0.5); polynomial: exponent (default 1, as torch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<f64>,
}

/// Which iterates x^k are written to disk. The union of all given rules; the
/// final iterate x^K is always written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Every N steps (0, N, 2N, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// About this many steps, log-spaced over [1, K], plus step 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_spaced: Option<u64>,
    /// Explicit steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BatchNormPolicy {
    /// Normalise with the statistics of the probed minibatch; running statistics
    /// are left untouched.
    #[default]
    BatchStats,
    /// Normalise with the running statistics stored in the snapshot (eval mode).
    RunningStats,
}

impl BatchNormPolicy {
    pub fn name(self) -> &'static str {
        match self {
            BatchNormPolicy::BatchStats => "batch-stats",
            BatchNormPolicy::RunningStats => "running-stats",
        }
    }
}

/// What the probe measures at each snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Snapshot steps to probe (default: every snapshot but the final one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<u64>>,
    /// Also probe the final iterate itself (inner = dist = 0 there).
    #[serde(default)]
    pub include_final: bool,
    /// Extra seeded minibatches per snapshot, besides the one step k used.
    #[serde(default = "default_extra_batches")]
    pub extra_batches: u64,
    /// Probe the full training loss f too.
    #[serde(default = "default_true")]
    pub full: bool,
    /// Use a fixed seeded subset of this many examples as "full" data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_subset: Option<u64>,
    /// Examples per forward/backward pass of the full-data probe.
    #[serde(default = "default_chunk")]
    pub chunk_size: u64,
    #[serde(default)]
    pub batchnorm: BatchNormPolicy,
    /// x_p in the rows: the final iterate x^K (the paper's protocol) or the
    /// exact projection Proj(x^k, S) (known-answer problems only).
    #[serde(default, skip_serializing_if = "Reference::is_final")]
    pub reference: Reference,
    /// Probe a seeded point cloud in a box instead of the snapshots
    /// (known-answer problems; implies the projection reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudConfig>,
    /// Top Hessian eigenvalues by power iteration (off by default); written to
    /// `curvature.parquet`, never into the landscape rows.
    #[serde(default, skip_serializing_if = "CurvatureConfig::is_default")]
    pub curvature: CurvatureConfig,
}

/// What the probe uses as x_p.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// The final iterate x^K of the run.
    #[default]
    Final,
    /// The exact projection Proj(x^k, S) onto the known minimiser set S.
    Projection,
}

impl Reference {
    pub fn name(self) -> &'static str {
        match self {
            Reference::Final => "final",
            Reference::Projection => "projection",
        }
    }
    fn is_final(&self) -> bool {
        *self == Reference::Final
    }
}

/// N points drawn uniformly (seeded) from the box [lo, hi]^d.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    pub points: u64,
    /// [lo, hi] of every coordinate.
    #[serde(rename = "box")]
    pub bounds: [f64; 2],
    /// Seed of the draw (default: the run seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Which probe losses the curvature probe differentiates twice.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum CurvatureProbe {
    /// f_{i_k}, the minibatch step k used.
    Train,
    /// The extra seeded minibatches `extra-<j>`.
    Extra,
    /// f, the full data (or `probe.full_subset`), in chunks of `probe.chunk_size`.
    Full,
}

impl CurvatureProbe {
    pub fn name(self) -> &'static str {
        match self {
            CurvatureProbe::Train => "train",
            CurvatureProbe::Extra => "extra",
            CurvatureProbe::Full => "full",
        }
    }
}

/// `probe.curvature`: the eigenvalue of largest magnitude of the Hessian of
/// f_i (and f) at each probed snapshot, by power iteration on Hessian-vector
/// products (src/curvature.rs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurvatureConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Most power iterations (Hessian-vector products) per eigenvalue.
    #[serde(default = "default_curvature_iterations")]
    pub iterations: u64,
    /// Stop when the eigenvalue estimate changes by at most tol relative to itself.
    #[serde(default = "default_curvature_tol")]
    pub tol: f64,
    /// Which losses: train, extra, full.
    #[serde(default = "default_curvature_probes")]
    pub probes: Vec<CurvatureProbe>,
    /// Also the other end of the spectrum (so both lambda_max and lambda_min)
    /// by a second power iteration on H − λ·I; doubles the cost.
    #[serde(default = "default_true")]
    pub both_ends: bool,
}

fn default_curvature_iterations() -> u64 {
    100
}
fn default_curvature_tol() -> f64 {
    1e-6
}
fn default_curvature_probes() -> Vec<CurvatureProbe> {
    vec![CurvatureProbe::Train, CurvatureProbe::Full]
}

impl Default for CurvatureConfig {
    fn default() -> Self {
        CurvatureConfig {
            enabled: false,
            iterations: default_curvature_iterations(),
            tol: default_curvature_tol(),
            probes: default_curvature_probes(),
            both_ends: true,
        }
    }
}

impl CurvatureConfig {
    fn is_default(&self) -> bool {
        *self == CurvatureConfig::default()
    }

    /// Range checks.
    pub fn validate(&self) -> Result<()> {
        if !(1..=1_000_000).contains(&self.iterations) {
            bail!(
                "key `probe.curvature.iterations` must be between 1 and 1000000, got {}",
                self.iterations
            );
        }
        if !(self.tol.is_finite() && self.tol > 0.0 && self.tol < 1.0) {
            bail!(
                "key `probe.curvature.tol` must be a number in (0, 1), got {}",
                self.tol
            );
        }
        if self.probes.is_empty() {
            bail!("key `probe.curvature.probes` must list at least one of train, extra, full");
        }
        let mut p = self.probes.clone();
        p.sort();
        p.dedup();
        if p.len() != self.probes.len() {
            bail!(
                "key `probe.curvature.probes` lists a probe twice: {:?}",
                self.probes.iter().map(|p| p.name()).collect::<Vec<_>>()
            );
        }
        Ok(())
    }
}

fn default_extra_batches() -> u64 {
    2
}
fn default_true() -> bool {
    true
}
fn default_chunk() -> u64 {
    4096
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            steps: None,
            include_final: false,
            extra_batches: default_extra_batches(),
            full: true,
            full_subset: None,
            chunk_size: default_chunk(),
            batchnorm: BatchNormPolicy::default(),
            reference: Reference::Final,
            cloud: None,
            curvature: CurvatureConfig::default(),
        }
    }
}

/// f_i*, the minimum of each minibatch loss, in the alpha-beta condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FStar {
    /// The same value for every minibatch (0 for cross-entropy-type losses).
    Constant(f64),
    /// The smallest loss observed for that minibatch in the run: min(f_i(x^k),
    /// f_i(x^K)) over the rows probing it (an upper bound on the true f_i*).
    MinObserved,
    /// The exact minimum of each minibatch loss, for known-answer models
    /// (src/model/known): f_i* of a component, f* of all of them.
    Known,
}

impl FStar {
    pub fn describe(&self) -> String {
        match self {
            FStar::Constant(v) => format!("{v}"),
            FStar::MinObserved => "min-observed".to_string(),
            FStar::Known => "known".to_string(),
        }
    }
}

impl Serialize for FStar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            FStar::Constant(v) => s.serialize_f64(*v),
            FStar::MinObserved => s.serialize_str("min-observed"),
            FStar::Known => s.serialize_str("known"),
        }
    }
}

impl<'de> Deserialize<'de> for FStar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(v) => Ok(FStar::Constant(v)),
            Raw::Word(w) if w == "min-observed" => Ok(FStar::MinObserved),
            Raw::Word(w) if w == "known" => Ok(FStar::Known),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected a number (e.g. 0 or 5.23853e-4), `min-observed` or `known`, got {w:?}"
            ))),
        }
    }
}

/// The (alpha, beta) grid of `ab_grid.parquet` and the heat maps; ranges not
/// given frame the exact region.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// [lo, hi] of alpha.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<[f64; 2]>,
    /// [lo, hi] of beta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<[f64; 2]>,
    /// Points per axis.
    #[serde(default = "default_grid_points")]
    pub points: u64,
}

fn default_grid_points() -> u64 {
    101
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            alpha: None,
            beta: None,
            points: default_grid_points(),
        }
    }
}

/// How `abcond analyze` turns landscape rows into constants (not part of the
/// training identity: changing it never retrains).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// f_i*: a number (default 0), `min-observed`, or `known` (known-answer models).
    #[serde(default = "default_f_star")]
    pub f_star: FStar,
    /// The region is restricted to alpha ≥ beta + margin (the paper plots 0.1).
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Use only the minibatch i_k of each step (the paper's protocol), not the
    /// extra seeded minibatches too.
    #[serde(default)]
    pub train_only: bool,
    /// The exponents delta of the relaxed PL inequality.
    #[serde(default = "default_pl_deltas")]
    pub pl_deltas: Vec<f64>,
    #[serde(default)]
    pub grid: GridConfig,
    /// Write PNG/SVG figures and report.md.
    #[serde(default = "default_true")]
    pub plots: bool,
}

fn default_f_star() -> FStar {
    FStar::Constant(0.0)
}
fn default_margin() -> f64 {
    0.1
}
fn default_pl_deltas() -> Vec<f64> {
    vec![1.0, 1.25, 1.5, 1.75, 2.0]
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            f_star: default_f_star(),
            margin: default_margin(),
            train_only: false,
            pl_deltas: default_pl_deltas(),
            grid: GridConfig::default(),
            plots: true,
        }
    }
}

impl AnalysisConfig {
    /// Range checks.
    pub fn validate(&self) -> Result<()> {
        if let FStar::Constant(v) = self.f_star {
            if !v.is_finite() {
                bail!("key `analysis.f_star` must be finite, got {v}");
            }
        }
        if !(self.margin.is_finite() && self.margin > 0.0) {
            bail!(
                "key `analysis.margin` must be a positive number (alpha ≥ beta + margin), got {}",
                self.margin
            );
        }
        if self.pl_deltas.is_empty() {
            bail!("key `analysis.pl_deltas` must list at least one exponent, e.g. [1, 2]");
        }
        for d in &self.pl_deltas {
            positive("analysis.pl_deltas", *d)?;
        }
        if !(2..=2001).contains(&self.grid.points) {
            bail!(
                "key `analysis.grid.points` must be between 2 and 2001, got {}",
                self.grid.points
            );
        }
        for (k, r) in [("alpha", self.grid.alpha), ("beta", self.grid.beta)] {
            if let Some([lo, hi]) = r {
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    bail!(
                        "key `analysis.grid.{k}` must be [lo, hi] with lo < hi, got [{lo}, {hi}]"
                    );
                }
            }
        }
        Ok(())
    }
}

/// Reads `path`, applies the `--set` overrides and resolves defaults.
pub fn load(path: &Path, overrides: &[String]) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    from_yaml_text(&text, &path.display().to_string(), &base_dir, overrides)
}

/// Parses a config from YAML text; `source` names it in errors and `base_dir`
/// anchors relative preset paths. A config that declares a `sweep` is a family
/// of runs: load one of them with [`crate::sweep::Sweep`] instead.
pub fn from_yaml_text(
    text: &str,
    source: &str,
    base_dir: &Path,
    overrides: &[String],
) -> Result<Config> {
    let tree = parse_tree(text, source)?;
    if let Some(sweep) = tree.get(crate::sweep::SWEEP_KEY) {
        let runs = sweep
            .as_mapping()
            .map(|m| {
                m.values()
                    .map(|v| v.as_sequence().map_or(1, Vec::len))
                    .product::<usize>()
            })
            .unwrap_or(0);
        bail!(
            "{source} declares a sweep ({runs} runs): choose one with --task N (0-based; default $SLURM_ARRAY_TASK_ID) or all with --all; `abcond sweep {source} --list` lists them"
        );
    }
    from_tree(tree, source, base_dir, overrides, &[])
}

/// Reads YAML text into a tree whose top level is a mapping.
pub fn parse_tree(text: &str, source: &str) -> Result<Value> {
    let tree: Value =
        serde_yaml::from_str(text).with_context(|| format!("{source}: not valid YAML"))?;
    if !tree.is_mapping() {
        bail!("{source}: expected a mapping of settings at the top level (experiment, seed, model, data, train, optim, …)");
    }
    Ok(tree)
}

// --- sweep support: `from_tree` takes the swept values ---
/// Builds a config from a YAML tree: the swept `key = value` pairs are set
/// first (as `--set` would), then the `--set` overrides, then the model preset
/// is merged, the tree deserialised and the result resolved. Errors name the
/// key and whether it came from `sweep` or `--set`.
pub fn from_tree(
    mut tree: Value,
    source: &str,
    base_dir: &Path,
    overrides: &[String],
    swept: &[(String, Value)],
) -> Result<Config> {
    for (key, value) in swept {
        set_path(&mut tree, key, value.clone())
            .with_context(|| format!("{source}: applying sweep key `{key}`"))?;
    }
    let mut set_keys = Vec::new();
    for o in overrides {
        let key = apply_override(&mut tree, o).with_context(|| format!("applying --set {o}"))?;
        set_keys.push(key);
    }
    merge_model_preset(&mut tree, source, base_dir)?;
    let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let from = |k: &String| path == *k || path.starts_with(&format!("{k}."));
        let note = if set_keys.iter().any(from) {
            " (the key comes from --set)"
        } else if swept.iter().map(|(k, _)| k).any(from) {
            " (the key comes from `sweep`)"
        } else {
            ""
        };
        anyhow!("{source}: key `{path}`{note}: {}", e.inner())
    })?;
    config
        .resolve()
        .with_context(|| format!("{source}: invalid configuration"))
}

/// Applies one `key.path=value` override to the YAML tree and returns the key.
/// The value is parsed as YAML (so `0.05`, `true`, `[1, 2]` get their types).
pub fn apply_override(tree: &mut Value, assignment: &str) -> Result<String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("expected key.path=value, e.g. --set optim.lr=0.05"))?;
    let key = key.trim();
    let value: Value = serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()));
    set_path(tree, key, value)?;
    Ok(key.to_string())
}

/// Sets the dotted `key` of the YAML tree to `value`, creating sections on the way.
pub fn set_path(tree: &mut Value, key: &str, value: Value) -> Result<()> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("`{key}` is not a key path; expected e.g. optim.lr");
    }
    let mut node = tree;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = node.as_mapping_mut().ok_or_else(|| {
            anyhow!(
                "`{}` is not a section, cannot set `{key}`",
                parts[..i].join(".")
            )
        })?;
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        if !map.contains_key(&k) {
            map.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        node = map.get_mut(&k).unwrap();
    }
    unreachable!()
}

/// Names of the built-in presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// Replaces `model: {preset: NAME, …}` by the preset's settings overlaid with the
/// given ones. NAME is a built-in preset or a path to a YAML file.
fn merge_model_preset(tree: &mut Value, source: &str, base_dir: &Path) -> Result<()> {
    let Some(model) = tree.get_mut("model") else {
        return Ok(());
    };
    let Some(map) = model.as_mapping_mut() else {
        bail!("{source}: key `model`: expected a mapping such as {{preset: mlp, width: 128}}");
    };
    let Some(preset) = map.get("preset").cloned() else {
        return Ok(());
    };
    let name = preset
        .as_str()
        .ok_or_else(|| {
            anyhow!("{source}: key `model.preset`: expected a preset name or a .yaml path")
        })?
        .to_string();
    let (text, origin) = if name.ends_with(".yaml") || name.ends_with(".yml") {
        let p = base_dir.join(&name);
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{source}: key `model.preset`: reading preset file {}",
                p.display()
            )
        })?;
        (text, p.display().to_string())
    } else {
        let text = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| {
                anyhow!(
                    "{source}: key `model.preset`: unknown preset `{name}`; built-in presets: {} (or give a path to a .yaml file)",
                    preset_names().join(", ")
                )
            })?;
        (text, format!("built-in preset {name}"))
    };
    let mut merged: Value =
        serde_yaml::from_str(&text).with_context(|| format!("{origin}: not valid YAML"))?;
    let merged_map = merged
        .as_mapping_mut()
        .ok_or_else(|| anyhow!("{origin}: expected a mapping of model settings"))?;
    for (k, v) in map.iter() {
        merged_map.insert(k.clone(), v.clone());
    }
    *map = merged_map.clone();
    Ok(())
}

/// Fails when an option that does not apply to `what` is set.
fn only(section: &str, what: &str, set: &[(&str, bool)], allowed: &[&str]) -> Result<()> {
    for (key, is_set) in set {
        if *is_set && !allowed.contains(key) {
            bail!(
                "key `{section}.{key}` does not apply to {what}; its settings are: {}",
                allowed.join(", ")
            );
        }
    }
    Ok(())
}

fn positive(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("key `{name}` must be a positive number, got {v}");
    }
    Ok(())
}

impl Config {
    /// Checks that every option applies and is in range, and fills all defaults.
    pub fn resolve(mut self) -> Result<Config> {
        if self.experiment.is_empty()
            || !self
                .experiment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || self.experiment.starts_with('.')
        {
            bail!(
                "key `experiment` must be a directory-safe name (letters, digits, '-', '_', '.'), got {:?}",
                self.experiment
            );
        }
        crate::device::parse(&self.device).context("key `device`")?;
        self.analysis.validate()?;
        self.resolve_model()?;
        self.resolve_data()?;
        self.resolve_train()?;
        self.resolve_optim()?;
        self.resolve_schedule()?;
        if self.snapshots.every.is_none()
            && self.snapshots.log_spaced.is_none()
            && self.snapshots.at.is_empty()
        {
            self.snapshots.log_spaced = Some(30);
        }
        if self.snapshots.every == Some(0) {
            bail!("key `snapshots.every` must be at least 1");
        }
        let p = &self.probe;
        if p.chunk_size == 0 {
            bail!("key `probe.chunk_size` must be at least 1");
        }
        if p.full_subset == Some(0) {
            bail!("key `probe.full_subset` must be at least 1 (or absent for all data)");
        }
        // With batch statistics a forward pass over a chunk normalises by that
        // chunk: a minibatch split into chunks would not be the f_i step k used.
        if self.model.kind.has_batchnorm()
            && p.batchnorm == BatchNormPolicy::BatchStats
            && p.chunk_size < self.train.batch_size
        {
            bail!(
                "key `probe.chunk_size` ({}) must be at least `train.batch_size` ({}) for model kind `{}` under `probe.batchnorm: batch-stats`: BatchNorm would normalise each chunk by its own statistics",
                p.chunk_size,
                self.train.batch_size,
                self.model.kind.name()
            );
        }
        p.curvature.validate()?;
        self.resolve_probe_reference()?;
        Ok(self)
    }

    fn resolve_model(&mut self) -> Result<()> {
        let m = &mut self.model;
        let set = [
            ("width", m.width.is_some()),
            ("lambda", m.lambda.is_some()),
            ("rank", m.rank.is_some()),
            ("init_std", m.init_std.is_some()),
            ("init", m.init.is_some()),
            ("init_box", m.init_box.is_some()),
            ("dim", m.dim.is_some()),
            ("components", m.components.is_some()),
            ("depth", m.depth.is_some()),
            ("heads", m.heads.is_some()),
            ("mlp_dim", m.mlp_dim.is_some()),
            ("patch_size", m.patch_size.is_some()),
            ("dropout", m.dropout.is_some()),
        ];
        let what = format!("model kind `{}`", m.kind.name());
        match m.kind {
            ModelKind::Mlp | ModelKind::TwoLayerRelu => {
                only("model", &what, &set, &["width", "dtype", "preset"])?;
                let default = if m.kind == ModelKind::Mlp { 128 } else { 64 };
                let w = *m.width.get_or_insert(default);
                if w < 1 {
                    bail!("key `model.width` must be at least 1, got {w}");
                }
            }
            ModelKind::Cnn => {
                only("model", &what, &set, &["width", "dtype", "preset"])?;
                let w = *m.width.get_or_insert(64);
                if w < 1 {
                    bail!("key `model.width` must be at least 1, got {w}");
                }
            }
            ModelKind::Resnet9 | ModelKind::Resnet18 | ModelKind::Resnet34 => {
                only("model", &what, &set, &["dtype", "preset"])?;
            }
            ModelKind::Halfspace => {
                only(
                    "model",
                    &what,
                    &set,
                    &["lambda", "init_std", "dtype", "preset"],
                )?;
                let l = *m.lambda.get_or_insert(1e-5);
                if !(l.is_finite() && l >= 0.0) {
                    bail!("key `model.lambda` must be ≥ 0, got {l}");
                }
                positive("model.init_std", *m.init_std.get_or_insert(1.0))?;
            }
            ModelKind::MatrixFactorisation => {
                only(
                    "model",
                    &what,
                    &set,
                    &["rank", "init_std", "dtype", "preset"],
                )?;
                let r = *m.rank.get_or_insert(3);
                if r < 1 {
                    bail!("key `model.rank` must be at least 1, got {r}");
                }
                positive("model.init_std", *m.init_std.get_or_insert(0.3))?;
            }
            ModelKind::Resnet50 => {
                only("model", &what, &set, &["width", "dtype", "preset"])?;
                let w = *m.width.get_or_insert(64);
                if w < 1 {
                    bail!("key `model.width` must be at least 1, got {w}");
                }
            }
            ModelKind::Vit => {
                only(
                    "model",
                    &what,
                    &set,
                    &[
                        "width",
                        "depth",
                        "heads",
                        "mlp_dim",
                        "patch_size",
                        "dropout",
                        "dtype",
                        "preset",
                    ],
                )?;
                // Defaults: ViT-S/16 (models/vit-s16.yaml).
                let w = *m.width.get_or_insert(384);
                let depth = *m.depth.get_or_insert(12);
                let heads = *m.heads.get_or_insert(6);
                let mlp = *m.mlp_dim.get_or_insert(1536);
                let patch = *m.patch_size.get_or_insert(16);
                if w < 1 || depth < 1 || heads < 1 || mlp < 1 || patch < 1 {
                    bail!("keys `model.width`, `model.depth`, `model.heads`, `model.mlp_dim`, `model.patch_size` must be at least 1");
                }
                if w % heads != 0 || w % 4 != 0 {
                    bail!("key `model.width` ({w}) must be a multiple of 4 (2-D sin-cos positions) and of `model.heads` ({heads})");
                }
                let d = *m.dropout.get_or_insert(0.0);
                if !(0.0..1.0).contains(&d) {
                    bail!("key `model.dropout` must be in [0, 1), got {d}");
                }
            }
            ModelKind::Transformer => {
                only(
                    "model",
                    &what,
                    &set,
                    &[
                        "width", "depth", "heads", "mlp_dim", "dropout", "dtype", "preset",
                    ],
                )?;
                // Defaults: AlgoPerf's WMT Transformer (models/transformer-wmt.yaml).
                let w = *m.width.get_or_insert(1024);
                let depth = *m.depth.get_or_insert(6);
                let heads = *m.heads.get_or_insert(16);
                let mlp = *m.mlp_dim.get_or_insert(1024);
                if w < 1 || depth < 1 || heads < 1 || mlp < 1 {
                    bail!("keys `model.width`, `model.depth`, `model.heads`, `model.mlp_dim` must be at least 1");
                }
                if w % heads != 0 || w % 2 != 0 || w < 4 {
                    bail!("key `model.width` ({w}) must be even, at least 4 (sinusoidal positions) and a multiple of `model.heads` ({heads})");
                }
                let d = *m.dropout.get_or_insert(0.0);
                if !(0.0..1.0).contains(&d) {
                    bail!("key `model.dropout` must be in [0, 1), got {d}");
                }
            }
            ModelKind::Example1
            | ModelKind::Example2
            | ModelKind::Example3
            | ModelKind::Example6
            | ModelKind::Example1Nd
            | ModelKind::Example6Nd => {
                let mut allowed = vec!["init", "init_box", "dtype", "preset"];
                match m.kind {
                    ModelKind::Example1Nd => allowed.extend(["dim", "components"]),
                    ModelKind::Example6Nd => allowed.push("dim"),
                    _ => {}
                }
                only("model", &what, &set, &allowed)?;
                // The known answers are checked to 1e-10 and beyond: always f64.
                m.dtype = Dtype::F64;
                let (d, n) = match m.kind {
                    ModelKind::Example1Nd => {
                        (*m.dim.get_or_insert(2), *m.components.get_or_insert(2))
                    }
                    ModelKind::Example6Nd => (*m.dim.get_or_insert(2), 2),
                    _ => (2, 2),
                };
                if d < 1 || n < 1 {
                    bail!("keys `model.dim` and `model.components` must be at least 1, got {d} and {n}");
                }
                let [lo, hi] = *m.init_box.get_or_insert([-1.0, 2.0]);
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    bail!("key `model.init_box` must be [lo, hi] with lo < hi, got [{lo}, {hi}]");
                }
                if let Some(x0) = &m.init {
                    if x0.len() as i64 != d || x0.iter().any(|v| !v.is_finite()) {
                        bail!(
                            "key `model.init` must list {d} finite numbers (x^0 of {what} in R^{d}), got {x0:?}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The number of components n of a known-answer model.
    pub fn known_components(&self) -> Option<i64> {
        match self.model.kind {
            ModelKind::Example1Nd => Some(self.model.components.unwrap_or(2)),
            k if k.is_known_answer() => Some(2),
            _ => None,
        }
    }

    fn resolve_data(&mut self) -> Result<()> {
        let d = &mut self.data;
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
        let known = self.known_components();
        let d = &mut self.data;
        match (known, d.dataset) {
            (Some(n), DatasetKind::Components) => {
                if d.components.is_some_and(|c| c != n) {
                    bail!(
                        "key `data.components` is {} but model kind `{}` has {n} components (the key is filled in from the model; leave it out)",
                        d.components.unwrap(),
                        self.model.kind.name()
                    );
                }
                d.components = Some(n);
            }
            (Some(_), ds) => bail!(
                "model kind `{}` is a known-answer problem: its data are its component indices, set `data.dataset: components` (got `{}`)",
                self.model.kind.name(),
                ds.name()
            ),
            (None, DatasetKind::Components) => bail!(
                "dataset `components` only goes with the known-answer model kinds ({}), not `{}`",
                KNOWN_KINDS.join(", "),
                self.model.kind.name()
            ),
            _ => {}
        }
        let binary_model = matches!(
            self.model.kind,
            ModelKind::TwoLayerRelu | ModelKind::Halfspace
        );
        match (self.model.kind, self.data.dataset) {
            (ModelKind::MatrixFactorisation, DatasetKind::MatrixFactorisation) => {}
            (ModelKind::MatrixFactorisation, ds) | (_, ds @ DatasetKind::MatrixFactorisation) => {
                bail!(
                    "model kind `{}` cannot be trained on dataset `{}`: matrix-factorisation models and data only go together",
                    self.model.kind.name(),
                    ds.name()
                );
            }
            (ModelKind::Transformer, DatasetKind::SyntheticTranslation) => {}
            (ModelKind::Transformer, ds) | (_, ds @ DatasetKind::SyntheticTranslation) => {
                bail!(
                    "model kind `{}` cannot be trained on dataset `{}`: the transformer and token data (synthetic-translation) only go together",
                    self.model.kind.name(),
                    ds.name()
                );
            }
            (ModelKind::Mlp, DatasetKind::Halfspace) => {
                bail!("model kind `mlp` needs class labels; dataset `halfspace` has ±1 labels (use model kind halfspace or two-layer-relu)");
            }
            _ => {}
        }
        let vision_model = matches!(
            self.model.kind,
            ModelKind::Cnn | ModelKind::Resnet9 | ModelKind::Resnet18 | ModelKind::Resnet34
        );
        let image_data = matches!(
            self.data.dataset,
            DatasetKind::FashionMnist
                | DatasetKind::Mnist
                | DatasetKind::Cifar10
                | DatasetKind::Cifar100
        );
        if vision_model && !image_data {
            bail!(
                "model kind `{}` is a convolutional network and needs image data (cifar10, cifar100, mnist, fashion-mnist), not `{}`",
                self.model.kind.name(),
                self.data.dataset.name()
            );
        }
        if binary_model
            && matches!(
                self.data.dataset,
                DatasetKind::FashionMnist
                    | DatasetKind::Mnist
                    | DatasetKind::Cifar10
                    | DatasetKind::Cifar100
            )
            && self.data.classes.as_ref().map(Vec::len) != Some(2)
        {
            bail!(
                "model kind `{}` is a binary classifier: set `data.classes` to two classes, e.g. [0, 6]",
                self.model.kind.name()
            );
        }
        Ok(())
    }

    fn resolve_train(&mut self) -> Result<()> {
        let t = &self.train;
        if t.batch_size == 0 {
            bail!("key `train.batch_size` must be at least 1");
        }
        match (t.steps, t.epochs) {
            (Some(0), _) | (_, Some(0)) => {
                bail!("key `train.steps`/`train.epochs` must be at least 1")
            }
            (Some(_), Some(_)) => {
                bail!("keys `train.steps` and `train.epochs` are exclusive: set one")
            }
            (None, None) => bail!("set the length of training: `train.steps` or `train.epochs`"),
            _ => {}
        }
        if t.checkpoint_every == Some(0) {
            bail!("key `train.checkpoint_every` must be at least 1");
        }
        positive("train.checkpoint_minutes", t.checkpoint_minutes)?;
        if !(t.checkpoint_min_seconds.is_finite() && t.checkpoint_min_seconds >= 0.0) {
            bail!(
                "key `train.checkpoint_min_seconds` must be a number of seconds ≥ 0 (0: a checkpoint at every snapshot step), got {}",
                t.checkpoint_min_seconds
            );
        }
        // Both only change f32 arithmetic: autocast never lowers f64, and TF32
        // replaces f32 products only.
        if self.model.dtype == Dtype::F64 {
            if let Some(a) = t.autocast {
                bail!(
                    "key `train.autocast` ({}) applies to f32 models only (autocast never lowers f64 operations), but model.dtype is f64; remove the key or set model.dtype: f32",
                    a.name()
                );
            }
            if t.allow_tf32 {
                bail!("key `train.allow_tf32` applies to f32 models only (TF32 replaces f32 products), but model.dtype is f64; remove the key or set model.dtype: f32");
            }
        }
        Ok(())
    }

    fn resolve_optim(&mut self) -> Result<()> {
        let o = &mut self.optim;
        positive("optim.lr", o.lr)?;
        let set = [
            ("momentum", o.momentum.is_some()),
            ("dampening", o.dampening.is_some()),
            ("nesterov", o.nesterov.is_some()),
            ("betas", o.betas.is_some()),
            ("eps", o.eps.is_some()),
            ("momentum_decay", o.momentum_decay.is_some()),
            ("decoupled_weight_decay", o.decoupled_weight_decay.is_some()),
            ("momentum_power", o.momentum_power.is_some()),
            ("c", o.c.is_some()),
            ("c_power", o.c_power.is_some()),
            ("f_star", o.f_star.is_some()),
            ("b0", o.b0.is_some()),
            ("weight_decay_exclude", !o.weight_decay_exclude.is_empty()),
        ];
        let what = format!("optimiser `{}`", o.name.name());
        // torch.optim defaults: AdamW decays by 0.01, SGD and Adam not at all;
        // AlgoPerf's NAdamW by 0.01 too. The paper's step-size methods and
        // normalised SGD have no weight decay.
        let decays = !(o.name.is_adaptive_step() || o.name == OptimName::NormalizedSgd);
        if !decays && o.weight_decay.is_some_and(|wd| wd != 0.0) {
            bail!("key `optim.weight_decay` does not apply to {what} (its update has no weight decay term)");
        }
        let wd = *o.weight_decay.get_or_insert(
            if matches!(o.name, OptimName::Adamw | OptimName::Nadamw) {
                1e-2
            } else {
                0.0
            },
        );
        if !(wd.is_finite() && wd >= 0.0) {
            bail!("key `optim.weight_decay` must be ≥ 0, got {wd}");
        }
        let mut allowed: Vec<&str> = match o.name {
            OptimName::Sgd => vec!["momentum", "dampening", "nesterov"],
            OptimName::Adam | OptimName::Adamw | OptimName::Nadamw => vec!["betas", "eps"],
            OptimName::Nadam => vec!["betas", "eps", "momentum_decay", "decoupled_weight_decay"],
            OptimName::NormalizedSgd => vec!["momentum_power"],
            OptimName::SpsMax => vec!["c", "f_star"],
            OptimName::DecSps => vec!["c", "c_power", "f_star"],
            OptimName::Ngn => vec![],
            OptimName::AdagradNormMax => vec!["b0"],
        };
        if decays {
            allowed.push("weight_decay_exclude");
        }
        only("optim", &what, &set, &allowed)?;
        match o.name {
            OptimName::Sgd => {
                let m = *o.momentum.get_or_insert(0.0);
                let d = *o.dampening.get_or_insert(0.0);
                let n = *o.nesterov.get_or_insert(false);
                if !(0.0..1.0).contains(&m) {
                    bail!("key `optim.momentum` must be in [0, 1), got {m}");
                }
                if !(0.0..=1.0).contains(&d) {
                    bail!("key `optim.dampening` must be in [0, 1], got {d}");
                }
                if n && (m <= 0.0 || d != 0.0) {
                    bail!("Nesterov momentum needs optim.momentum > 0 and optim.dampening = 0 (as in torch.optim.SGD)");
                }
            }
            OptimName::Adam | OptimName::Adamw | OptimName::Nadam | OptimName::Nadamw => {
                let [b1, b2] = *o.betas.get_or_insert([0.9, 0.999]);
                if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
                    bail!("key `optim.betas` must be two numbers in [0, 1), got [{b1}, {b2}]");
                }
                if o.name == OptimName::Nadamw && b1 == 0.0 {
                    bail!("key `optim.betas`: nadamw needs beta1 > 0 (AlgoPerf's update divides by it)");
                }
                positive("optim.eps", *o.eps.get_or_insert(1e-8))?;
                if o.name == OptimName::Nadam {
                    let psi = *o.momentum_decay.get_or_insert(0.004);
                    if !(psi.is_finite() && psi >= 0.0) {
                        bail!("key `optim.momentum_decay` must be ≥ 0, got {psi}");
                    }
                    o.decoupled_weight_decay.get_or_insert(false);
                }
            }
            OptimName::NormalizedSgd => {
                positive("optim.momentum_power", *o.momentum_power.get_or_insert(0.5))?;
            }
            OptimName::SpsMax | OptimName::DecSps => {
                let default_c = if o.name == OptimName::SpsMax {
                    0.5
                } else {
                    1.0
                };
                positive("optim.c", *o.c.get_or_insert(default_c))?;
                let fs = *o.f_star.get_or_insert(0.0);
                if !fs.is_finite() {
                    bail!("key `optim.f_star` must be a finite number, got {fs}");
                }
                if o.name == OptimName::DecSps {
                    let p = *o.c_power.get_or_insert(0.5);
                    if !(p.is_finite() && p >= 0.0) {
                        bail!("key `optim.c_power` must be ≥ 0 (c_k must not decrease), got {p}");
                    }
                }
            }
            OptimName::Ngn => {}
            OptimName::AdagradNormMax => {
                let b0 = *o.b0.get_or_insert(0.0);
                if !(b0.is_finite() && b0 >= 0.0) {
                    bail!("key `optim.b0` must be ≥ 0, got {b0}");
                }
            }
        }
        let mut ex = o.weight_decay_exclude.clone();
        ex.sort_by_key(|e| *e as u8);
        ex.dedup();
        o.weight_decay_exclude = ex;
        Ok(())
    }

    fn resolve_schedule(&mut self) -> Result<()> {
        let s = &mut self.schedule;
        let set = [
            ("floor", s.floor.is_some()),
            ("pct_start", s.pct_start.is_some()),
            ("div_factor", s.div_factor.is_some()),
            ("final_div_factor", s.final_div_factor.is_some()),
            ("warmup_fraction", s.warmup_fraction.is_some()),
            ("warmup_steps", s.warmup_steps.is_some()),
            ("power", s.power.is_some()),
        ];
        match s.name {
            ScheduleName::Constant => only("schedule", "schedule `constant`", &set, &[])?,
            ScheduleName::Cosine => {
                only("schedule", "schedule `cosine`", &set, &["floor"])?;
                s.floor.get_or_insert(0.0);
            }
            ScheduleName::OneCycle => {
                only(
                    "schedule",
                    "schedule `one-cycle`",
                    &set,
                    &["pct_start", "div_factor", "final_div_factor"],
                )?;
                let p = *s.pct_start.get_or_insert(0.3);
                if !(p > 0.0 && p < 1.0) {
                    bail!("key `schedule.pct_start` must be in (0, 1), got {p}");
                }
                positive("schedule.div_factor", *s.div_factor.get_or_insert(25.0))?;
                positive(
                    "schedule.final_div_factor",
                    *s.final_div_factor.get_or_insert(1e4),
                )?;
            }
            ScheduleName::WarmupCosine => {
                only(
                    "schedule",
                    "schedule `warmup-cosine`",
                    &set,
                    &["floor", "warmup_fraction", "warmup_steps"],
                )?;
                s.floor.get_or_insert(0.0);
                match (s.warmup_fraction, s.warmup_steps) {
                    (Some(_), Some(_)) => bail!(
                        "keys `schedule.warmup_fraction` and `schedule.warmup_steps` are exclusive"
                    ),
                    (None, None) => s.warmup_fraction = Some(0.05),
                    (Some(f), None) if !(0.0..1.0).contains(&f) => {
                        bail!("key `schedule.warmup_fraction` must be in [0, 1), got {f}")
                    }
                    _ => {}
                }
            }
            ScheduleName::InversePower => {
                only("schedule", "schedule `inverse-power`", &set, &["power"])?;
                let p = *s.power.get_or_insert(0.5);
                if !(p.is_finite() && p >= 0.0) {
                    bail!("key `schedule.power` must be ≥ 0, got {p}");
                }
            }
            ScheduleName::Polynomial => {
                only(
                    "schedule",
                    "schedule `polynomial`",
                    &set,
                    &["power", "floor"],
                )?;
                s.floor.get_or_insert(0.0);
                positive("schedule.power", *s.power.get_or_insert(1.0))?;
            }
        }
        if self.optim.name == OptimName::DecSps && s.name != ScheduleName::Constant {
            bail!(
                "optimiser `decsps` decays its step size itself (c_k = c (k+1)^c_power) and takes optim.lr as gamma_b; set schedule.name to constant (got {})",
                serde_yaml::to_string(&s.name).unwrap_or_default().trim()
            );
        }
        if let Some(f) = s.floor {
            if !(f.is_finite() && f >= 0.0 && f <= self.optim.lr) {
                bail!("key `schedule.floor` must be in [0, optim.lr], got {f}");
            }
        }
        Ok(())
    }

    /// The resolved config as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("config serialises")
    }

    /// Everything that determines the training trajectory and what is saved of
    /// it, as YAML: the config without `device`, `data.path`, `probe` and
    /// checkpoint cadence.
    pub fn training_identity(&self) -> String {
        let mut c = self.clone();
        c.device = String::new();
        // Where the data lives does not change the trajectory (moving the files
        // must not orphan a run); what the data is, is checked separately.
        c.data.path = None;
        c.probe = ProbeConfig::default();
        c.train.checkpoint_every = None;
        c.train.checkpoint_minutes = default_checkpoint_minutes();
        // Analysis settings never change the trajectory; dropping the key keeps
        // run ids of configs written before it existed. The same for the
        // checkpoint floor (cadence, and newer than the first run ids).
        // `shift_remove`: the other keys keep their order (`remove` would move
        // the last key into the gap, and the id hashes the text).
        let mut tree = serde_yaml::to_value(&c).expect("config serialises");
        if let Some(m) = tree.as_mapping_mut() {
            m.shift_remove("analysis");
            if let Some(t) = m.get_mut("train").and_then(|t| t.as_mapping_mut()) {
                t.shift_remove("checkpoint_min_seconds");
            }
        }
        serde_yaml::to_string(&tree).expect("config serialises")
    }

    /// Default run id: the seed and a hash of the training identity, so that the
    /// same config always maps to the same run directory (and resumes there).
    pub fn default_run_id(&self) -> String {
        format!(
            "seed{}-{:08x}",
            self.seed,
            fnv1a64(self.training_identity().as_bytes()) as u32
        )
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

impl Config {
    /// `probe.reference: projection` and `probe.cloud` need a model that knows
    /// its minimiser set S; a cloud always measures against Proj(x, S).
    fn resolve_probe_reference(&mut self) -> Result<()> {
        let known = self.model.kind.is_known_answer();
        let p = &mut self.probe;
        for (key, used) in [
            ("probe.cloud", p.cloud.is_some()),
            ("probe.reference", p.reference == Reference::Projection),
        ] {
            if used && !known {
                bail!(
                    "key `{key}`{}: model kind `{}` does not know its minimiser set S, so Proj(x, S) cannot be computed; the kinds that support it are {} (use `probe.reference: final` for x^K)",
                    if key == "probe.reference" { ": projection" } else { "" },
                    self.model.kind.name(),
                    KNOWN_KINDS.join(", ")
                );
            }
        }
        if let Some(c) = &p.cloud {
            if p.curvature.enabled {
                bail!("key `probe.curvature` does not apply to `probe.cloud` (the cloud has no snapshots to take Hessians at); disable one of them");
            }
            if c.points == 0 {
                bail!("key `probe.cloud.points` must be at least 1");
            }
            let [lo, hi] = c.bounds;
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                bail!("key `probe.cloud.box` must be [lo, hi] with lo < hi, got [{lo}, {hi}]");
            }
            p.reference = Reference::Projection;
        }
        Ok(())
    }
}

/// FNV-1a, 64 bit: a stable hash (std's hashers are not stable across releases).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Lists the keys whose values differ between two configs (dotted paths).
pub fn diff_keys(a: &Config, b: &Config) -> Vec<String> {
    let va = serde_yaml::to_value(a).unwrap();
    let vb = serde_yaml::to_value(b).unwrap();
    let mut out = Vec::new();
    diff_values("", &va, &vb, &mut out);
    out
}

fn diff_values(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Mapping(ma), Value::Mapping(mb)) => {
            let mut keys: Vec<String> = ma
                .keys()
                .chain(mb.keys())
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let na = ma.get(k.as_str()).unwrap_or(&Value::Null);
                let nb = mb.get(k.as_str()).unwrap_or(&Value::Null);
                diff_values(&key, na, nb, out);
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Where a run directory lives.
pub fn run_dir(out: &Path, experiment: &str, run_id: &str) -> PathBuf {
    out.join(experiment).join(run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "experiment: t\nmodel: {preset: mlp}\ndata: {dataset: fashion-mnist}\ntrain: {batch_size: 8, steps: 10}\noptim: {name: sgd, lr: 0.1}\n";

    /// New optional settings must not change the run ids of existing configs
    /// (README quotes this one; results of earlier versions keep their place).
    #[test]
    fn shipped_configs_keep_their_run_ids() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = load(&root.join("configs/quickstart.yaml"), &[]).unwrap();
        assert_eq!(c.default_run_id(), "seed0-5f20edb5");
    }

    /// A config with every optional `train` key: its id, computed by the build
    /// before `train.checkpoint_min_seconds` existed (99b2f4c), must not move
    /// whatever the floor.
    #[test]
    fn run_ids_predating_the_checkpoint_floor_are_kept() {
        let text = "experiment: rid\nmodel: {preset: mlp, width: 8}\ndata: {dataset: fashion-mnist, subset: 100}\ntrain: {batch_size: 8, steps: 2, allow_tf32: true, autocast: bf16}\noptim: {name: sgd, lr: 0.1}\n";
        for set in [&[][..], &["train.checkpoint_min_seconds=0"][..]] {
            let c = parse(text, set).unwrap();
            assert_eq!(c.default_run_id(), "seed0-edfb3340", "{set:?}");
        }
        // At its default the key is not written (older builds can read run.yaml).
        let c = parse(text, &[]).unwrap();
        assert!(!c.to_yaml().contains("checkpoint_min_seconds"));
        let c = parse(text, &["train.checkpoint_min_seconds=0"]).unwrap();
        assert!(c.to_yaml().contains("checkpoint_min_seconds: 0"));
    }

    /// Every BatchNorm model (ResNet-50 included) refuses chunks smaller than the
    /// batch under batch-stats: each chunk would be normalised on its own.
    #[test]
    fn batchnorm_models_need_whole_batches_per_chunk() {
        for (preset, data) in [
            ("resnet18", "{dataset: cifar10}"),
            ("resnet50", "{dataset: imagefolder, path: /tmp}"),
        ] {
            let text = format!("experiment: t\nmodel: {{preset: {preset}}}\ndata: {data}\ntrain: {{batch_size: 64, steps: 10}}\noptim: {{name: sgd, lr: 0.1}}\nprobe: {{chunk_size: 32}}\n");
            let msg = format!("{:#}", parse(&text, &[]).unwrap_err());
            assert!(msg.contains("probe.chunk_size"), "{preset}: {msg}");
            assert!(parse(&text, &["probe.chunk_size=64"]).is_ok(), "{preset}");
            assert!(
                parse(&text, &["probe.batchnorm=running-stats"]).is_ok(),
                "{preset}"
            );
        }
    }

    #[test]
    fn known_answer_data_take_no_subset() {
        let base = "experiment: t\nmodel: {kind: example6}\ndata: {dataset: components}\ntrain: {batch_size: 1, steps: 10}\noptim: {name: sgd, lr: 0.1}\n";
        assert!(parse(base, &[]).is_ok());
        let msg = format!("{:#}", parse(base, &["data.subset=1"]).unwrap_err());
        assert!(msg.contains("data.subset"), "{msg}");
    }

    fn parse(text: &str, sets: &[&str]) -> Result<Config> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        from_yaml_text(text, "test.yaml", Path::new("."), &sets)
    }

    #[test]
    fn preset_and_overrides_resolve() {
        let c = parse(
            BASE,
            &[
                "optim.lr=0.05",
                "seed=3",
                "model.width=512",
                "optim.momentum=0.9",
            ],
        )
        .unwrap();
        assert_eq!(c.optim.lr, 0.05);
        assert_eq!(c.seed, 3);
        assert_eq!(c.model.kind, ModelKind::Mlp);
        assert_eq!(c.model.width, Some(512));
        assert_eq!(c.optim.momentum, Some(0.9));
        assert_eq!(c.optim.nesterov, Some(false));
        assert_eq!(c.snapshots.log_spaced, Some(30));
        // the resolved YAML parses back to the same config
        let again = parse(&c.to_yaml(), &[]).unwrap();
        assert_eq!(again, c);
    }

    /// The WMT preset resolves to AlgoPerf's size with the token data's
    /// defaults written out; keys of other data sets are refused.
    #[test]
    fn transformer_preset_and_token_data_resolve() {
        let text = "experiment: t
model: {preset: transformer-wmt}
data: {dataset: synthetic-translation}
train: {batch_size: 8, steps: 2}
optim: {name: sgd, lr: 0.1}
";
        let c = parse(text, &[]).unwrap();
        let m = &c.model;
        assert_eq!(m.kind, ModelKind::Transformer);
        assert_eq!(
            (m.width, m.depth, m.heads, m.mlp_dim, m.dropout),
            (Some(1024), Some(6), Some(16), Some(1024), Some(0.0))
        );
        let d = &c.data;
        assert_eq!(
            (d.examples, d.seq_len, d.vocab),
            (Some(1024), Some(32), Some(32_000))
        );
        assert_eq!(parse(&c.to_yaml(), &[]).unwrap(), c);
        let msg = format!("{:#}", parse(text, &["data.per_class=3"]).unwrap_err());
        assert!(msg.contains("data.per_class"), "{msg}");
        let msg = format!(
            "{:#}",
            parse(text, &["model.width=30", "model.heads=4"]).unwrap_err()
        );
        assert!(msg.contains("multiple of `model.heads` (4)"), "{msg}");
        // Other data sets do not take the token keys (their run ids are unchanged).
        let msg = format!("{:#}", parse(BASE, &["data.vocab=10"]).unwrap_err());
        assert!(msg.contains("data.vocab"), "{msg}");
    }

    #[test]
    fn unknown_key_names_key_file_and_valid_keys() {
        let err = parse(&BASE.replace("lr: 0.1", "lr: 0.1, lrr: 2"), &[]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("test.yaml"), "{msg}");
        assert!(msg.contains("optim.lrr"), "{msg}");
        assert!(
            msg.contains("`momentum`") && msg.contains("`weight_decay`"),
            "{msg}"
        );
        let err = parse(BASE, &["train.bach_size=3"]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("train.bach_size") && msg.contains("--set"),
            "{msg}"
        );
    }

    #[test]
    fn inapplicable_keys_are_rejected() {
        let msg = format!(
            "{:#}",
            parse(BASE, &["optim.betas=[0.9, 0.99]"]).unwrap_err()
        );
        assert!(msg.contains("optim.betas") && msg.contains("sgd"), "{msg}");
        let msg = format!("{:#}", parse(BASE, &["model.rank=3"]).unwrap_err());
        assert!(msg.contains("model.rank") && msg.contains("width"), "{msg}");
        let msg = format!("{:#}", parse(BASE, &["train.epochs=3"]).unwrap_err());
        assert!(msg.contains("exclusive"), "{msg}");
        let msg = format!("{:#}", parse(BASE, &["model.preset=nope"]).unwrap_err());
        assert!(
            msg.contains("unknown preset") && msg.contains("mlp"),
            "{msg}"
        );
    }

    #[test]
    fn defaults_follow_torch_optim() {
        let c = parse(BASE, &["optim.name=adamw"]).unwrap();
        assert_eq!(c.optim.weight_decay, Some(0.01));
        assert_eq!(c.optim.betas, Some([0.9, 0.999]));
        assert_eq!(c.optim.eps, Some(1e-8));
        let c = parse(BASE, &["optim.name=adam"]).unwrap();
        assert_eq!(c.optim.weight_decay, Some(0.0));
        let c = parse(BASE, &[]).unwrap();
        assert_eq!(
            (c.optim.momentum, c.optim.nesterov),
            (Some(0.0), Some(false))
        );
        let c = parse(
            BASE,
            &["model.preset=two-layer-relu", "data.classes=[0, 1]"],
        )
        .unwrap();
        assert_eq!(c.model.width, Some(64));
    }

    /// `train.allow_tf32` and `train.autocast`: defaults keep run ids (they
    /// are not serialised), set values change them (they change the
    /// trajectory), and the errors name the key and the allowed values.
    #[test]
    fn precision_keys_of_training() {
        let plain = parse(BASE, &[]).unwrap();
        assert_eq!(plain.train.autocast, None);
        assert!(!plain.train.allow_tf32);
        assert!(!plain.to_yaml().contains("autocast") && !plain.to_yaml().contains("allow_tf32"));
        let off = parse(BASE, &["train.allow_tf32=false"]).unwrap();
        assert_eq!(off.default_run_id(), plain.default_run_id());
        let tf32 = parse(BASE, &["train.allow_tf32=true"]).unwrap();
        let bf16 = parse(BASE, &["train.autocast=bf16"]).unwrap();
        assert_eq!(bf16.train.autocast, Some(AutocastDtype::Bf16));
        let ids = [&plain, &tf32, &bf16].map(|c| c.default_run_id());
        assert!(
            ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2],
            "{ids:?}"
        );
        assert_eq!(parse(&bf16.to_yaml(), &[]).unwrap(), bf16);

        let msg = format!("{:#}", parse(BASE, &["train.autocast=fp16"]).unwrap_err());
        assert!(
            msg.contains("train.autocast") && msg.contains("`bf16`"),
            "{msg}"
        );
        let msg = format!(
            "{:#}",
            parse(BASE, &["train.allow_tf32=yes please"]).unwrap_err()
        );
        assert!(msg.contains("train.allow_tf32"), "{msg}");
        let msg = format!(
            "{:#}",
            parse(BASE, &["train.autocast=bf16", "model.dtype=f64"]).unwrap_err()
        );
        assert!(
            msg.contains("train.autocast") && msg.contains("f64"),
            "{msg}"
        );
        let msg = format!(
            "{:#}",
            parse(BASE, &["train.allow_tf32=true", "model.dtype=f64"]).unwrap_err()
        );
        assert!(
            msg.contains("train.allow_tf32") && msg.contains("f64"),
            "{msg}"
        );
    }

    #[test]
    fn checkpoint_floor_defaults_and_is_checked() {
        assert_eq!(parse(BASE, &[]).unwrap().train.checkpoint_min_seconds, 10.0);
        assert_eq!(
            parse(BASE, &["train.checkpoint_min_seconds=0"])
                .unwrap()
                .train
                .checkpoint_min_seconds,
            0.0
        );
        for bad in ["-1", ".nan", ".inf"] {
            let msg = format!(
                "{:#}",
                parse(BASE, &[&format!("train.checkpoint_min_seconds={bad}")]).unwrap_err()
            );
            assert!(msg.contains("train.checkpoint_min_seconds"), "{bad}: {msg}");
        }
    }

    #[test]
    fn run_id_ignores_probe_and_device() {
        let a = parse(BASE, &[]).unwrap();
        let b = parse(
            BASE,
            &[
                "probe.extra_batches=7",
                "device=cpu",
                "data.path=/moved/data",
                "train.checkpoint_every=5",
                "train.checkpoint_minutes=1",
                "train.checkpoint_min_seconds=0",
            ],
        )
        .unwrap();
        let c = parse(BASE, &["seed=1"]).unwrap();
        let d = parse(BASE, &["optim.lr=0.2"]).unwrap();
        assert_eq!(a.default_run_id(), b.default_run_id());
        assert_ne!(a.default_run_id(), c.default_run_id());
        assert_ne!(a.default_run_id(), d.default_run_id());
        assert!(c.default_run_id().starts_with("seed1-"));
        assert_eq!(diff_keys(&a, &d), vec!["optim.lr".to_string()]);
    }
}

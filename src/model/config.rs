//! The `model:` section of a config: the architecture kind and its size,
//! with each kind's defaults and checks. A preset (models/*.yaml) is merged
//! into this section before it is read (crate::config).

use crate::config::validate::{only, positive};
use crate::torch::dtype::Dtype;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Mlp,
    TwoLayerRelu,
    Halfspace,
    MatrixFactorisation,
    /// Known-answer problems of NOTES §5 (src/model/known): f64, parameter `x`,
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
    // --- CIFAR vision models (branch cifar) ---
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

/// The model kinds whose minimiser set S is known (projection reference, cloud).
pub const KNOWN_KINDS: [&str; 6] = [
    "example1",
    "example2",
    "example3",
    "example6",
    "example1-nd",
    "example6-nd",
];

impl ModelConfig {
    /// Checks that every key applies to the kind and is in range, and fills
    /// in the kind's defaults.
    pub(crate) fn resolve(&mut self) -> Result<()> {
        let m = self;
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
        match self.kind {
            ModelKind::Example1Nd => Some(self.components.unwrap_or(2)),
            k if k.is_known_answer() => Some(2),
            _ => None,
        }
    }
}

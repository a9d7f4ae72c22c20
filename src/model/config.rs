//! The `model:` section of a config: the parameters' dtype and the
//! architecture, one variant per `model.kind`, each with the settings struct
//! of its model file (candle style: `MlpConfig`, `VitConfig::s16()`, …) whose
//! `Default` is the one place of its defaults. A preset (models/*.yaml) is
//! merged into the section before it is read (crate::config).
//!
//! Adding an architecture: its file in src/model/ with a settings struct that
//! implements [`Settings`], one line in [`model_kinds!`] below, one arm in
//! [`crate::model::Model::build`], and a preset in models/.

use crate::config::validate::{read_keys, to_keys, NoSettings, Settings};
use crate::model::{cnn, halfspace, known, matfact, mlp, resnet50, transformer, two_layer, vit};
use crate::torch::dtype::Dtype;
use anyhow::Result;
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
    Mlp = "mlp" => mlp::MlpConfig,
    /// Two-layer ReLU network with logistic loss (Example 5).
    TwoLayerRelu = "two-layer-relu" => two_layer::TwoLayerConfig,
    /// The half-space learning problem (§5, Fig. 2).
    Halfspace = "halfspace" => halfspace::HalfspaceConfig,
    /// Matrix factorisation (Example 4).
    MatrixFactorisation = "matrix-factorisation" => matfact::MatFactConfig,
    /// Known-answer problems (src/model/known): f64, parameter `x`, one
    /// example per component f_i.
    Example1 = "example1" => known::KnownConfig,
    Example2 = "example2" => known::KnownConfig,
    Example3 = "example3" => known::KnownConfig,
    Example6 = "example6" => known::KnownConfig,
    /// Example 1 with n components in R^d: f_i = g(1ᵀx + i), g(s) = s²/(1+s²).
    Example1Nd = "example1-nd" => known::Example1NdConfig,
    /// Example 6 with two centres in R^d: f_i = r_i²/(1+r_i²), r_i = ||x − c_i||.
    Example6Nd = "example6-nd" => known::Example6NdConfig,
    /// The paper's CNN (§5.2): two conv layers (max-pool + ReLU each), one linear.
    Cnn = "cnn" => cnn::CnnConfig,
    /// ResNet9 (DAWNBench/Myrtle layout), the paper's CIFAR-100 model (§5.3).
    Resnet9 = "resnet9" => NoSettings,
    /// ResNet18, CIFAR form (3×3 stem, stride 1, no max-pool).
    Resnet18 = "resnet18" => NoSettings,
    /// ResNet34, CIFAR form.
    Resnet34 = "resnet34" => NoSettings,
    /// ResNet-50 (torchvision layout, AlgoPerf imagenet_resnet).
    Resnet50 = "resnet50" => resnet50::ResNet50Config,
    /// Vision Transformer (AlgoPerf imagenet_vit; ViT-S/16 by default).
    Vit = "vit" => vit::VitConfig,
    /// Encoder-decoder Transformer of AlgoPerf's wmt workload.
    Transformer = "transformer" => transformer::TransformerConfig,
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
        self.arch.check()
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

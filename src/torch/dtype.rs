//! The floating-point types a run names: the model's parameters and data
//! (`model.dtype`) and the lower precision of `train.autocast`.

use serde::{Deserialize, Serialize};

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

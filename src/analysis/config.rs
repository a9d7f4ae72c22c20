//! The `analysis:` section of a config: f_i*, the margin alpha − beta, the
//! rows used, PL exponents, the heat-map grid and figures.

use crate::config::validate::positive;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

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

/// The axes of the grid and the heat maps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GridAxes {
    /// alpha (log scale) across, the gap alpha − beta (log scale) up: a
    /// region hugging the diagonal beta = alpha − margin, as trained networks
    /// give, has area at every scale, and beta = alpha − 1 is the line gap = 1.
    Gap,
    /// alpha across, beta up, both linear (the paper's figures).
    AlphaBeta,
}

/// The (alpha, beta) grid of `ab_grid.parquet` and the heat maps; ranges not
/// given frame the exact region.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// `gap` (default) or `alpha-beta` (the default when `beta` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axes: Option<GridAxes>,
    /// [lo, hi] of alpha.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<[f64; 2]>,
    /// [lo, hi] of beta (`alpha-beta` axes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<[f64; 2]>,
    /// [lo, hi] of the gap alpha − beta (`gap` axes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<[f64; 2]>,
    /// Points per axis.
    #[serde(default = "default_grid_points")]
    pub points: u64,
}

fn default_grid_points() -> u64 {
    101
}

impl GridConfig {
    /// The axes in effect: as configured, else `alpha-beta` when a beta range
    /// is given, else `gap`.
    pub fn effective_axes(&self) -> GridAxes {
        self.axes.unwrap_or(if self.beta.is_some() {
            GridAxes::AlphaBeta
        } else {
            GridAxes::Gap
        })
    }
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            axes: None,
            alpha: None,
            beta: None,
            gap: None,
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
    #[serde(default = "crate::probe::config::default_true")]
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
        let axes = self.grid.effective_axes();
        for (k, r) in [
            ("alpha", self.grid.alpha),
            ("beta", self.grid.beta),
            ("gap", self.grid.gap),
        ] {
            if let Some([lo, hi]) = r {
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    bail!(
                        "key `analysis.grid.{k}` must be [lo, hi] with lo < hi, got [{lo}, {hi}]"
                    );
                }
                if axes == GridAxes::Gap && k != "beta" && lo <= 0.0 {
                    bail!(
                        "key `analysis.grid.{k}` must be [lo, hi] with 0 < lo on the log-scaled `gap` axes, got [{lo}, {hi}] (or set `analysis.grid.axes: alpha-beta` for linear alpha and beta axes)"
                    );
                }
            }
        }
        match axes {
            GridAxes::Gap if self.grid.beta.is_some() => bail!(
                "key `analysis.grid.beta` applies to `analysis.grid.axes: alpha-beta`; on the `gap` axes give `analysis.grid.gap: [lo, hi]` (alpha − beta) instead"
            ),
            GridAxes::AlphaBeta if self.grid.gap.is_some() => bail!(
                "key `analysis.grid.gap` applies to `analysis.grid.axes: gap`; on the `alpha-beta` axes give `analysis.grid.beta: [lo, hi]` instead"
            ),
            _ => {}
        }
        Ok(())
    }
}

//! A known-answer problem as the config names it: its components and its
//! minimiser set S.

use super::component::{radial, Component, Profile, Shape, G};
use super::minimisers;
use crate::model::config::{Arch, ModelConfig, ModelKind};
use anyhow::{bail, Result};

/// A known-answer problem: its components and its minimiser set S.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: ModelKind,
    pub dim: usize,
    pub components: Vec<Component>,
    pub minimisers: minimisers::Minimisers,
}

/// What a known-answer model config fixes: x^0 (or the box it is drawn
/// from), the dimension d and the number of components n.
pub(crate) struct Start<'a> {
    pub init: Option<&'a [f64]>,
    pub init_box: [f64; 2],
    pub dim: usize,
    pub components: usize,
}

/// The [`Start`] of a known-answer model config; None for other kinds.
pub(crate) fn start_of(cfg: &ModelConfig) -> Option<Start<'_>> {
    fn start(init: &Option<Vec<f64>>, init_box: [f64; 2], dim: usize, n: usize) -> Start<'_> {
        Start {
            init: init.as_deref(),
            init_box,
            dim,
            components: n,
        }
    }
    match &cfg.arch {
        Arch::Example1(s) | Arch::Example2(s) | Arch::Example3(s) | Arch::Example6(s) => {
            Some(start(&s.init, s.init_box, 2, 2))
        }
        Arch::Example1Nd(s) => Some(start(
            &s.init,
            s.init_box,
            s.dim as usize,
            s.components as usize,
        )),
        Arch::Example6Nd(s) => Some(start(&s.init, s.init_box, s.dim as usize, 2)),
        _ => None,
    }
}

impl Problem {
    /// The problem of a known-answer model kind (dimension and components
    /// from the resolved config).
    pub fn new(cfg: &ModelConfig) -> Result<Problem> {
        let kind = cfg.kind();
        let Some(Start {
            dim: d,
            components: n,
            ..
        }) = start_of(cfg)
        else {
            bail!("model kind `{}` is not a known-answer problem", kind.name());
        };
        let components = match kind {
            ModelKind::Example1 | ModelKind::Example1Nd => (0..n)
                .map(|i| Component {
                    shape: Shape::Ridge {
                        normal: vec![1.0; d],
                        shift: i as f64,
                    },
                    profile: G,
                })
                .collect(),
            ModelKind::Example2 => vec![
                radial(&[0.0, 0.0], Profile::Gaussian),
                radial(&[2.0, 2.0], Profile::Gaussian),
            ],
            // The paper's printed denominator of f_2 is a misprint; r²/(1+r²)
            // reproduces the paper's numbers.
            ModelKind::Example3 => vec![
                radial(&[0.0, 0.0], Profile::Rational { p: 1.0, q: 4.0 }),
                radial(&[2.5, 2.5], G),
            ],
            ModelKind::Example6 => vec![radial(&[0.0, 0.0], G), radial(&[1.0, 1.0], G)],
            ModelKind::Example6Nd => vec![radial(&vec![0.0; d], G), radial(&vec![1.0; d], G)],
            other => bail!(
                "model kind `{}` is not a known-answer problem",
                other.name()
            ),
        };
        let dim = match &components[0].shape {
            Shape::Radial { centre } => centre.len(),
            Shape::Ridge { normal, .. } => normal.len(),
        };
        let minimisers = minimisers::Minimisers::compute(&components)?;
        Ok(Problem {
            kind,
            dim,
            components,
            minimisers,
        })
    }

    /// f(x) = (1/n) Σ f_i(x).
    pub fn value(&self, x: &[f64]) -> f64 {
        self.components.iter().map(|c| c.value(x)).sum::<f64>() / self.components.len() as f64
    }

    /// f* = f on S.
    pub fn f_star(&self) -> f64 {
        self.value(&self.project(&vec![0.0; self.dim]))
    }

    /// The exact minimum of the minibatch loss (1/|I|) Σ_{i in I} f_i: the
    /// component's φ(0) for one component, else the value on the minimiser
    /// set of the sub-problem (None when that set is not known).
    pub fn minibatch_min(&self, indices: &[i64]) -> Option<f64> {
        let sub: Vec<Component> = indices
            .iter()
            .map(|&i| self.components.get(i as usize).cloned())
            .collect::<Option<_>>()?;
        if let [one] = sub.as_slice() {
            return Some(one.minimum());
        }
        let s = minimisers::Minimisers::compute(&sub).ok()?;
        let x = s.project(&vec![0.0; self.dim]);
        Some(sub.iter().map(|c| c.value(&x)).sum::<f64>() / sub.len() as f64)
    }

    /// Proj(x, S) (see [`minimisers::Minimisers::project`] for ties).
    pub fn project(&self, x: &[f64]) -> Vec<f64> {
        self.minimisers.project(x)
    }
}

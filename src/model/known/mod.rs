//! Known-answer problems (docs/theory.md, Known-answer problems): small f64
//! functions f = (1/n) Σ f_i whose
//! minimiser set S is known, so the probe can measure against the exact
//! projection Proj(x, S) instead of the final iterate x^K.
//!
//! Every component has the form f_i(x) = φ_i(u_i(x)) with
//!   u_i = ||x − c_i||²        (radial, centre c_i), or
//!   u_i = (aᵀx + b_i)²        (ridge, normal a shared by all components),
//!   φ_i(u) = (p + u)/(q + u)  (rational, 0 ≤ p < q), or 1 − exp(−u) (gaussian),
//! so every φ_i is increasing in u and f_i* = φ_i(0). The examples:
//!
//! | kind | components | S |
//! |---|---|---|
//! | example1 | g(x + y), g(x + y + 1), g(s) = s²/(1+s²) | the line x + y = −1/2 |
//! | example2 | 1 − exp(−r²) at (0,0) and (2,2) | two points on the diagonal |
//! | example3 | (1+r²)/(4+r²) at (0,0), r²/(1+r²) at (2.5,2.5) | one point |
//! | example6 | r²/(1+r²) at (0,0) and (1,1) | two points on the diagonal |
//! | example1-nd | g(1ᵀx + i), i = 0..n−1, x in R^d | a hyperplane (or several on ties) |
//! | example6-nd | r²/(1+r²) at 0 and 1 = (1,…,1) in R^d | two points on the diagonal |
//!
//! The two *-nd kinds are our reading of the paper's Remark 1, whose text we
//! do not have (see README). S is computed in [`minimisers`].
//!
//! The parameter is one tensor `x` of shape [d]; an example is a component
//! index i (int64), so a minibatch is a set of components.

pub mod minimisers;

use super::net::{Mode, Net};
use crate::config::validate::{at_least_one, Settings};
use crate::data::Batch;
use crate::model::config::{Arch, ModelConfig, ModelKind};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn::Path;
use tch::{Kind, Tensor};

/// φ: how a component turns u into a loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// (p + u)/(q + u), 0 ≤ p < q.
    Rational { p: f64, q: f64 },
    /// 1 − exp(−u).
    Gaussian,
}

impl Profile {
    pub fn value(self, u: f64) -> f64 {
        match self {
            Profile::Rational { p, q } => (p + u) / (q + u),
            Profile::Gaussian => -(-u).exp_m1(),
        }
    }
    /// dφ/du.
    pub fn slope(self, u: f64) -> f64 {
        match self {
            Profile::Rational { p, q } => (q - p) / ((q + u) * (q + u)),
            Profile::Gaussian => (-u).exp(),
        }
    }
}

/// u: the squared distance to a centre, or a squared affine function.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Radial { centre: Vec<f64> },
    Ridge { normal: Vec<f64>, shift: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub shape: Shape,
    pub profile: Profile,
}

impl Component {
    /// u(x) and ∇u(x).
    fn u(&self, x: &[f64]) -> (f64, Vec<f64>) {
        match &self.shape {
            Shape::Radial { centre } => {
                let diff: Vec<f64> = x.iter().zip(centre).map(|(a, c)| a - c).collect();
                let u = diff.iter().map(|d| d * d).sum();
                (u, diff.iter().map(|d| 2.0 * d).collect())
            }
            Shape::Ridge { normal, shift } => {
                let s: f64 = x.iter().zip(normal).map(|(a, n)| a * n).sum::<f64>() + shift;
                (s * s, normal.iter().map(|n| 2.0 * s * n).collect())
            }
        }
    }
    pub fn value(&self, x: &[f64]) -> f64 {
        self.profile.value(self.u(x).0)
    }
    pub fn grad(&self, x: &[f64]) -> Vec<f64> {
        let (u, du) = self.u(x);
        let s = self.profile.slope(u);
        du.iter().map(|d| s * d).collect()
    }
    /// f_i* = φ(0) (u = 0 is attained: at the centre, or on the ridge's hyperplane).
    pub fn minimum(&self) -> f64 {
        self.profile.value(0.0)
    }
}

/// A known-answer problem: its components and its minimiser set S.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: ModelKind,
    pub dim: usize,
    pub components: Vec<Component>,
    pub minimisers: minimisers::Minimisers,
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
    fn check(&self, what: &str) -> anyhow::Result<()> {
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
    fn check(&self, what: &str) -> anyhow::Result<()> {
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
    fn check(&self, what: &str) -> anyhow::Result<()> {
        at_least_one("model.dim", self.dim)?;
        check_start(&self.init, self.init_box, self.dim, what)
    }
}

/// x^0 and its box: a box with lo < hi, and `init` of length d, finite.
fn check_start(
    init: &Option<Vec<f64>>,
    init_box: [f64; 2],
    d: i64,
    what: &str,
) -> anyhow::Result<()> {
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

/// What a known-answer model config fixes: x^0 (or the box it is drawn
/// from), the dimension d and the number of components n.
struct Start<'a> {
    init: Option<&'a [f64]>,
    init_box: [f64; 2],
    dim: usize,
    components: usize,
}

/// The [`Start`] of a known-answer model config; None for other kinds.
fn start_of(cfg: &ModelConfig) -> Option<Start<'_>> {
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

fn radial(centre: &[f64], profile: Profile) -> Component {
    Component {
        shape: Shape::Radial {
            centre: centre.to_vec(),
        },
        profile,
    }
}

const G: Profile = Profile::Rational { p: 0.0, q: 1.0 };

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

/// The model: parameter `x` and the components as tensors, evaluated with the
/// same formulas as [`Component`] so that autograd gives ∇f_i.
pub struct KnownNet {
    x: Tensor,
    pub problem: Problem,
    /// [n, d] centres (radial) or normals (ridge).
    points: Tensor,
    /// [n] ridge shifts.
    shifts: Tensor,
    /// [n] 1 for radial components, 0 for ridge.
    radial: Tensor,
    /// [n] 1 for gaussian profiles, 0 for rational.
    gaussian: Tensor,
    p: Tensor,
    q: Tensor,
}

impl KnownNet {
    /// x^0 is `init` when given, else uniform in `init_box`^d from the global
    /// torch generator (seeded by the caller with the run seed).
    pub fn new(p: &Path, cfg: &ModelConfig) -> Result<KnownNet> {
        let problem = Problem::new(cfg)?;
        let d = problem.dim as i64;
        let opts = (Kind::Double, p.device());
        let Start { init, init_box, .. } = start_of(cfg).expect("a known-answer kind");
        let x0 = match init {
            Some(v) => Tensor::from_slice(v)
                .to_kind(Kind::Double)
                .to_device(p.device()),
            None => {
                let [lo, hi] = init_box;
                tch::no_grad(|| Tensor::empty([d], opts).uniform_(lo, hi))
            }
        };
        let x = p.add("x", x0, true);
        let mut points = Vec::new();
        let mut shifts = Vec::new();
        let mut radial = Vec::new();
        let mut gaussian = Vec::new();
        let (mut ps, mut qs) = (Vec::new(), Vec::new());
        for c in &problem.components {
            match &c.shape {
                Shape::Radial { centre } => {
                    points.extend_from_slice(centre);
                    shifts.push(0.0);
                    radial.push(1.0);
                }
                Shape::Ridge { normal, shift } => {
                    points.extend_from_slice(normal);
                    shifts.push(*shift);
                    radial.push(0.0);
                }
            }
            match c.profile {
                Profile::Rational { p, q } => {
                    gaussian.push(0.0);
                    ps.push(p);
                    qs.push(q);
                }
                Profile::Gaussian => {
                    gaussian.push(1.0);
                    ps.push(0.0);
                    qs.push(1.0);
                }
            }
        }
        let t = |v: &[f64]| Tensor::from_slice(v).to_device(p.device());
        let n = problem.components.len() as i64;
        Ok(KnownNet {
            x,
            points: t(&points).view([n, d]),
            shifts: t(&shifts),
            radial: t(&radial),
            gaussian: t(&gaussian),
            p: t(&ps),
            q: t(&qs),
            problem,
        })
    }
}

impl Net for KnownNet {
    fn to_device(&mut self, device: tch::Device) {
        for t in [
            &mut self.points,
            &mut self.shifts,
            &mut self.radial,
            &mut self.gaussian,
            &mut self.p,
            &mut self.q,
        ] {
            *t = t.to_device(device);
        }
    }

    fn per_example_loss(&self, batch: &Batch, _mode: Mode) -> Tensor {
        let i = batch.x.select(1, 0);
        let pts = self.points.index_select(0, &i); // B × d
        let radial = self.radial.index_select(0, &i);
        let gaussian = self.gaussian.index_select(0, &i);
        let u_radial = (&self.x - &pts)
            .square()
            .sum_dim_intlist(1, false, Kind::Double);
        let s = pts.mv(&self.x) + self.shifts.index_select(0, &i);
        let u = &radial * u_radial + (1.0 - &radial) * s.square();
        let p = self.p.index_select(0, &i);
        let q = self.q.index_select(0, &i);
        let rational = (p + &u) / (q + &u);
        // 1 − e^(−u) without cancellation at small u (Example 2's f_i on S ~ 1e-6).
        let gauss = -(-&u).expm1();
        &gaussian * gauss + (1.0 - &gaussian) * rational
    }

    fn known(&self) -> Option<&Problem> {
        Some(&self.problem)
    }
}

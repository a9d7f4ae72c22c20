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

pub mod component;
pub mod minimisers;
pub mod problem;

pub use component::{Component, Profile, Shape};
pub use problem::Problem;

use super::net::{Mode, Net};
use crate::data::Batch;
use crate::model::config::ModelConfig;
use crate::model::net::BatchNormPolicy;
use anyhow::Result;
use problem::{start_of, Start};
use tch::nn::Path;
use tch::{Kind, Tensor};

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
    // The mode changes nothing in this net.
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        true
    }

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

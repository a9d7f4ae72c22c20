//! Curvature, part of phase 2 (probe): the extreme eigenvalues of the Hessian
//! ∇²f_i(x^k) of a probe loss (the minibatch i_k, the extra seeded minibatches,
//! the full data f) at each probed snapshot, by power iteration on
//! Hessian-vector products. Enabled by `probe.curvature`; written to
//! `curvature.parquet`, resumably per snapshot like the landscape rows
//! (`curvature-parts/step=<k>.parquet`).
//!
//! - Hv is double backward: g = ∇f_i(x) with a graph (create_graph), then
//!   ∇<g, v> = Hv, over all parameters as one vector x. For the full data,
//!   f = (1/n) Σ_chunks Σ_{i in chunk} f_i and Hv is the sum of the chunks'
//!   Hessian-vector products (`probe.chunk_size` examples each), accumulated in
//!   f64. The losses are evaluated in measurement mode (dropout off, BatchNorm
//!   per `probe.batchnorm`), as the probe evaluates them.
//! - Power iteration from a seeded Gaussian start vector (a pure function of
//!   run seed, step and probe): v ← Hv/||Hv||, eigenvalue estimate the Rayleigh
//!   quotient <v, Hv>; it stops when the estimate changes by at most `tol`
//!   relative to itself, or after `iterations` products. Vectors, inner
//!   products and norms are kept in f64; only the product Hv is computed in the
//!   model dtype.
//! - It converges to the eigenvalue of **largest magnitude**, reported with its
//!   sign: away from a minimum it can be negative. Its magnitude is the
//!   spectral norm ||∇²f_i(x^k)||, the local smoothness constant L at x^k. The
//!   top algebraic eigenvalue lambda_max differs when the largest-magnitude one
//!   is negative; with `both_ends` (default) a second power iteration on
//!   H − λ·I (whose eigenvalues λ_j − λ all have the sign opposite to λ, the
//!   largest magnitude at the other end of the spectrum) gives the other end,
//!   so both lambda_max and lambda_min are reported. Its accuracy is absolute,
//!   about tol·|λ|, so a small other end is known only to that precision.
//! - The residual ||Hv − λv||/|λ| of the last iterate tells how well the pair
//!   is resolved (for the other end it is divided by the largest |λ| too).

use super::batch::{Batches, ProbeBatch};
use crate::config::{Config, CurvatureProbe};
use crate::data::augment::AugmentAt;
use crate::data::Dataset;
use crate::model::{Mode, Model};
use crate::run::{Manifest, RunDir};
use crate::store::tables::{self, CurvatureRow};
use crate::torch::reduce;
use anyhow::{Context, Result};
use tch::{Kind, Tensor};

/// The Hessian of Σ_j term(j) with respect to `params`, applied to vectors.
pub struct Hessian<'a> {
    params: Vec<Tensor>,
    terms: usize,
    term: Box<dyn Fn(usize) -> Tensor + 'a>,
}

impl<'a> Hessian<'a> {
    /// `term(j)`, j < `terms`, builds a scalar loss with its autograd graph
    /// over `params` (which require gradients).
    pub fn new(params: Vec<Tensor>, terms: usize, term: impl Fn(usize) -> Tensor + 'a) -> Self {
        Hessian {
            params,
            terms,
            term: Box::new(term),
        }
    }

    /// The Hessian of the mean loss of `model` over the examples `indices`,
    /// `chunk` examples per term, augmented as training step `at` saw them
    /// (None: un-augmented), as the probe measures the loss.
    pub fn of_loss(
        model: &'a Model,
        data: &'a Dataset,
        indices: &'a [i64],
        chunk: usize,
        mode: Mode,
        at: Option<AugmentAt>,
    ) -> Hessian<'a> {
        let params: Vec<Tensor> = model.params().into_iter().map(|(_, t)| t).collect();
        let chunk = chunk.max(1);
        let n = indices.len() as f64;
        Hessian::new(params, indices.len().div_ceil(chunk), move |j| {
            let part = &indices[j * chunk..((j + 1) * chunk).min(indices.len())];
            let per = model.per_example_loss(&data.batch_for(part, at), mode);
            per.sum(per.kind()) / n
        })
    }

    /// H v for `v` shaped like the parameters (any float kind); the result is
    /// f64, the terms' products summed in f64.
    pub fn apply(&self, v: &[Tensor]) -> Vec<Tensor> {
        let kind = self.params[0].kind();
        let vk: Vec<Tensor> = v.iter().map(|t| t.to_kind(kind).detach()).collect();
        let mut acc: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| Tensor::zeros(p.size(), (Kind::Double, p.device())))
            .collect();
        for j in 0..self.terms {
            let loss = (self.term)(j);
            if !loss.requires_grad() {
                continue;
            }
            let grads = Tensor::run_backward(&[&loss], &self.params, true, true);
            // <g, v>; a parameter the loss does not use, or whose gradient does
            // not depend on x, contributes nothing to Hv.
            let dot = grads
                .iter()
                .zip(&vk)
                .filter(|(g, _)| g.defined() && g.requires_grad())
                .map(|(g, v)| (g * v).sum(kind))
                .reduce(|a, b| a + b);
            let Some(dot) = dot else { continue };
            let hv = Tensor::run_backward(&[&dot], &self.params, false, false);
            tch::no_grad(|| {
                for (a, h) in acc.iter_mut().zip(&hv) {
                    if h.defined() {
                        *a += h.to_kind(Kind::Double);
                    }
                }
            });
        }
        acc
    }
}

/// One eigenvalue found by power iteration.
#[derive(Debug)]
pub struct Eigen {
    /// The eigenvalue of H (shift added back).
    pub value: f64,
    pub iterations: u64,
    /// ||Hv − value·v|| at the last iterate v (unit norm), not yet divided.
    pub residual_norm: f64,
    pub converged: bool,
    /// The last iterate, unit norm, f64.
    pub vector: Vec<Tensor>,
}

fn norm(v: &[Tensor]) -> f64 {
    reduce::norm_sq(v).sqrt()
}

fn scale(v: &[Tensor], s: f64) -> Vec<Tensor> {
    v.iter().map(|t| t * s).collect()
}

/// Power iteration on A = H − shift·I from `start`: the eigenvalue of A of
/// largest magnitude, plus `shift`.
pub fn power_iteration(
    h: &Hessian,
    start: Vec<Tensor>,
    shift: f64,
    iterations: u64,
    tol: f64,
) -> Eigen {
    let n0 = tch::no_grad(|| norm(&start));
    let mut v = tch::no_grad(|| scale(&start, 1.0 / n0));
    let mut previous: Option<f64> = None;
    let mut out = Eigen {
        value: shift,
        iterations: 0,
        residual_norm: 0.0,
        converged: false,
        vector: Vec::new(),
    };
    for it in 1..=iterations {
        let hv = h.apply(&v);
        let (mu, residual, next) = tch::no_grad(|| {
            let w: Vec<Tensor> = hv
                .iter()
                .zip(&v)
                .map(|(a, b)| {
                    if shift != 0.0 {
                        a - b * shift
                    } else {
                        a.shallow_clone()
                    }
                })
                .collect();
            let mu = reduce::dot(&v, &w);
            let r: Vec<Tensor> = w.iter().zip(&v).map(|(a, b)| a - b * mu).collect();
            let w_norm = norm(&w);
            let next = (w_norm > 0.0).then(|| scale(&w, 1.0 / w_norm));
            (mu, norm(&r), next)
        });
        out.iterations = it;
        out.value = mu + shift;
        out.residual_norm = residual;
        // The Rayleigh quotient alone can stall at a value that is no
        // eigenvalue (v mixing ±|λ| in a fixed ratio); a stalled estimate counts
        // only when the residual says v is close to an eigenvector too.
        let stalled = previous.is_some_and(|p| (mu - p).abs() <= tol * mu.abs())
            && residual <= tol.sqrt() * mu.abs();
        previous = Some(mu);
        match next {
            // A v = 0: v is an eigenvector with eigenvalue 0 of A.
            None => {
                out.converged = true;
                break;
            }
            Some(next) if !stalled => v = next,
            Some(_) => {
                out.converged = true;
                break;
            }
        }
    }
    out.vector = v;
    out
}

/// A seeded standard-normal vector shaped like `params` (f64), a pure
/// function of (seed, tags).
pub fn start_vector(params: &[Tensor], seed: u64, tags: &[u64]) -> Vec<Tensor> {
    let mut all = vec![crate::util::rng::stream::CURVATURE_START];
    all.extend_from_slice(tags);
    let mut rng = crate::util::rng::Rng::for_stream(seed, &all);
    params
        .iter()
        .map(|p| {
            let n = p.numel();
            let vals: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            Tensor::from_slice(&vals)
                .reshape(p.size())
                .to_device(p.device())
        })
        .collect()
}

/// The spectrum ends of one Hessian.
#[derive(Debug)]
pub struct Extremes {
    pub top: Eigen,
    /// The other end (from H − top·I), with `both_ends`.
    pub other: Option<Eigen>,
}

impl Extremes {
    /// (lambda_max, lambda_min) where known.
    pub fn max_min(&self) -> (Option<f64>, Option<f64>) {
        let t = self.top.value;
        match &self.other {
            Some(o) => (Some(t.max(o.value)), Some(t.min(o.value))),
            None if t >= 0.0 => (Some(t), None),
            None => (None, Some(t)),
        }
    }

    pub fn hvps(&self) -> u64 {
        self.top.iterations + self.other.as_ref().map_or(0, |o| o.iterations)
    }
}

/// The eigenvalue of largest magnitude of H and, with `both_ends`, the other
/// end of the spectrum. `seed` and `tags` fix the start vectors.
pub fn extremes(
    h: &Hessian,
    seed: u64,
    tags: &[u64],
    iterations: u64,
    tol: f64,
    both_ends: bool,
) -> Extremes {
    let top = power_iteration(h, start_vector(&h.params, seed, tags), 0.0, iterations, tol);
    let other = (both_ends && top.value != 0.0).then(|| {
        let mut t2 = tags.to_vec();
        t2.push(1);
        // Start orthogonal to the top eigenvector: its eigenvalue under the
        // shift is ~0, the one the shifted iteration should not find.
        let s = start_vector(&h.params, seed, &t2);
        let s = tch::no_grad(|| {
            let c = reduce::dot(&s, &top.vector);
            s.iter()
                .zip(&top.vector)
                .map(|(a, b)| a - b * c)
                .collect::<Vec<_>>()
        });
        power_iteration(h, s, top.value, iterations, tol)
    });
    Extremes { top, other }
}

/// The curvature rows of snapshot k, loaded in `model`: the Hessian
/// extremes of each loss `probe.curvature.probes` names (the `train`
/// minibatch, the extra minibatches, the full data), in that order.
pub fn rows(
    model: &Model,
    data: &Dataset,
    cfg: &Config,
    manifest: &Manifest,
    k: u64,
    batches: &mut Batches,
) -> Result<Vec<CurvatureRow>> {
    let p = &cfg.probe;
    let c = &p.curvature;
    let mode = Mode::Measure(p.batchnorm);
    let chunk = p.chunk_size as usize;
    let mut losses: Vec<ProbeBatch> = Vec::new();
    for which in &c.probes {
        match which {
            // x^K has no step of its own: no `train` loss there.
            CurvatureProbe::Train => losses.extend(batches.train(k)?),
            CurvatureProbe::Extra => {
                for j in 0..p.extra_batches {
                    losses.push(batches.extra(k, j));
                }
            }
            CurvatureProbe::Full => losses.push(batches.full().clone()),
        }
    }
    let mut rows = Vec::new();
    for b in &losses {
        // As in the landscape pass: the `train` minibatch with step k's augmentation.
        let h = Hessian::of_loss(model, data, &b.indices, chunk, mode, b.augment);
        let e = extremes(
            &h,
            cfg.seed,
            &[k, b.curvature_tag()],
            c.iterations,
            c.tol,
            c.both_ends,
        );
        let top = e.top.value.abs();
        let (lambda_max, lambda_min) = e.max_min();
        rows.push(CurvatureRow {
            experiment: manifest.experiment.clone(),
            run_id: manifest.run_id.clone(),
            seed: cfg.seed as i64,
            step: k as i64,
            probe: b.label,
            batch_size: b.indices.len() as i64,
            eigenvalue: e.top.value,
            iterations: e.top.iterations as i64,
            residual: if top > 0.0 {
                e.top.residual_norm / top
            } else {
                0.0
            },
            converged: e.top.converged,
            lambda_max,
            lambda_min,
            other_iterations: e.other.as_ref().map(|o| o.iterations as i64),
            other_residual: e.other.as_ref().map(|o| o.residual_norm / top),
            other_converged: e.other.as_ref().map(|o| o.converged),
            hvps: e.hvps() as i64,
            batch_indices: b.row_indices(),
        });
    }
    Ok(rows)
}

/// What the curvature pass says before it starts.
pub fn describe(cfg: &Config, snapshots: usize) -> String {
    let c = &cfg.probe.curvature;
    format!(
        "curvature: {snapshots} snapshots, Hessian of {} by power iteration (≤ {} products, tol {:e}{})",
        c.probes
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", "),
        c.iterations,
        c.tol,
        if c.both_ends { ", both ends" } else { "" }
    )
}

/// Gathers the curvature parts of the `selected` snapshots into
/// `curvature.parquet` (atomically; returns its number of rows).
pub fn gather(dir: &RunDir, manifest: &Manifest, cfg: &Config, selected: &[u64]) -> Result<usize> {
    let p = &cfg.probe;
    let mut rows = Vec::new();
    for &k in selected {
        let (mut part, _) = tables::read_curvature(&dir.curvature_part(k))
            .with_context(|| format!("gathering the curvature part of snapshot step={k}"))?;
        rows.append(&mut part);
    }
    tables::write_curvature(
        &dir.curvature(),
        &rows,
        &[
            ("abcond.experiment", manifest.experiment.clone()),
            ("abcond.run_id", manifest.run_id.clone()),
            ("abcond.ref_step", manifest.training.total_steps.to_string()),
            ("abcond.dtype", cfg.model.dtype.name().to_string()),
            ("abcond.batchnorm", p.batchnorm.name().to_string()),
            (
                "abcond.curvature_settings",
                serde_yaml::to_string(&p.curvature)?,
            ),
        ],
    )?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Q diag(eigs) Qᵀ with Q a Householder reflection (dense, symmetric).
    fn symmetric(eigs: &[f64]) -> Tensor {
        let n = eigs.len() as i64;
        let u: Vec<f64> = (0..n).map(|i| 1.0 + 0.3 * i as f64).collect();
        let u = Tensor::from_slice(&u);
        let u = &u / u.norm();
        let q = Tensor::eye(n, (Kind::Double, Device::Cpu)) - u.outer(&u) * 2.0;
        q.matmul(&Tensor::from_slice(eigs).diag(0)).matmul(&q.tr())
    }

    /// f(x) = ½ zᵀ A z with z = (p1, p2 flattened), split into two terms
    /// (A = A/3 + 2A/3) so that the sum over terms is exercised too.
    fn quadratic(eigs: &[f64]) -> (Vec<Tensor>, Tensor) {
        let a = symmetric(eigs);
        let p1 = Tensor::from_slice(&[0.3f64, -1.0]).set_requires_grad(true);
        let n2 = eigs.len() as i64 - 2;
        let p2 = Tensor::linspace(-1.0, 2.0, n2, (Kind::Double, Device::Cpu))
            .reshape([n2, 1])
            .set_requires_grad(true);
        (vec![p1, p2], a)
    }

    fn check(eigs: &[f64], want_top: f64, want_max: f64, want_min: f64) {
        let (params, a) = quadratic(eigs);
        let (p1, p2) = (params[0].shallow_clone(), params[1].shallow_clone());
        let h = Hessian::new(params, 2, move |j| {
            let z = Tensor::cat(&[p1.shallow_clone(), p2.reshape([-1])], 0);
            let w = if j == 0 { 1.0 / 3.0 } else { 2.0 / 3.0 };
            z.dot(&a.mv(&z)) * (0.5 * w)
        });
        let e = extremes(&h, 7, &[1, 2], 2000, 1e-14, true);
        let rel = |x: f64, y: f64| (x - y).abs() / y.abs();
        assert!(e.top.converged, "{e:?}");
        assert!(
            rel(e.top.value, want_top) < 1e-12,
            "{} vs {want_top}",
            e.top.value
        );
        assert!(e.top.residual_norm / want_top.abs() < 1e-5, "{e:?}");
        let (mx, mn) = e.max_min();
        assert!(rel(mx.unwrap(), want_max) < 1e-10, "{mx:?} vs {want_max}");
        assert!(rel(mn.unwrap(), want_min) < 1e-10, "{mn:?} vs {want_min}");
        assert!(e.other.unwrap().converged);
    }

    #[test]
    fn quadratic_with_known_spectrum() {
        // positive definite: top = lambda_max
        check(&[4.0, 1.0, 0.5, 2.0, 3.0], 4.0, 4.0, 0.5);
        // indefinite, largest magnitude negative: top = lambda_min = −5
        check(&[-5.0, 3.0, 1.0, -0.5], -5.0, 3.0, -5.0);
        // indefinite, largest magnitude positive
        check(&[6.0, -2.0, 1.0, 0.0, -1.0], 6.0, 6.0, -2.0);
    }

    /// Eigenvalues +5 and −5: v keeps its mix of the two eigenvectors, so the
    /// Rayleigh quotient is constant from the first step at a value that is no
    /// eigenvalue. That must not count as converged.
    #[test]
    fn equal_magnitudes_of_opposite_sign_are_not_converged() {
        let (params, a) = quadratic(&[5.0, -5.0, 1.0]);
        let (p1, p2) = (params[0].shallow_clone(), params[1].shallow_clone());
        let h = Hessian::new(params, 1, move |_| {
            let z = Tensor::cat(&[p1.shallow_clone(), p2.reshape([-1])], 0);
            z.dot(&a.mv(&z)) * 0.5
        });
        let e = extremes(&h, 7, &[1, 2], 200, 1e-8, false);
        assert!(!e.top.converged, "{e:?}");
        assert_eq!(e.top.iterations, 200);
        // The residual tells: v is no eigenvector.
        assert!(e.top.residual_norm > 0.1, "{e:?}");
    }

    #[test]
    fn unused_parameters_and_zero_hessian() {
        // f = p1·c is linear: H = 0; p2 is not used at all.
        let p1 = Tensor::from_slice(&[1.0f64, 2.0]).set_requires_grad(true);
        let p2 = Tensor::from_slice(&[3.0f64]).set_requires_grad(true);
        let q = p1.shallow_clone();
        let h = Hessian::new(vec![p1, p2], 1, move |_| {
            q.dot(&Tensor::from_slice(&[0.5f64, -1.0]))
        });
        let e = extremes(&h, 0, &[0], 50, 1e-10, true);
        assert_eq!(e.top.value, 0.0);
        assert!(e.top.converged && e.other.is_none());
        // Same start vector for the same seed and tags: deterministic.
        let a = start_vector(&h.params, 3, &[5]);
        let b = start_vector(&h.params, 3, &[5]);
        assert_eq!(
            Vec::<f64>::try_from(&a[0]).unwrap(),
            Vec::<f64>::try_from(&b[0]).unwrap()
        );
    }
}

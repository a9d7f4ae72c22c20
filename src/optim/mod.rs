//! Optimisers, written over tch tensors with explicit state so that a resume
//! checkpoint can store and restore it exactly. The update formulas follow
//! PyTorch's single-tensor implementations (torch.optim.SGD / Adam / AdamW /
//! NAdam with foreach=False, same defaults), AlgoPerf's NAdamW baseline, and
//! the paper's step sizes (SPS_max, DecSPS, NGN, AdaGrad-norm-max; docs/theory.md,
//! Optimisers)
//! and normalised SGD with momentum. Additions with a scale go through
//! `add(x, alpha=a)` as in torch.optim, and Adam/AdamW's second moment and
//! update through `addcmul_`/`addcdiv_` with their `value` (one rounding each;
//! `crate::torch::ops`, as tch's API does not expose them): SGD, Adam and
//! AdamW give torch.optim's iterates bit for bit on the CPU (tests/logger.rs
//! replays torch.optim loops with them). NAdam and the rest agree with their
//! references to rounding (tests/check_optim.py replays runs with torch.optim
//! and independent implementations).
//!
//! The paper's methods take one step x^{k+1} = x^k − gamma_k ∇f_{i_k}(x^k) with
//! gamma_k computed from f_{i_k}(x^k) and ||∇f_{i_k}(x^k)|| (both from the
//! training step, the norm accumulated in f64) and the learning rate of the
//! schedule at step k (gamma_b of SPS_max, gamma of NGN and AdaGrad-norm-max);
//! DecSPS decays its own step and takes the constant `optim.lr` as gamma_b.

pub mod config;
pub mod schedule;

use crate::config::{DecayExclude, OptimConfig, OptimName};
use crate::store::tensors::{NamedTensor, Role, TensorFile};
use crate::torch::ops::{add_scaled, add_scaled_, addcdiv_, addcmul_, foreach_add_};
use anyhow::{anyhow, bail, Result};
use tch::Tensor;

#[derive(Default)]
struct State {
    momentum_buffer: Option<Tensor>,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
}

/// Scalar state of the step-size methods, stored in the checkpoint's metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scalars {
    /// DecSPS: c_{k−1} gamma_{k−1} (c_0 gamma_b before the first step).
    decsps_bound: f64,
    /// AdaGrad-norm-max: c_{k−1}² = max_{j<k} ||∇f_{i_j}||² and b_{k−1}².
    adagrad_c2: f64,
    adagrad_b2: f64,
}

pub struct Optimizer {
    cfg: OptimConfig,
    params: Vec<(String, Tensor)>,
    /// Whether weight decay applies to each parameter (optim.weight_decay_exclude).
    decays: Vec<bool>,
    state: Vec<State>,
    scalars: Scalars,
    /// NAdam's product of momentum coefficients mu_1 … mu_t (a function of t).
    mu_product: f64,
    /// Number of updates done (Adam's bias-correction step t).
    pub updates: u64,
}

const STATE_NAMES: [&str; 3] = ["momentum_buffer", "exp_avg", "exp_avg_sq"];
const SCALAR_KEYS: [&str; 3] = [
    "abcond.optim.decsps_bound",
    "abcond.optim.adagrad_c2",
    "abcond.optim.adagrad_b2",
];

/// Whether `optim.weight_decay_exclude` exempts the parameter `name` of `shape`.
pub fn excluded_from_decay(exclude: &[DecayExclude], name: &str, shape: &[i64]) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    exclude.iter().any(|e| match e {
        DecayExclude::Biases => last == "bias",
        DecayExclude::Norms => name.contains('.') && last == "weight" && shape.len() == 1,
    })
}

/// NAdam's momentum coefficient mu_t = beta1 (1 − 0.5 · 0.96^(t psi)).
fn nadam_mu(b1: f64, psi: f64, t: f64) -> f64 {
    b1 * (1.0 - 0.5 * 0.96f64.powf(t * psi))
}

impl Optimizer {
    pub fn new(cfg: &OptimConfig, params: Vec<(String, Tensor)>) -> Optimizer {
        let state = params.iter().map(|_| State::default()).collect();
        let decays = params
            .iter()
            .map(|(n, t)| !excluded_from_decay(&cfg.weight_decay_exclude, n, &t.size()))
            .collect();
        Optimizer {
            cfg: cfg.clone(),
            params,
            decays,
            state,
            scalars: Scalars {
                decsps_bound: cfg.c.unwrap_or(1.0) * cfg.lr,
                adagrad_c2: 0.0,
                adagrad_b2: cfg.b0.unwrap_or(0.0).powi(2),
            },
            mu_product: 1.0,
            updates: 0,
        }
    }

    /// The step size gamma_k of the paper's methods from the learning rate `lr`
    /// of the schedule, f_i(x^k) = `loss` and ||∇f_i(x^k)|| = `grad_norm`;
    /// advances their scalar state. k = `self.updates` − 1.
    fn adaptive_step_size(&mut self, lr: f64, loss: f64, grad_norm: f64) -> f64 {
        let g2 = grad_norm * grad_norm;
        let k = (self.updates - 1) as f64;
        let f_star = self.cfg.f_star.unwrap_or(0.0);
        // (f_i − f_i*)/||∇f_i||², the Polyak step; +∞ at a zero gradient (where
        // the step does not move x), 0 when f_i ≤ f_i* (a wrong lower bound
        // would otherwise turn the step into an ascent).
        let polyak = |c: f64| {
            let gap = (loss - f_star).max(0.0);
            if g2 > 0.0 {
                gap / (c * g2)
            } else {
                f64::INFINITY
            }
        };
        match self.cfg.name {
            OptimName::SpsMax => polyak(self.cfg.c.unwrap_or(0.5)).min(lr),
            OptimName::DecSps => {
                let c_k =
                    self.cfg.c.unwrap_or(1.0) * (k + 1.0).powf(self.cfg.c_power.unwrap_or(0.5));
                let gamma = polyak(1.0).min(self.scalars.decsps_bound) / c_k;
                self.scalars.decsps_bound = c_k * gamma;
                gamma
            }
            // NGN needs f_i > 0; at f_i ≤ 0 (a minimiser of a non-negative loss)
            // the step is skipped.
            OptimName::Ngn => {
                if loss > 0.0 {
                    lr / (1.0 + lr * g2 / (2.0 * loss))
                } else {
                    0.0
                }
            }
            OptimName::AdagradNormMax => {
                let s = &mut self.scalars;
                s.adagrad_c2 = s.adagrad_c2.max(g2);
                s.adagrad_b2 += s.adagrad_c2;
                if s.adagrad_b2 > 0.0 {
                    lr / s.adagrad_b2.sqrt()
                } else {
                    0.0
                }
            }
            _ => unreachable!("not a step-size method"),
        }
    }

    /// The parameters that have a gradient, and their gradients.
    fn params_with_grads(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        self.params
            .iter()
            .map(|(_, p)| (p.shallow_clone(), p.grad()))
            .filter(|(_, g)| g.defined())
            .unzip()
    }

    /// One update with learning rate `lr` (the schedule's, at this step), from
    /// the gradients in `.grad()`, of the minibatch loss `loss` = f_i(x^k) whose
    /// gradient norm is `grad_norm`. Returns the scalar step size gamma_k the
    /// update used (x^{k+1} = x^k − gamma_k d_k with d_k the gradient, the
    /// momentum buffer of SGD, or m_k of normalised SGD), or None where there
    /// is no single one (Adam, AdamW, NAdam, NAdamW: per-coordinate steps).
    pub fn step(&mut self, lr: f64, loss: f64, grad_norm: f64) -> Option<f64> {
        self.updates += 1;
        let t = self.updates as f64;
        let wd = self.cfg.weight_decay.unwrap_or(0.0);
        let name = self.cfg.name;
        if name.is_adaptive_step() {
            let gamma = self.adaptive_step_size(lr, loss, grad_norm);
            let (ps, gs) = self.params_with_grads();
            tch::no_grad(|| foreach_add_(&ps, &gs, -gamma));
            return Some(gamma);
        }
        if name == OptimName::NormalizedSgd {
            return Some(self.normalized_sgd_step(lr, t));
        }
        let nadam_mus = (name == OptimName::Nadam).then(|| {
            let [b1, _] = self.cfg.betas.unwrap_or([0.9, 0.999]);
            let psi = self.cfg.momentum_decay.unwrap_or(0.004);
            let mu = nadam_mu(b1, psi, t);
            let mu_next = nadam_mu(b1, psi, t + 1.0);
            self.mu_product *= mu;
            (mu, mu_next, self.mu_product)
        });
        // SGD's updates x -= lr d, taken together after the loop.
        let (mut sgd_params, mut sgd_dirs) = (Vec::new(), Vec::new());
        tch::no_grad(|| {
            for (((_, p), st), &decays) in self
                .params
                .iter()
                .zip(self.state.iter_mut())
                .zip(&self.decays)
            {
                let mut p = p.shallow_clone();
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let wd = if decays { wd } else { 0.0 };
                match name {
                    OptimName::Sgd => {
                        let momentum = self.cfg.momentum.unwrap_or(0.0);
                        let dampening = self.cfg.dampening.unwrap_or(0.0);
                        if wd != 0.0 {
                            g = add_scaled(&g, &p, wd);
                        }
                        if momentum != 0.0 {
                            let buf = match st.momentum_buffer.take() {
                                None => g.detach().copy(),
                                Some(mut b) => {
                                    let _ = b.g_mul_scalar_(momentum);
                                    // g·1 = g exactly: skip a pass and a temporary.
                                    let _ = if dampening == 0.0 {
                                        b.g_add_(&g)
                                    } else {
                                        add_scaled_(&b, &g, 1.0 - dampening);
                                        b.shallow_clone()
                                    };
                                    b
                                }
                            };
                            g = if self.cfg.nesterov.unwrap_or(false) {
                                add_scaled(&g, &buf, momentum)
                            } else {
                                buf.shallow_clone()
                            };
                            st.momentum_buffer = Some(buf);
                        }
                        sgd_params.push(p);
                        sgd_dirs.push(g);
                    }
                    OptimName::Adam | OptimName::Adamw => {
                        let [b1, b2] = self.cfg.betas.unwrap_or([0.9, 0.999]);
                        let eps = self.cfg.eps.unwrap_or(1e-8);
                        if name == OptimName::Adamw {
                            let _ = p.g_mul_scalar_(1.0 - lr * wd);
                        } else if wd != 0.0 {
                            g = add_scaled(&g, &p, wd);
                        }
                        // torch.optim.Adam's _single_tensor_adam, operation
                        // for operation (addcmul_/addcdiv_ with their value):
                        // the same bits as torch.optim.Adam/AdamW on the CPU.
                        let m = st.exp_avg.get_or_insert_with(|| p.zeros_like());
                        let _ = m.lerp_(&g, 1.0 - b1);
                        let v = st.exp_avg_sq.get_or_insert_with(|| p.zeros_like());
                        let _ = v.g_mul_scalar_(b2);
                        addcmul_(v, &g, &g, 1.0 - b2);
                        let bc1 = 1.0 - b1.powf(t);
                        let bc2 = 1.0 - b2.powf(t);
                        let step_size = lr / bc1;
                        let mut denom = v.sqrt() / bc2.powf(0.5);
                        let _ = denom.g_add_scalar_(eps);
                        addcdiv_(&p, m, &denom, -step_size);
                    }
                    // torch.optim.NAdam, _single_tensor_nadam.
                    OptimName::Nadam => {
                        let [b1, b2] = self.cfg.betas.unwrap_or([0.9, 0.999]);
                        let eps = self.cfg.eps.unwrap_or(1e-8);
                        let (mu, mu_next, mu_product) = nadam_mus.unwrap();
                        if wd != 0.0 {
                            if self.cfg.decoupled_weight_decay.unwrap_or(false) {
                                let _ = p.g_mul_scalar_(1.0 - lr * wd);
                            } else {
                                g = add_scaled(&g, &p, wd);
                            }
                        }
                        let m = st.exp_avg.get_or_insert_with(|| p.zeros_like());
                        let _ = m.lerp_(&g, 1.0 - b1);
                        let v = st.exp_avg_sq.get_or_insert_with(|| p.zeros_like());
                        let _ = v.g_mul_scalar_(b2);
                        let _ = v.g_add_(&(&(&g * (1.0 - b2)) * &g));
                        let bc2 = 1.0 - b2.powf(t);
                        let denom = (&*v / bc2).sqrt() + eps;
                        let _ =
                            p.g_add_(&((&g / &denom) * (-lr * (1.0 - mu) / (1.0 - mu_product))));
                        let _ = p.g_add_(
                            &((&*m / &denom) * (-lr * mu_next / (1.0 - mu_product * mu_next))),
                        );
                    }
                    // AlgoPerf's NAdamW (reference_algorithms/paper_baselines/nadamw):
                    // decoupled decay, then Adam's moments, and the Nesterov
                    // look-ahead beta1 m_t + (1 − beta1) g in place of m_t.
                    OptimName::Nadamw => {
                        let [b1, b2] = self.cfg.betas.unwrap_or([0.9, 0.999]);
                        let eps = self.cfg.eps.unwrap_or(1e-8);
                        let _ = p.g_mul_scalar_(1.0 - lr * wd);
                        let m = st.exp_avg.get_or_insert_with(|| p.zeros_like());
                        let _ = m.g_mul_scalar_(b1);
                        let _ = m.g_add_(&(&g * (1.0 - b1)));
                        let v = st.exp_avg_sq.get_or_insert_with(|| p.zeros_like());
                        let _ = v.g_mul_scalar_(b2);
                        let _ = v.g_add_(&(&(&g * (1.0 - b2)) * &g));
                        let look_ahead = (&*m * b1) + (&g * (1.0 - b1));
                        let bc1 = 1.0 - b1.powf(t);
                        let bc2 = 1.0 - b2.powf(t);
                        let denom = (v.sqrt() / bc2.sqrt()) + eps;
                        let _ = p.g_add_(&((look_ahead / denom) * -(lr / bc1)));
                    }
                    _ => unreachable!("handled above"),
                }
            }
            foreach_add_(&sgd_params, &sgd_dirs, -lr);
        });
        (name == OptimName::Sgd).then_some(lr)
    }

    /// Normalised SGD with momentum: beta_t = 1 − t^(−b),
    /// m_t = beta_t m_{t−1} + (1 − beta_t) g_t (so m_1 = g_1), and
    /// x −= lr m_t/||m_t|| with the norm over all parameters in f64.
    /// Returns lr/||m_t|| (0 when m_t = 0: no step).
    fn normalized_sgd_step(&mut self, lr: f64, t: f64) -> f64 {
        let beta = 1.0 - t.powf(-self.cfg.momentum_power.unwrap_or(0.5));
        tch::no_grad(|| {
            let mut bufs = Vec::new();
            let mut targets = Vec::new();
            for ((_, p), st) in self.params.iter().zip(self.state.iter_mut()) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let buf = match st.momentum_buffer.take() {
                    None => g.detach().copy(),
                    Some(mut b) => {
                        let _ = b.g_mul_scalar_(beta);
                        add_scaled_(&b, &g, 1.0 - beta);
                        b
                    }
                };
                bufs.push(buf.shallow_clone());
                targets.push(p.shallow_clone());
                st.momentum_buffer = Some(buf);
            }
            let norm = crate::torch::reduce::norm_sq(&bufs).sqrt();
            let step = if norm > 0.0 { lr / norm } else { 0.0 };
            foreach_add_(&targets, &bufs, -step);
            step
        })
    }

    /// Scalar state to store with a checkpoint (metadata key, exact value).
    pub fn scalar_state(&self) -> Vec<(&'static str, String)> {
        let s = &self.scalars;
        SCALAR_KEYS
            .iter()
            .zip([s.decsps_bound, s.adagrad_c2, s.adagrad_b2])
            .map(|(k, v)| (*k, format!("{v:?}")))
            .collect()
    }

    /// The optimiser state as named tensors ("<state>/<param name>").
    pub fn state_tensors(&self) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        for ((name, _), st) in self.params.iter().zip(&self.state) {
            for (label, t) in
                STATE_NAMES
                    .iter()
                    .zip([&st.momentum_buffer, &st.exp_avg, &st.exp_avg_sq])
            {
                if let Some(t) = t {
                    out.push(NamedTensor {
                        name: format!("{label}/{name}"),
                        role: Role::Optim,
                        tensor: t.shallow_clone(),
                    });
                }
            }
        }
        out
    }

    /// Restores state saved by [`Optimizer::state_tensors`] after `updates` updates.
    pub fn load_state(&mut self, file: &TensorFile, updates: u64, source: &str) -> Result<()> {
        for t in file.tensors.iter().filter(|t| t.role == Role::Optim) {
            let Some((label, pname)) = t.name.split_once('/') else {
                bail!(
                    "{source}: optimiser tensor `{}` is not named <state>/<parameter>",
                    t.name
                );
            };
            let Some(i) = self.params.iter().position(|(n, _)| n == pname) else {
                bail!("{source}: optimiser state for unknown parameter `{pname}`");
            };
            let p = &self.params[i].1;
            if t.tensor.size() != p.size() {
                bail!(
                    "{source}: optimiser tensor `{}` has shape {:?}, expected {:?}",
                    t.name,
                    t.tensor.size(),
                    p.size()
                );
            }
            let value = Some(t.tensor.to_device(p.device()).to_kind(p.kind()));
            let st = &mut self.state[i];
            match label {
                "momentum_buffer" => st.momentum_buffer = value,
                "exp_avg" => st.exp_avg = value,
                "exp_avg_sq" => st.exp_avg_sq = value,
                other => bail!(
                    "{source}: unknown optimiser state `{other}` (expected one of {STATE_NAMES:?})"
                ),
            }
        }
        // Checkpoints of versions before the step-size methods carry no scalars;
        // their runs used none of them.
        let mut values = [
            self.scalars.decsps_bound,
            self.scalars.adagrad_c2,
            self.scalars.adagrad_b2,
        ];
        for (key, v) in SCALAR_KEYS.iter().zip(values.iter_mut()) {
            if let Some(text) = file.meta.get(*key) {
                *v = text
                    .parse()
                    .map_err(|_| anyhow!("{source}: metadata {key} = {text:?} is not a number"))?;
            } else if self.cfg.name.is_adaptive_step() {
                bail!(
                    "{source}: metadata {key} is missing (needed to resume {})",
                    self.cfg.name.name()
                );
            }
        }
        [
            self.scalars.decsps_bound,
            self.scalars.adagrad_c2,
            self.scalars.adagrad_b2,
        ] = values;
        self.updates = updates;
        // NAdam's mu-product is a function of t, recomputed in the same order.
        if self.cfg.name == OptimName::Nadam {
            let [b1, _] = self.cfg.betas.unwrap_or([0.9, 0.999]);
            let psi = self.cfg.momentum_decay.unwrap_or(0.004);
            self.mu_product = (1..=updates).fold(1.0, |acc, t| acc * nadam_mu(b1, psi, t as f64));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    /// Runs `steps` updates of `opt_yaml` on f(x) = ½||x||² from x^0 = (3, 4)
    /// (f = 12.5, ∇f = x, ||∇f||² = 25 at x^0) and returns (gamma_k, x^{k+1}).
    fn quadratic(opt_yaml: &str, steps: usize) -> Vec<(f64, [f64; 2])> {
        let cfg: OptimConfig = serde_yaml::from_str(opt_yaml).unwrap();
        let x = Tensor::from_slice(&[3.0f64, 4.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(&cfg, vec![("x".into(), x.shallow_clone())]);
        let mut out = Vec::new();
        for _ in 0..steps {
            let mut x_ = x.shallow_clone();
            x_.zero_grad();
            let loss = (&x * &x).sum(Kind::Double) * 0.5;
            loss.backward();
            let gn = tch::no_grad(|| x.grad().norm().double_value(&[]));
            let gamma = opt.step(cfg.lr, loss.double_value(&[]), gn).unwrap();
            let v = Vec::<f64>::try_from(&x.detach()).unwrap();
            out.push((gamma, [v[0], v[1]]));
        }
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15 * b.abs().max(1.0)
    }

    /// On ½||x||² the Polyak ratio f/||∇f||² is ½ everywhere and
    /// ||∇f||²/(2f) = 1, so every method's gamma_k has a closed form and
    /// x^{k+1} = Π_j (1 − gamma_j) x^0.
    fn check(got: &[(f64, [f64; 2])], gammas: impl Fn(usize) -> f64) {
        let mut factor = 1.0;
        for (k, (gamma, x)) in got.iter().enumerate() {
            let want = gammas(k);
            assert!(
                close(*gamma, want),
                "step {k}: gamma {gamma}, expected {want}"
            );
            factor *= 1.0 - want;
            assert!(
                close(x[0], 3.0 * factor) && close(x[1], 4.0 * factor),
                "step {k}: x {x:?}"
            );
        }
    }

    #[test]
    fn sps_max_closed_form() {
        // gamma = min(f/(c||∇f||²), gamma_b) = min(1/(2c), gamma_b).
        check(&quadratic("{name: sps-max, lr: 0.6, c: 0.5}", 4), |_| 0.6);
        check(&quadratic("{name: sps-max, lr: 10.0, c: 2.0}", 4), |_| 0.25);
        // With f_i* = 2.5 at x^0: (12.5 − 2.5)/(0.5 · 25) = 0.8, capped at 0.7.
        let got = quadratic("{name: sps-max, lr: 0.7, c: 0.5, f_star: 2.5}", 1);
        assert!(close(got[0].0, 0.7));
        let got = quadratic("{name: sps-max, lr: 10.0, c: 1.0, f_star: 2.5}", 1);
        assert!(close(got[0].0, 0.4));
    }

    #[test]
    fn decsps_closed_form() {
        // c_k = c_0 sqrt(k+1); gamma_k = min(½, c_{k−1} gamma_{k−1})/c_k with
        // c_{−1} gamma_{−1} = c_0 gamma_b: gamma_k = min(½, c_0 gamma_b)/(c_0 sqrt(k+1)).
        check(&quadratic("{name: decsps, lr: 10.0, c: 1.0}", 5), |k| {
            0.5 / ((k + 1) as f64).sqrt()
        });
        check(&quadratic("{name: decsps, lr: 0.2, c: 2.0}", 5), |k| {
            0.4 / (2.0 * ((k + 1) as f64).sqrt())
        });
        // c_power 0: constant c_k, the step is min(½, c gamma_b)/c throughout.
        check(
            &quadratic("{name: decsps, lr: 10.0, c: 1.25, c_power: 0.0}", 3),
            |_| 0.4,
        );
    }

    #[test]
    fn ngn_closed_form() {
        // gamma = lr/(1 + lr ||∇f||²/(2f)) = lr/(1 + lr).
        check(&quadratic("{name: ngn, lr: 1.0}", 4), |_| 0.5);
        check(&quadratic("{name: ngn, lr: 0.25}", 4), |_| 0.2);
    }

    #[test]
    fn adagrad_norm_max_closed_form() {
        // ||∇f||² shrinks, so c_k² = 25 for all k; b_k² = b0² + 25(k+1).
        check(&quadratic("{name: adagrad-norm-max, lr: 1.0}", 5), |k| {
            1.0 / (25.0 * (k + 1) as f64).sqrt()
        });
        check(
            &quadratic("{name: adagrad-norm-max, lr: 2.0, b0: 3.0}", 5),
            |k| 2.0 / (9.0 + 25.0 * (k + 1) as f64).sqrt(),
        );
    }

    #[test]
    fn normalized_sgd_moves_lr_along_the_momentum_direction() {
        // m_1 = g_1 = x^0 (beta_1 = 0): the first step is lr x^0/||x^0||.
        let got = quadratic("{name: normalized-sgd, lr: 0.5}", 2);
        assert!(close(got[0].0, 0.1));
        assert!(close(got[0].1[0], 3.0 - 0.3) && close(got[0].1[1], 4.0 - 0.4));
        // t = 2: beta = 1 − 2^(−1/2); m_2 = beta x^0 + (1 − beta) x^1 ∥ x^0.
        let beta = 1.0 - 2f64.powf(-0.5);
        let m = [
            3.0 * beta + 2.7 * (1.0 - beta),
            4.0 * beta + 3.6 * (1.0 - beta),
        ];
        let norm = (m[0] * m[0] + m[1] * m[1]).sqrt();
        assert!(close(got[1].0, 0.5 / norm));
        assert!(close(got[1].1[0], 2.7 - 0.5 * m[0] / norm));
    }

    #[test]
    fn decay_exclusion_by_name_and_shape() {
        let both = [DecayExclude::Biases, DecayExclude::Norms];
        assert!(excluded_from_decay(&both, "fc1.bias", &[10]));
        assert!(excluded_from_decay(&both, "layer1.0.bn1.weight", &[64]));
        assert!(!excluded_from_decay(&both, "fc1.weight", &[10, 784]));
        assert!(!excluded_from_decay(
            &[DecayExclude::Biases],
            "bn.weight",
            &[64]
        ));
        assert!(!excluded_from_decay(
            &[DecayExclude::Norms],
            "fc.bias",
            &[64]
        ));
        assert!(!excluded_from_decay(&[], "fc.bias", &[64]));
        // The half-space model's x is a 1-D `weight` of no layer: not a norm scale.
        assert!(!excluded_from_decay(&both, "weight", &[2]));
    }
}

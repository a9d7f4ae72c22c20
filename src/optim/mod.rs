//! Optimisers, written over tch tensors with explicit state so that a resume
//! checkpoint can store and restore it exactly. The update formulas follow
//! PyTorch's single-tensor implementations (torch.optim.SGD / Adam / AdamW with
//! foreach=False, same defaults). Results agree with torch.optim to rounding,
//! not bit for bit: PyTorch fuses `add_(x, alpha=a)` into a multiply-add, which
//! tch's API does not expose (tests/parity.py replays runs with torch.optim).

pub mod schedule;

use crate::config::{OptimConfig, OptimName};
use crate::store::tensors::{NamedTensor, Role, TensorFile};
use anyhow::{bail, Result};
use tch::Tensor;

#[derive(Default)]
struct State {
    momentum_buffer: Option<Tensor>,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
}

pub struct Optimizer {
    cfg: OptimConfig,
    params: Vec<(String, Tensor)>,
    state: Vec<State>,
    /// Number of updates done (Adam's bias-correction step t).
    pub updates: u64,
}

const STATE_NAMES: [&str; 3] = ["momentum_buffer", "exp_avg", "exp_avg_sq"];

impl Optimizer {
    pub fn new(cfg: &OptimConfig, params: Vec<(String, Tensor)>) -> Optimizer {
        let state = params.iter().map(|_| State::default()).collect();
        Optimizer {
            cfg: cfg.clone(),
            params,
            state,
            updates: 0,
        }
    }

    /// One update with learning rate `lr`, from the gradients in `.grad()`.
    pub fn step(&mut self, lr: f64) {
        self.updates += 1;
        let t = self.updates as f64;
        let wd = self.cfg.weight_decay.unwrap_or(0.0);
        tch::no_grad(|| {
            for ((_, p), st) in self.params.iter().zip(self.state.iter_mut()) {
                let mut p = p.shallow_clone();
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                match self.cfg.name {
                    OptimName::Sgd => {
                        let momentum = self.cfg.momentum.unwrap_or(0.0);
                        let dampening = self.cfg.dampening.unwrap_or(0.0);
                        if wd != 0.0 {
                            g = g.g_add(&(&p * wd));
                        }
                        if momentum != 0.0 {
                            let buf = match st.momentum_buffer.take() {
                                None => g.detach().copy(),
                                Some(mut b) => {
                                    let _ = b.g_mul_scalar_(momentum);
                                    let _ = b.g_add_(&(&g * (1.0 - dampening)));
                                    b
                                }
                            };
                            g = if self.cfg.nesterov.unwrap_or(false) {
                                g.g_add(&(&buf * momentum))
                            } else {
                                buf.shallow_clone()
                            };
                            st.momentum_buffer = Some(buf);
                        }
                        let _ = p.g_add_(&(&g * -lr));
                    }
                    OptimName::Adam | OptimName::Adamw => {
                        let [b1, b2] = self.cfg.betas.unwrap_or([0.9, 0.999]);
                        let eps = self.cfg.eps.unwrap_or(1e-8);
                        if self.cfg.name == OptimName::Adamw {
                            let _ = p.g_mul_scalar_(1.0 - lr * wd);
                        } else if wd != 0.0 {
                            g = g.g_add(&(&p * wd));
                        }
                        let m = st.exp_avg.get_or_insert_with(|| p.zeros_like());
                        let _ = m.lerp_(&g, 1.0 - b1);
                        let v = st.exp_avg_sq.get_or_insert_with(|| p.zeros_like());
                        let _ = v.g_mul_scalar_(b2);
                        let _ = v.g_add_(&(&(&g * (1.0 - b2)) * &g));
                        let bc1 = 1.0 - b1.powf(t);
                        let bc2 = 1.0 - b2.powf(t);
                        let step_size = lr / bc1;
                        let denom = (v.sqrt() / bc2.powf(0.5)) + eps;
                        let _ = p.g_add_(&((&*m / denom) * -step_size));
                    }
                }
            }
        });
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
        self.updates = updates;
        Ok(())
    }
}

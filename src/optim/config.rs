//! The `optim:` and `schedule:` sections of a config: the optimiser, its
//! hyper-parameters and the learning-rate schedule, with defaults and checks.

use crate::config::validate::{only, positive};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OptimName {
    #[serde(rename = "sgd")]
    Sgd,
    #[serde(rename = "adam")]
    Adam,
    #[serde(rename = "adamw")]
    Adamw,
    /// torch.optim.NAdam (momentum decay psi, optional decoupled weight decay).
    #[serde(rename = "nadam")]
    Nadam,
    /// AlgoPerf's NAdamW baseline (no momentum decay, decoupled weight decay).
    #[serde(rename = "nadamw")]
    Nadamw,
    /// Normalised SGD with momentum: m_t = beta_t m + (1 − beta_t) g,
    /// x −= lr_t m_t/||m_t||, beta_t = 1 − t^(−momentum_power).
    #[serde(rename = "normalized-sgd")]
    NormalizedSgd,
    /// SPS_max: gamma_k = min{(f_i − f_i*)/(c ||∇f_i||²), gamma_b = lr_k}.
    #[serde(rename = "sps-max")]
    SpsMax,
    /// DecSPS: gamma_k = min{(f_i − f_i*)/||∇f_i||², c_{k−1} gamma_{k−1}}/c_k.
    #[serde(rename = "decsps")]
    DecSps,
    /// NGN: gamma_k = lr_k/(1 + lr_k ||∇f_i||²/(2 f_i)).
    #[serde(rename = "ngn")]
    Ngn,
    /// AdaGrad-norm-max: gamma_k = lr_k/b_k, b_k² = b_{k−1}² + max_{j≤k} ||∇f_{i_j}||².
    #[serde(rename = "adagrad-norm-max")]
    AdagradNormMax,
    /// An optimiser outside abcond: a run logged from a user's own PyTorch
    /// loop by the Python companion's Logger, whose optimiser has no abcond
    /// counterpart (run.yaml's `trainer.optimizer` names it). `optim.lr` is its
    /// initial learning rate; abcond cannot train with it.
    #[serde(rename = "external")]
    External,
}

impl OptimName {
    pub fn name(self) -> &'static str {
        match self {
            OptimName::Sgd => "sgd",
            OptimName::Adam => "adam",
            OptimName::Adamw => "adamw",
            OptimName::Nadam => "nadam",
            OptimName::Nadamw => "nadamw",
            OptimName::NormalizedSgd => "normalized-sgd",
            OptimName::SpsMax => "sps-max",
            OptimName::DecSps => "decsps",
            OptimName::Ngn => "ngn",
            OptimName::AdagradNormMax => "adagrad-norm-max",
            OptimName::External => "external",
        }
    }

    /// Methods whose step size gamma_k is computed from f_i(x^k) and ||∇f_i(x^k)||.
    pub fn is_adaptive_step(self) -> bool {
        matches!(
            self,
            OptimName::SpsMax | OptimName::DecSps | OptimName::Ngn | OptimName::AdagradNormMax
        )
    }
}

/// Parameter classes that `optim.weight_decay_exclude` can exempt from weight decay.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DecayExclude {
    /// Parameters named `….bias`.
    Biases,
    /// Scales of normalisation layers: one-dimensional parameters named
    /// `<layer>.weight` (BatchNorm, LayerNorm and GroupNorm weights are the only
    /// such tensors of a layer; a bare `weight`, the half-space x, is not one).
    Norms,
}

/// The optimiser. SGD follows torch.optim.SGD (momentum, dampening, Nesterov,
/// coupled weight decay); Adam/AdamW/NAdam follow torch.optim; NAdamW follows
/// AlgoPerf's baseline; the paper's adaptive step sizes follow
/// docs/theory.md, Optimisers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub name: OptimName,
    pub lr: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Parameters exempt from weight decay (none by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_decay_exclude: Vec<DecayExclude>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// nadam: momentum decay psi (torch default 0.004).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_decay: Option<f64>,
    /// nadam: decoupled (AdamW-style) weight decay (torch default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoupled_weight_decay: Option<bool>,
    /// normalized-sgd: b in beta_t = 1 − t^(−b) (t = 1, 2, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_power: Option<f64>,
    /// sps-max: c; decsps: c_0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<f64>,
    /// decsps: p in c_k = c_0 (k+1)^p (non-decreasing; 0.5 gives sqrt(k+1)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_power: Option<f64>,
    /// sps-max, decsps: the lower bound f_i* used in the step size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_star: Option<f64>,
    /// adagrad-norm-max: b_{−1} (b_k² = b_{k−1}² + c_k²).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b0: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleName {
    #[default]
    Constant,
    Cosine,
    OneCycle,
    WarmupCosine,
    /// gamma_k = lr (k+1)^(−power); power 0.5 is the paper's gamma_0/sqrt(k+1).
    InversePower,
    /// torch.optim.lr_scheduler.PolynomialLR with a floor:
    /// gamma_k = floor + (lr − floor)(1 − k/K)^power.
    Polynomial,
    /// The learning rate each step used, as recorded in steps.parquet: a run
    /// logged from a user's own PyTorch loop whose rate changed during
    /// training. abcond cannot train with it.
    Recorded,
}

/// Learning-rate schedule over the K training steps; `optim.lr` is the peak.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default)]
    pub name: ScheduleName,
    /// Final learning rate of cosine and warmup-cosine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// one-cycle: fraction of steps spent increasing the rate (torch default 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct_start: Option<f64>,
    /// one-cycle: initial rate = lr / div_factor (torch default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub div_factor: Option<f64>,
    /// one-cycle: final rate = initial / final_div_factor (torch default 1e4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_div_factor: Option<f64>,
    /// warmup-cosine: warm-up length as a fraction of all steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_fraction: Option<f64>,
    /// warmup-cosine: warm-up length in steps (instead of a fraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// inverse-power: exponent (default 0.5); polynomial: exponent (default 1, as torch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<f64>,
}

impl OptimConfig {
    /// Checks that every key applies to the optimiser and is in range, and
    /// fills in its defaults (torch.optim's where it has the method).
    pub(crate) fn resolve(&mut self) -> Result<()> {
        let o = self;
        positive("optim.lr", o.lr)?;
        let set = [
            ("momentum", o.momentum.is_some()),
            ("dampening", o.dampening.is_some()),
            ("nesterov", o.nesterov.is_some()),
            ("betas", o.betas.is_some()),
            ("eps", o.eps.is_some()),
            ("momentum_decay", o.momentum_decay.is_some()),
            ("decoupled_weight_decay", o.decoupled_weight_decay.is_some()),
            ("momentum_power", o.momentum_power.is_some()),
            ("c", o.c.is_some()),
            ("c_power", o.c_power.is_some()),
            ("f_star", o.f_star.is_some()),
            ("b0", o.b0.is_some()),
            ("weight_decay_exclude", !o.weight_decay_exclude.is_empty()),
        ];
        let what = format!("optimiser `{}`", o.name.name());
        if o.name == OptimName::External {
            // Only the initial rate is known; the optimiser itself is named in
            // run.yaml's `trainer` record.
            let mut set = set.to_vec();
            set.push(("weight_decay", o.weight_decay.is_some()));
            return only("optim", &what, &set, &[]);
        }
        // torch.optim defaults: AdamW decays by 0.01, SGD and Adam not at all;
        // AlgoPerf's NAdamW by 0.01 too. The paper's step-size methods and
        // normalised SGD have no weight decay.
        let decays = !(o.name.is_adaptive_step() || o.name == OptimName::NormalizedSgd);
        if !decays && o.weight_decay.is_some_and(|wd| wd != 0.0) {
            bail!("key `optim.weight_decay` does not apply to {what} (its update has no weight decay term)");
        }
        let wd = *o.weight_decay.get_or_insert(
            if matches!(o.name, OptimName::Adamw | OptimName::Nadamw) {
                1e-2
            } else {
                0.0
            },
        );
        if !(wd.is_finite() && wd >= 0.0) {
            bail!("key `optim.weight_decay` must be ≥ 0, got {wd}");
        }
        let mut allowed: Vec<&str> = match o.name {
            OptimName::Sgd => vec!["momentum", "dampening", "nesterov"],
            OptimName::Adam | OptimName::Adamw | OptimName::Nadamw => vec!["betas", "eps"],
            OptimName::Nadam => vec!["betas", "eps", "momentum_decay", "decoupled_weight_decay"],
            OptimName::NormalizedSgd => vec!["momentum_power"],
            OptimName::SpsMax => vec!["c", "f_star"],
            OptimName::DecSps => vec!["c", "c_power", "f_star"],
            OptimName::Ngn => vec![],
            OptimName::AdagradNormMax => vec!["b0"],
            OptimName::External => unreachable!("returned above"),
        };
        if decays {
            allowed.push("weight_decay_exclude");
        }
        only("optim", &what, &set, &allowed)?;
        match o.name {
            OptimName::Sgd => {
                let m = *o.momentum.get_or_insert(0.0);
                let d = *o.dampening.get_or_insert(0.0);
                let n = *o.nesterov.get_or_insert(false);
                if !(0.0..1.0).contains(&m) {
                    bail!("key `optim.momentum` must be in [0, 1), got {m}");
                }
                if !(0.0..=1.0).contains(&d) {
                    bail!("key `optim.dampening` must be in [0, 1], got {d}");
                }
                if n && (m <= 0.0 || d != 0.0) {
                    bail!("Nesterov momentum needs optim.momentum > 0 and optim.dampening = 0 (as in torch.optim.SGD)");
                }
            }
            OptimName::Adam | OptimName::Adamw | OptimName::Nadam | OptimName::Nadamw => {
                let [b1, b2] = *o.betas.get_or_insert([0.9, 0.999]);
                if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
                    bail!("key `optim.betas` must be two numbers in [0, 1), got [{b1}, {b2}]");
                }
                if o.name == OptimName::Nadamw && b1 == 0.0 {
                    bail!("key `optim.betas`: nadamw needs beta1 > 0 (AlgoPerf's update divides by it)");
                }
                positive("optim.eps", *o.eps.get_or_insert(1e-8))?;
                if o.name == OptimName::Nadam {
                    let psi = *o.momentum_decay.get_or_insert(0.004);
                    if !(psi.is_finite() && psi >= 0.0) {
                        bail!("key `optim.momentum_decay` must be ≥ 0, got {psi}");
                    }
                    o.decoupled_weight_decay.get_or_insert(false);
                }
            }
            OptimName::NormalizedSgd => {
                positive("optim.momentum_power", *o.momentum_power.get_or_insert(0.5))?;
            }
            OptimName::SpsMax | OptimName::DecSps => {
                let default_c = if o.name == OptimName::SpsMax {
                    0.5
                } else {
                    1.0
                };
                positive("optim.c", *o.c.get_or_insert(default_c))?;
                let fs = *o.f_star.get_or_insert(0.0);
                if !fs.is_finite() {
                    bail!("key `optim.f_star` must be a finite number, got {fs}");
                }
                if o.name == OptimName::DecSps {
                    let p = *o.c_power.get_or_insert(0.5);
                    if !(p.is_finite() && p >= 0.0) {
                        bail!("key `optim.c_power` must be ≥ 0 (c_k must not decrease), got {p}");
                    }
                }
            }
            OptimName::Ngn | OptimName::External => {}
            OptimName::AdagradNormMax => {
                let b0 = *o.b0.get_or_insert(0.0);
                if !(b0.is_finite() && b0 >= 0.0) {
                    bail!("key `optim.b0` must be ≥ 0, got {b0}");
                }
            }
        }
        let mut ex = o.weight_decay_exclude.clone();
        ex.sort_by_key(|e| *e as u8);
        ex.dedup();
        o.weight_decay_exclude = ex;
        Ok(())
    }
}

impl ScheduleConfig {
    /// Checks the schedule's keys against its name and the optimiser.
    pub(crate) fn resolve(&mut self, optim: &OptimConfig) -> Result<()> {
        let s = self;
        let set = [
            ("floor", s.floor.is_some()),
            ("pct_start", s.pct_start.is_some()),
            ("div_factor", s.div_factor.is_some()),
            ("final_div_factor", s.final_div_factor.is_some()),
            ("warmup_fraction", s.warmup_fraction.is_some()),
            ("warmup_steps", s.warmup_steps.is_some()),
            ("power", s.power.is_some()),
        ];
        match s.name {
            ScheduleName::Constant => only("schedule", "schedule `constant`", &set, &[])?,
            ScheduleName::Recorded => only("schedule", "schedule `recorded`", &set, &[])?,
            ScheduleName::Cosine => {
                only("schedule", "schedule `cosine`", &set, &["floor"])?;
                s.floor.get_or_insert(0.0);
            }
            ScheduleName::OneCycle => {
                only(
                    "schedule",
                    "schedule `one-cycle`",
                    &set,
                    &["pct_start", "div_factor", "final_div_factor"],
                )?;
                let p = *s.pct_start.get_or_insert(0.3);
                if !(p > 0.0 && p < 1.0) {
                    bail!("key `schedule.pct_start` must be in (0, 1), got {p}");
                }
                positive("schedule.div_factor", *s.div_factor.get_or_insert(25.0))?;
                positive(
                    "schedule.final_div_factor",
                    *s.final_div_factor.get_or_insert(1e4),
                )?;
            }
            ScheduleName::WarmupCosine => {
                only(
                    "schedule",
                    "schedule `warmup-cosine`",
                    &set,
                    &["floor", "warmup_fraction", "warmup_steps"],
                )?;
                s.floor.get_or_insert(0.0);
                match (s.warmup_fraction, s.warmup_steps) {
                    (Some(_), Some(_)) => bail!(
                        "keys `schedule.warmup_fraction` and `schedule.warmup_steps` are exclusive"
                    ),
                    (None, None) => s.warmup_fraction = Some(0.05),
                    (Some(f), None) if !(0.0..1.0).contains(&f) => {
                        bail!("key `schedule.warmup_fraction` must be in [0, 1), got {f}")
                    }
                    _ => {}
                }
            }
            ScheduleName::InversePower => {
                only("schedule", "schedule `inverse-power`", &set, &["power"])?;
                let p = *s.power.get_or_insert(0.5);
                if !(p.is_finite() && p >= 0.0) {
                    bail!("key `schedule.power` must be ≥ 0, got {p}");
                }
            }
            ScheduleName::Polynomial => {
                only(
                    "schedule",
                    "schedule `polynomial`",
                    &set,
                    &["power", "floor"],
                )?;
                s.floor.get_or_insert(0.0);
                positive("schedule.power", *s.power.get_or_insert(1.0))?;
            }
        }
        if optim.name == OptimName::DecSps && s.name != ScheduleName::Constant {
            bail!(
                "optimiser `decsps` decays its step size itself (c_k = c (k+1)^c_power) and takes optim.lr as gamma_b; set schedule.name to constant (got {})",
                serde_yaml::to_string(&s.name).unwrap_or_default().trim()
            );
        }
        if let Some(f) = s.floor {
            if !(f.is_finite() && f >= 0.0 && f <= optim.lr) {
                bail!("key `schedule.floor` must be in [0, optim.lr], got {f}");
            }
        }
        Ok(())
    }
}

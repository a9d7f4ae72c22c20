//! The smoothness estimate L from the probe's Hessian eigenvalues
//! (curvature.parquet) and the SGD bound of Theorem 1 (docs/theory.md,
//! Curvature and the SGD bound) evaluated for a run: for SGD with a constant
//! step gamma ≤ (alpha − beta)/(2L),
//!
//!   min_k E[f(x^k) − f*] ≤ dist(x^0,S)²/(K·gamma·(alpha − beta))
//!                          + 2·L·gamma·sigma²/(alpha − beta) + 2·beta·sigma²/(alpha − beta),
//!
//! with the approximations dist(x^0, S) ≈ ||x^0 − x^K|| (the landscape row at
//! step 0), sigma² = sigma_int² as the analysis estimates it, f* ≈ f(x^K), and
//! L = the largest |λ| of the minibatch Hessians measured (a lower estimate of
//! a global smoothness constant: only probed points and minibatches are seen).
//!
//! The bound is (c + 2·sigma²·beta)/(alpha − beta) with
//! c = dist²/(K·gamma) + 2·L·gamma·sigma², linear-fractional in (alpha, beta),
//! minimised exactly over the feasible region cut by alpha − beta ≥ 2·L·gamma
//! ([`Region::min_fraction`]): at a vertex, or approached along an unbounded
//! edge.

use super::inputs::RunData;
use super::region::{BestFraction, HalfPlane, Region};
use crate::config::{OptimName, ScheduleName};
use crate::store::label::ProbeLabel;
use crate::store::tables::CurvatureRow;

/// max |λ| over some curvature rows and where it was found.
#[derive(Debug, Clone)]
pub struct Smoothness {
    pub value: f64,
    pub run: usize,
    pub step: i64,
    pub probe: ProbeLabel,
}

/// The curvature rows of a group summarised.
#[derive(Debug, Clone, Default)]
pub struct Curvature {
    pub rows: usize,
    pub unconverged: usize,
    /// max |λ| over the minibatch rows (`train`, and `extra-*` unless train_only).
    pub minibatch: Option<Smoothness>,
    /// max |λ| over the full-data rows.
    pub full: Option<Smoothness>,
}

fn max_abs<'a>(rows: impl Iterator<Item = (usize, &'a CurvatureRow)>) -> Option<Smoothness> {
    rows.max_by(|a, b| a.1.eigenvalue.abs().total_cmp(&b.1.eigenvalue.abs()))
        .map(|(ri, r)| Smoothness {
            value: r.eigenvalue.abs(),
            run: ri,
            step: r.step,
            probe: r.probe,
        })
}

/// L of the runs `ris`: the largest |λ| of their minibatch (and full-data)
/// Hessians.
pub fn curvature(runs: &[RunData], ris: &[usize], train_only: bool) -> Curvature {
    let all = || {
        ris.iter()
            .flat_map(move |&ri| runs[ri].curvature.iter().map(move |r| (ri, r)))
    };
    let minibatch =
        |r: &CurvatureRow| r.probe == ProbeLabel::Train || (!train_only && r.probe.is_extra());
    Curvature {
        rows: all().count(),
        unconverged: all()
            .filter(|(_, r)| !r.converged || r.other_converged == Some(false))
            .count(),
        minibatch: max_abs(all().filter(|(_, r)| minibatch(r))),
        full: max_abs(all().filter(|(_, r)| r.probe == ProbeLabel::Full)),
    }
}

/// min_k f(x^k) − f* as observed.
#[derive(Debug, Clone)]
pub struct Observed {
    pub value: f64,
    /// Where the minimum is (none for a group: the mean over its runs).
    pub step: Option<i64>,
    /// "full-data probe" or "minibatch losses (steps.parquet)".
    pub from: &'static str,
}

/// Over the full-data probe rows k < K: min f(x^k) − f(x^K); without them,
/// over every step of steps.parquet: min f_{i_k}(x^k) − `f_ref` (the mean
/// minibatch loss at x^K), a noisy, downward-biased stand-in.
pub fn observed(run: &RunData, f_ref: Option<f64>) -> Option<Observed> {
    let full = run
        .rows
        .iter()
        .filter(|r| r.probe == ProbeLabel::Full && r.step != r.ref_step)
        .map(|r| (r.loss_k - r.loss_ref, r.step))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((value, step)) = full {
        return Some(Observed {
            value,
            step: Some(step),
            from: "full-data probe",
        });
    }
    let f_ref = f_ref?;
    run.steps
        .iter()
        .map(|s| (s.loss - f_ref, s.step))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(value, step)| Observed {
            value,
            step: Some(step),
            from: "minibatch losses (steps.parquet)",
        })
}

/// The best bound over the region and its three terms.
#[derive(Debug, Clone)]
pub struct BoundAt {
    pub at: BestFraction,
    /// dist²/(K·gamma·(alpha − beta)), 2·L·gamma·sigma²/(alpha − beta),
    /// 2·beta·sigma²/(alpha − beta) at (alpha, beta); their limits (0, 0, value)
    /// when the infimum is only approached along an unbounded edge.
    pub terms: [f64; 3],
}

/// Theorem 1 evaluated for a run (or a group of seeds).
#[derive(Debug, Clone, Default)]
pub struct SgdBound {
    /// Why the theorem does not apply to this run; empty when it does.
    pub reasons: Vec<String>,
    pub l: Option<f64>,
    pub gamma: f64,
    pub steps: i64,
    /// ||x^0 − x^K|| (for a group: the root mean square over its runs).
    pub dist0: Option<f64>,
    pub sigma2: Option<f64>,
    pub bound: Option<BoundAt>,
    pub observed: Option<Observed>,
}

impl SgdBound {
    pub fn applicable(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Why Theorem 1 (plain SGD, constant step) does not describe how `run` was
/// trained; empty when it does.
pub fn optimiser_reasons(run: &RunData) -> Vec<String> {
    let c = &run.config;
    let mut out = Vec::new();
    if let Some(t) = &run.trainer {
        // Its loop may clip gradients, skip steps or change the rate: abcond
        // saw the steps it recorded, not the update rule.
        out.push(format!(
            "the run was trained by a PyTorch loop ({}), whose update rule abcond did not see",
            t.name
        ));
        return out;
    }
    if c.optim.name != OptimName::Sgd {
        out.push(format!(
            "optimiser `{}` is not SGD",
            serde_yaml::to_string(&c.optim.name)
                .unwrap_or_default()
                .trim()
        ));
    } else {
        if let Some(m) = c.optim.momentum.filter(|m| *m != 0.0) {
            out.push(format!(
                "SGD with momentum {m} (the theorem is for plain SGD)"
            ));
        }
        if let Some(w) = c.optim.weight_decay.filter(|w| *w != 0.0) {
            out.push(format!(
                "weight decay {w} makes SGD minimise f + ({w}/2)·||x||², not f"
            ));
        }
    }
    if c.schedule.name != ScheduleName::Constant {
        out.push(format!(
            "schedule `{}` is not constant (the theorem takes a constant gamma; gamma = optim.lr is its peak)",
            serde_yaml::to_string(&c.schedule.name)
                .unwrap_or_default()
                .trim()
        ));
    }
    out
}

/// ||x^0 − x^K|| from the landscape rows at step 0.
pub fn dist0(run: &RunData) -> Option<f64> {
    run.rows.iter().find(|r| r.step == 0).map(|r| r.dist)
}

/// Minimises the bound over `region` ∩ {alpha − beta ≥ 2·L·gamma} and fills
/// `b.bound`, adding a reason when no feasible pair allows gamma. Needs
/// `b.l`, `b.dist0`, `b.sigma2`, `b.gamma`, `b.steps`.
pub fn evaluate(b: &mut SgdBound, region: &Region) {
    let (Some(l), Some(d), Some(s2)) = (b.l, b.dist0, b.sigma2) else {
        return;
    };
    if region.is_empty() {
        b.reasons
            .push("the feasible (alpha, beta) region is empty".into());
        return;
    }
    if s2 < 0.0 {
        b.reasons.push(format!(
            "the sigma_int² estimate {s2} is negative (sigma² = E[f* − f_i*] ≥ 0)"
        ));
        return;
    }
    let gap = 2.0 * l * b.gamma;
    let usable = region.clip(&HalfPlane {
        p: -1.0,
        q: 1.0,
        r: -gap,
    });
    if usable.is_empty() {
        b.reasons.push(format!(
            "gamma = {} > (alpha − beta)/(2L) for every feasible pair: 2·L·gamma = {} but alpha − beta ≤ {} in the region",
            b.gamma,
            gap,
            region.max_gap().unwrap_or(f64::NAN)
        ));
        return;
    }
    let c = d * d / (b.steps as f64 * b.gamma) + 2.0 * l * b.gamma * s2;
    let Some(at) = usable.min_fraction([c, 0.0, 2.0 * s2], [0.0, 1.0, -1.0]) else {
        return;
    };
    let terms = if at.attained {
        let g = at.alpha - at.beta;
        [
            d * d / (b.steps as f64 * b.gamma * g),
            2.0 * l * b.gamma * s2 / g,
            2.0 * at.beta * s2 / g,
        ]
    } else {
        [0.0, 0.0, at.value]
    };
    b.bound = Some(BoundAt { at, terms });
}

/// Theorem 1 for each run of a group (`sigma`: per run (index, sigma_int²,
/// f(x^K))) and for the group as a whole (dist² and the observed gap averaged
/// over its runs, sigma_int² the group's). L is the group's minibatch estimate.
pub fn for_group(
    runs: &[RunData],
    ris: &[usize],
    region: &Region,
    curvature: &Curvature,
    sigma: &[(usize, f64, f64)],
    group_sigma2: Option<f64>,
) -> (SgdBound, Vec<(usize, SgdBound)>) {
    let l = curvature.minibatch.as_ref().map(|m| m.value);
    let mut per_run = Vec::new();
    let mut group_reasons: Vec<String> = Vec::new();
    for &ri in ris {
        let run = &runs[ri];
        let sig = sigma.iter().find(|s| s.0 == ri);
        let mut b = SgdBound {
            reasons: optimiser_reasons(run),
            l,
            gamma: run.config.optim.lr,
            // K: the number of training steps (steps.parquet), else the
            // reference step of the rows (−1 for projection and cloud rows).
            steps: if run.steps.is_empty() {
                run.rows.iter().map(|r| r.ref_step).max().unwrap_or(0)
            } else {
                run.steps.len() as i64
            },
            dist0: dist0(run),
            sigma2: sig.map(|s| s.1),
            bound: None,
            observed: observed(run, sig.map(|s| s.2)),
        };
        if l.is_none() {
            b.reasons.push(
                "no curvature rows of minibatches (probe.curvature with probes train or extra) to estimate L"
                    .into(),
            );
        }
        if b.dist0.is_none() {
            b.reasons.push(
                "x^0 was not probed: no landscape row at step 0 for dist(x^0, S) ≈ ||x^0 − x^K||"
                    .into(),
            );
        }
        if b.sigma2.is_none() {
            b.reasons.push("no sigma_int² estimate".into());
        }
        if run
            .rows
            .iter()
            .any(|r| r.step >= 0 && r.ref_step < 0 && matches!(r.probe, ProbeLabel::Component(_)))
        {
            b.reasons
                .push("the rows are a point-cloud probe, not a training trajectory".into());
        }
        if b.steps <= 0 {
            b.reasons
                .push("the number of training steps K is unknown".into());
        }
        for r in &b.reasons {
            if !group_reasons.contains(r) {
                group_reasons.push(r.clone());
            }
        }
        evaluate(&mut b, region);
        per_run.push((ri, b));
    }
    let n = per_run.len() as f64;
    let all = |f: &dyn Fn(&SgdBound) -> Option<f64>| -> Option<Vec<f64>> {
        per_run.iter().map(|(_, b)| f(b)).collect()
    };
    let mut g = SgdBound {
        reasons: group_reasons,
        l,
        gamma: per_run.first().map_or(f64::NAN, |b| b.1.gamma),
        steps: per_run.first().map_or(0, |b| b.1.steps),
        dist0: all(&|b| b.dist0).map(|d| (d.iter().map(|x| x * x).sum::<f64>() / n).sqrt()),
        sigma2: group_sigma2,
        bound: None,
        observed: all(&|b| b.observed.as_ref().map(|o| o.value)).map(|v| Observed {
            value: v.iter().sum::<f64>() / n,
            step: None,
            from: per_run[0].1.observed.as_ref().unwrap().from,
        }),
    };
    evaluate(&mut g, region);
    (g, per_run)
}

//! The analysis's numbers as one typed structure, [`Summary`]: serialised as
//! summary.yaml (for scripts), and the source of the printed summary and of
//! report.md's tables ([`GroupSummary::facts`]), so that the three never
//! disagree. Field order is the key order of summary.yaml.

use super::alphabeta::{GapOne, LeastViolation, SmallestAlpha};
use super::result::{aggregate, origin, Analysis, GroupResult};
use super::{bound, conditions::RunConditions};
use crate::store::tables::LandscapeRow;
use serde::{Serialize, Serializer};
use serde_yaml::{Mapping, Value};

pub const SUMMARY_FORMAT: &str = "abcond.analysis/1";

/// Theorem 1 and the approximations abcond evaluates it with.
pub const BOUND_TEXT: &str = "Theorem 1 (SGD, constant gamma ≤ (alpha − beta)/(2L)): min_k E[f(x^k) − f*] ≤ dist(x^0,S)²/(K·gamma·(alpha − beta)) + 2·L·gamma·sigma²/(alpha − beta) + 2·beta·sigma²/(alpha − beta), minimised over the feasible (alpha, beta) with alpha − beta ≥ 2·L·gamma; dist(x^0,S) ≈ ||x^0 − x^K||, sigma² = sigma_int², f* ≈ f(x^K), L = max |λ| of the probed minibatch Hessians, gamma = optim.lr";

const SLACK_TEXT: &str =
    "T = inner − alpha·(loss_k − loss_ref) + beta·(loss_k − f_i*) (the definition's +beta)";

/// A number of summary.yaml: finite values as YAML floats, ±∞ and NaN as the
/// strings `.inf`, `-.inf` and `.nan`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v > 0.0 {
            s.serialize_str(".inf")
        } else if v < 0.0 {
            s.serialize_str("-.inf")
        } else {
            s.serialize_str(".nan")
        }
    }
}

type Pair = [Num; 2];

fn pair(v: (f64, f64)) -> Pair {
    [Num(v.0), Num(v.1)]
}

fn num(v: Option<f64>) -> Option<Num> {
    v.map(Num)
}

/// Where a row came from: run, step and probe label.
#[derive(Debug, Clone, Serialize)]
pub struct Origin {
    pub run_id: String,
    pub step: i64,
    pub probe: String,
}

impl Origin {
    fn of(r: &LandscapeRow) -> Origin {
        Origin {
            run_id: r.run_id.clone(),
            step: r.step,
            probe: r.probe.to_string(),
        }
    }
    pub fn text(&self) -> String {
        format!("{} step {} {}", self.run_id, self.step, self.probe)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub format: &'static str,
    pub created: String,
    pub abcond_version: &'static str,
    pub settings: Value,
    pub slack: &'static str,
    pub sgd_bound: &'static str,
    pub runs: Vec<RunEntry>,
    pub skipped: Vec<String>,
    pub groups: Vec<GroupSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    pub run_id: String,
    pub seed: i64,
    pub dir: String,
    pub landscape_rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub label: String,
    pub sweep: Mapping,
    pub runs: Vec<String>,
    pub rows: u64,
    pub alpha_beta: AlphaBeta,
    pub interpolation: Interpolation,
    /// The conditions of the group (worst case over its runs); null without
    /// full-data probe rows.
    pub aiming: Option<Aiming>,
    pub pl: Option<Vec<Pl>>,
    pub qcvx: Option<Qcvx>,
    pub curvature: CurvatureSummary,
    pub sgd_bound: GroupBound,
    pub per_run: Vec<RunConditionsEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlphaBeta {
    /// "bounded", "unbounded" or "empty".
    pub region: &'static str,
    pub vertices: Vec<Pair>,
    pub ray_first: Option<Pair>,
    pub ray_last: Option<Pair>,
    pub smallest_alpha: Option<SmallestAlphaEntry>,
    pub beta_alpha_minus_one: Option<GapOneEntry>,
    pub best_ratio: Option<BestRatioEntry>,
    /// Empty region only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub least_violation: Option<LeastViolationEntry>,
    /// Empty region only: the rows most violated at `least_violation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub most_violating: Option<Vec<ViolationEntry>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmallestAlphaEntry {
    pub alpha: Num,
    pub beta_min: Num,
    pub beta_max: Num,
}

#[derive(Debug, Clone, Serialize)]
pub struct GapOneEntry {
    pub alpha: Num,
    pub beta: Num,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<Origin>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BestRatioEntry {
    pub alpha: Num,
    pub beta: Num,
    pub beta_over_gap: Num,
    pub attained: bool,
    pub direction: Option<Pair>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeastViolationEntry {
    pub alpha: Num,
    pub beta: Num,
    pub min_slack: Num,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViolationEntry {
    #[serde(flatten)]
    pub origin: Origin,
    pub slack: Num,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interpolation {
    pub sigma_int2: Option<Num>,
    pub beta_sigma_int2: Option<Num>,
    pub bound_term: Option<Num>,
    pub per_run: Vec<SigmaEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SigmaEntry {
    pub run_id: String,
    pub sigma_int2: Num,
    pub f_ref: Num,
    pub f_ref_from: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Aiming {
    pub steps: u64,
    pub fail_steps: u64,
    pub fail_share: Num,
    pub theta: Option<Num>,
    pub min_cos: Option<Num>,
    pub min_cos_step: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pl {
    pub delta: Num,
    pub log_2mu_min: Option<Num>,
    pub mu: Option<Num>,
    pub step: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Qcvx {
    pub theta_lo: Num,
    pub theta_hi: Num,
    pub holds: bool,
}

/// The Aiming, PL and QCvx constants of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunConditionsEntry {
    pub run_id: String,
    pub aiming: Aiming,
    pub pl: Vec<Pl>,
    pub qcvx: Qcvx,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvatureSummary {
    pub rows: u64,
    pub unconverged: u64,
    #[serde(rename = "L_minibatch")]
    pub l_minibatch: Option<SmoothnessEntry>,
    #[serde(rename = "L_full")]
    pub l_full: Option<SmoothnessEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmoothnessEntry {
    pub value: Num,
    #[serde(flatten)]
    pub origin: Origin,
}

/// Theorem 1 for one run or a group.
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    pub applicable: bool,
    pub not_applicable_because: Vec<String>,
    #[serde(rename = "L")]
    pub l: Option<Num>,
    pub gamma: Num,
    #[serde(rename = "K")]
    pub k: i64,
    pub dist0: Option<Num>,
    pub sigma_int2: Option<Num>,
    pub bound: Option<Num>,
    pub alpha: Option<Num>,
    pub beta: Option<Num>,
    pub attained: Option<bool>,
    pub direction: Option<Pair>,
    pub terms: Option<BoundTerms>,
    pub observed: Option<ObservedEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoundTerms {
    pub initial_distance: Num,
    pub step_size: Num,
    pub interpolation: Num,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObservedEntry {
    pub min_gap: Num,
    pub step: Option<i64>,
    pub from: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupBound {
    #[serde(flatten)]
    pub bound: Bound,
    pub per_run: Vec<RunBound>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunBound {
    pub run_id: String,
    #[serde(flatten)]
    pub bound: Bound,
}

fn aiming(c: &RunConditions) -> Aiming {
    Aiming {
        steps: c.steps as u64,
        fail_steps: c.aiming_fail_steps as u64,
        fail_share: Num(c.aiming_fail_steps as f64 / c.steps.max(1) as f64),
        theta: num(c.aiming_theta),
        min_cos: num(c.min_cos),
        min_cos_step: c.min_cos_step,
    }
}

fn pl(c: &RunConditions) -> Vec<Pl> {
    c.pl.iter()
        .map(|(d, best)| Pl {
            delta: Num(*d),
            log_2mu_min: best.map(|b| Num(b.0)),
            mu: best.map(|b| Num(b.2)),
            step: best.map(|b| b.1),
        })
        .collect()
}

fn qcvx(c: &RunConditions) -> Qcvx {
    Qcvx {
        theta_lo: Num(c.qcvx_theta_lo),
        theta_hi: Num(c.qcvx_theta_hi),
        holds: c.qcvx_holds(),
    }
}

fn bound_entry(b: &bound::SgdBound) -> Bound {
    let best = b.bound.as_ref();
    Bound {
        applicable: b.applicable(),
        not_applicable_because: b.reasons.clone(),
        l: num(b.l),
        gamma: Num(b.gamma),
        k: b.steps,
        dist0: num(b.dist0),
        sigma_int2: num(b.sigma2),
        bound: best.map(|x| Num(x.at.value)),
        alpha: best.map(|x| Num(x.at.alpha)),
        beta: best.map(|x| Num(x.at.beta)),
        attained: best.map(|x| x.at.attained),
        direction: best.and_then(|x| x.at.direction).map(pair),
        terms: best.map(|x| BoundTerms {
            initial_distance: Num(x.terms[0]),
            step_size: Num(x.terms[1]),
            interpolation: Num(x.terms[2]),
        }),
        observed: b.observed.as_ref().map(|o| ObservedEntry {
            min_gap: Num(o.value),
            step: o.step,
            from: o.from,
        }),
    }
}

fn smoothness(a: &Analysis, s: &Option<bound::Smoothness>) -> Option<SmoothnessEntry> {
    s.as_ref().map(|m| SmoothnessEntry {
        value: Num(m.value),
        origin: Origin {
            run_id: a.runs[m.run].run_id.clone(),
            step: m.step,
            probe: m.probe.to_string(),
        },
    })
}

fn alpha_beta(a: &Analysis, g: &GroupResult) -> AlphaBeta {
    let ab = &g.ab;
    let least =
        ab.least_violation.map(
            |LeastViolation { alpha, beta, slack }| LeastViolationEntry {
                alpha: Num(alpha),
                beta: Num(beta),
                min_slack: Num(slack),
            },
        );
    AlphaBeta {
        region: ab.region.kind(),
        vertices: ab.region.vertices.iter().map(|v| pair(*v)).collect(),
        ray_first: ab.region.ray_first.map(pair),
        ray_last: ab.region.ray_last.map(pair),
        smallest_alpha: ab.min_alpha.map(
            |SmallestAlpha {
                 alpha,
                 beta_min,
                 beta_max,
             }| SmallestAlphaEntry {
                alpha: Num(alpha),
                beta_min: Num(beta_min),
                beta_max: Num(beta_max),
            },
        ),
        beta_alpha_minus_one: ab.gap_one.map(|GapOne { alpha, binding }| GapOneEntry {
            alpha: Num(alpha),
            beta: Num(alpha - 1.0),
            binding: binding.map(|i| Origin::of(origin(a, g, i))),
        }),
        best_ratio: ab.best.as_ref().map(|b| BestRatioEntry {
            alpha: Num(b.alpha),
            beta: Num(b.beta),
            beta_over_gap: Num(b.ratio),
            attained: b.attained,
            direction: b.direction.map(pair),
        }),
        most_violating: least.as_ref().map(|_| {
            ab.most_violating
                .iter()
                .map(|v| ViolationEntry {
                    origin: Origin::of(origin(a, g, v.row)),
                    slack: Num(v.slack),
                })
                .collect()
        }),
        least_violation: least,
    }
}

fn group(a: &Analysis, g: &GroupResult) -> GroupSummary {
    let run_id = |ri: usize| a.runs[ri].run_id.clone();
    let conditions = aggregate(g);
    GroupSummary {
        label: g.group.label.clone(),
        sweep: g
            .group
            .values
            .iter()
            .map(|(k, v)| (Value::String(k.clone()), v.clone()))
            .collect(),
        runs: g.group.runs.iter().map(|&ri| run_id(ri)).collect(),
        rows: g.ab.rows.len() as u64,
        alpha_beta: alpha_beta(a, g),
        interpolation: Interpolation {
            sigma_int2: num(g.sigma_int2()),
            beta_sigma_int2: num(g.bound_terms().map(|t| t.0)),
            bound_term: num(g.bound_terms().map(|t| t.1)),
            per_run: g
                .sigma
                .iter()
                .map(|s| SigmaEntry {
                    run_id: run_id(s.run),
                    sigma_int2: Num(s.sigma_int2),
                    f_ref: Num(s.f_ref),
                    f_ref_from: if s.from_full {
                        "full-data probe"
                    } else {
                        "mean minibatch loss at x^K"
                    },
                })
                .collect(),
        },
        aiming: conditions.as_ref().map(aiming),
        pl: conditions.as_ref().map(pl),
        qcvx: conditions.as_ref().map(qcvx),
        curvature: CurvatureSummary {
            rows: g.curvature.rows as u64,
            unconverged: g.curvature.unconverged as u64,
            l_minibatch: smoothness(a, &g.curvature.minibatch),
            l_full: smoothness(a, &g.curvature.full),
        },
        sgd_bound: GroupBound {
            bound: bound_entry(&g.bound),
            per_run: g
                .run_bounds
                .iter()
                .map(|(ri, b)| RunBound {
                    run_id: run_id(*ri),
                    bound: bound_entry(b),
                })
                .collect(),
        },
        per_run: g
            .conditions
            .iter()
            .map(|c| RunConditionsEntry {
                run_id: run_id(c.run),
                aiming: aiming(&c.constants),
                pl: pl(&c.constants),
                qcvx: qcvx(&c.constants),
            })
            .collect(),
    }
}

impl Summary {
    pub fn of(a: &Analysis) -> Summary {
        Summary {
            format: SUMMARY_FORMAT,
            created: crate::util::now_rfc3339(),
            abcond_version: env!("CARGO_PKG_VERSION"),
            settings: serde_yaml::to_value(&a.settings).unwrap_or(Value::Null),
            slack: SLACK_TEXT,
            sgd_bound: BOUND_TEXT,
            runs: a
                .runs
                .iter()
                .map(|r| RunEntry {
                    run_id: r.run_id.clone(),
                    seed: r.seed,
                    dir: r.dir.display().to_string(),
                    landscape_rows: r.rows.len() as u64,
                })
                .collect(),
            skipped: a.skipped.clone(),
            groups: a.groups.iter().map(|g| group(a, g)).collect(),
        }
    }

    /// summary.yaml's text.
    pub fn yaml(&self) -> anyhow::Result<String> {
        Ok(crate::util::yaml11_floats(&serde_yaml::to_string(self)?))
    }
}

/// One line of the printed summary and one row of report.md's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

fn fmt(v: Num) -> String {
    super::plots::num(v.0)
}

fn fmt_opt(v: Option<Num>) -> String {
    v.map_or("–".into(), fmt)
}

impl GroupSummary {
    /// The group's landmarks and constants in words, in the order they are
    /// printed; `margin` is the analysis's alpha − beta margin.
    pub fn facts(&self, margin: f64) -> Vec<Fact> {
        let mut out = Vec::new();
        let mut fact = |label: &'static str, value: String| out.push(Fact { label, value });
        let ab = &self.alpha_beta;
        fact(
            "feasible region",
            format!("{} ({} vertices)", ab.region, ab.vertices.len()),
        );
        if let Some(m) = &ab.smallest_alpha {
            fact(
                "smallest alpha",
                format!(
                    "{} (beta in [{}, {}])",
                    fmt(m.alpha),
                    fmt(m.beta_min),
                    fmt(m.beta_max)
                ),
            );
        }
        fact(
            "beta = alpha − 1",
            match &ab.beta_alpha_minus_one {
                Some(g) => format!(
                    "smallest alpha {}{}",
                    fmt(g.alpha),
                    g.binding
                        .as_ref()
                        .map(|o| format!(" (binding: {})", o.text()))
                        .unwrap_or_default()
                ),
                None if margin > 1.0 => {
                    format!("outside the domain (alpha − beta = 1 < margin {margin})")
                }
                None => "no alpha works".into(),
            },
        );
        if let Some(b) = &ab.best_ratio {
            let along = match (b.attained, b.direction) {
                (true, _) => String::new(),
                (false, d) => {
                    let d = d.unwrap_or([Num(0.0), Num(0.0)]);
                    format!(
                        ", approached along direction ({:.3}, {:.3})",
                        d[0].0, d[1].0
                    )
                }
            };
            fact(
                "min beta/(alpha − beta)",
                format!(
                    "{} at (alpha, beta) = ({}, {}){along}",
                    fmt(b.beta_over_gap),
                    fmt(b.alpha),
                    fmt(b.beta)
                ),
            );
        }
        if let Some(l) = &ab.least_violation {
            fact(
                "no (alpha, beta) works",
                format!(
                    "least worst slack {} at ({}, {})",
                    fmt(l.min_slack),
                    fmt(l.alpha),
                    fmt(l.beta)
                ),
            );
            let rows: Vec<String> = ab
                .most_violating
                .iter()
                .flatten()
                .map(|v| format!("{}: T = {}", v.origin.text(), fmt(v.slack)))
                .collect();
            fact("most violating rows", rows.join("; "));
        }
        let i = &self.interpolation;
        if let Some(s) = i.sigma_int2 {
            let terms = match (i.beta_sigma_int2, i.bound_term) {
                (Some(bs), Some(bt)) => format!(
                    "; beta·sigma² = {}, 2beta·sigma²/(alpha − beta) = {}",
                    fmt(bs),
                    fmt(bt)
                ),
                _ => String::new(),
            };
            fact("sigma_int² at x^K", format!("{}{terms}", fmt(s)));
        }
        let c = &self.curvature;
        if c.rows > 0 {
            let at = |m: &Option<SmoothnessEntry>| {
                m.as_ref().map_or("–".into(), |m| {
                    format!("{} ({})", fmt(m.value), m.origin.text())
                })
            };
            fact(
                "curvature",
                format!(
                    "L = max abs(λ) of the minibatch Hessians {}; of f {}; {} rows, {} not converged",
                    at(&c.l_minibatch),
                    at(&c.l_full),
                    c.rows,
                    c.unconverged
                ),
            );
            let b = &self.sgd_bound.bound;
            let observed = b
                .observed
                .as_ref()
                .map_or("–".into(), |o| format!("{} ({})", fmt(o.min_gap), o.from));
            let value = match (&b.bound, &b.terms) {
                (Some(v), Some(t)) => format!(
                    "{} = {} (initial distance) + {} (step size) + {} (interpolation) at (alpha, beta) = ({}, {}){}, gamma {}; observed min_k f(x^k) − f* = {observed}",
                    fmt(*v),
                    fmt(t.initial_distance),
                    fmt(t.step_size),
                    fmt(t.interpolation),
                    fmt_opt(b.alpha),
                    fmt_opt(b.beta),
                    if b.attained == Some(false) {
                        ", approached along an unbounded edge"
                    } else {
                        ""
                    },
                    fmt(b.gamma)
                ),
                _ => format!("not evaluated; observed min_k f(x^k) − f* = {observed}"),
            };
            fact("SGD bound (Theorem 1)", value);
            if !b.applicable {
                fact(
                    "Theorem 1",
                    format!("not applicable: {}", b.not_applicable_because.join("; ")),
                );
            }
        }
        match (&self.aiming, &self.pl, &self.qcvx) {
            (Some(am), Some(pl), Some(q)) => {
                fact(
                    "Aiming",
                    format!(
                        "fails at {}/{} steps (min cos {}), theta ≤ {}",
                        am.fail_steps,
                        am.steps,
                        fmt_opt(am.min_cos),
                        fmt_opt(am.theta)
                    ),
                );
                fact(
                    "QCvx",
                    if q.holds {
                        format!(
                            "holds for theta in [{}, {}]",
                            fmt(q.theta_lo),
                            fmt(q.theta_hi)
                        )
                    } else {
                        "fails".into()
                    },
                );
                let mus: Vec<String> = pl
                    .iter()
                    .map(|p| format!("delta {}: {}", p.delta.0, fmt_opt(p.mu)))
                    .collect();
                fact("PL mu", mus.join(", "));
            }
            _ => fact(
                "Aiming/PL",
                "no full-data probe rows (probe.full: true measures them)".into(),
            ),
        }
        out
    }
}

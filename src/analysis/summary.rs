//! summary.yaml: the analysis's numbers for scripts (landmarks, constants,
//! the SGD bound), per group and per run.

use super::alphabeta::{GapOne, LeastViolation};
use super::result::{aggregate, origin, Analysis};
use super::{bound, conditions::RunConditions};
use crate::store::tables::LandscapeRow;
use serde_yaml::{Mapping, Value};

pub const SUMMARY_FORMAT: &str = "abcond.analysis/1";

/// Theorem 1 and the approximations abcond evaluates it with.
pub const BOUND_TEXT: &str = "Theorem 1 (SGD, constant gamma ≤ (alpha − beta)/(2L)): min_k E[f(x^k) − f*] ≤ dist(x^0,S)²/(K·gamma·(alpha − beta)) + 2·L·gamma·sigma²/(alpha − beta) + 2·beta·sigma²/(alpha − beta), minimised over the feasible (alpha, beta) with alpha − beta ≥ 2·L·gamma; dist(x^0,S) ≈ ||x^0 − x^K||, sigma² = sigma_int², f* ≈ f(x^K), L = max |λ| of the probed minibatch Hessians, gamma = optim.lr";

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Mapping(m)
}

fn f(v: f64) -> Value {
    if v.is_finite() {
        Value::from(v)
    } else if v > 0.0 {
        Value::String(".inf".into())
    } else if v < 0.0 {
        Value::String("-.inf".into())
    } else {
        Value::String(".nan".into())
    }
}

fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Null, f)
}

fn pair(v: (f64, f64)) -> Value {
    Value::Sequence(vec![f(v.0), f(v.1)])
}

fn origin_yaml(r: &LandscapeRow) -> Vec<(&'static str, Value)> {
    vec![
        ("run_id", Value::from(r.run_id.clone())),
        ("step", Value::from(r.step)),
        ("probe", Value::from(r.probe.to_string())),
    ]
}

/// Aiming, PL and QCvx constants (of one run or a group) as summary.yaml entries.
fn conditions_yaml(c: &RunConditions) -> Vec<(&'static str, Value)> {
    vec![
        (
            "aiming",
            map(vec![
                ("steps", Value::from(c.steps as u64)),
                ("fail_steps", Value::from(c.aiming_fail_steps as u64)),
                (
                    "fail_share",
                    f(c.aiming_fail_steps as f64 / c.steps.max(1) as f64),
                ),
                ("theta", opt(c.aiming_theta)),
                ("min_cos", opt(c.min_cos)),
                (
                    "min_cos_step",
                    c.min_cos_step.map_or(Value::Null, Value::from),
                ),
            ]),
        ),
        (
            "pl",
            Value::Sequence(
                c.pl.iter()
                    .map(|(d, best)| {
                        map(vec![
                            ("delta", f(*d)),
                            ("log_2mu_min", opt(best.map(|b| b.0))),
                            ("mu", opt(best.map(|b| b.2))),
                            ("step", best.map_or(Value::Null, |b| Value::from(b.1))),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "qcvx",
            map(vec![
                ("theta_lo", f(c.qcvx_theta_lo)),
                ("theta_hi", f(c.qcvx_theta_hi)),
                ("holds", Value::from(c.qcvx_holds())),
            ]),
        ),
    ]
}

/// Theorem 1 (of one run or a group) as summary.yaml entries.
fn bound_yaml(b: &bound::SgdBound) -> Vec<(&'static str, Value)> {
    let best = b.bound.as_ref();
    vec![
        ("applicable", Value::from(b.applicable())),
        (
            "not_applicable_because",
            Value::Sequence(b.reasons.iter().map(|r| Value::from(r.clone())).collect()),
        ),
        ("L", opt(b.l)),
        ("gamma", f(b.gamma)),
        ("K", Value::from(b.steps)),
        ("dist0", opt(b.dist0)),
        ("sigma_int2", opt(b.sigma2)),
        ("bound", opt(best.map(|x| x.at.value))),
        ("alpha", opt(best.map(|x| x.at.alpha))),
        ("beta", opt(best.map(|x| x.at.beta))),
        (
            "attained",
            best.map_or(Value::Null, |x| Value::from(x.at.attained)),
        ),
        (
            "direction",
            best.and_then(|x| x.at.direction).map_or(Value::Null, pair),
        ),
        (
            "terms",
            best.map_or(Value::Null, |x| {
                map(vec![
                    ("initial_distance", f(x.terms[0])),
                    ("step_size", f(x.terms[1])),
                    ("interpolation", f(x.terms[2])),
                ])
            }),
        ),
        (
            "observed",
            b.observed.as_ref().map_or(Value::Null, |o| {
                map(vec![
                    ("min_gap", f(o.value)),
                    ("step", o.step.map_or(Value::Null, Value::from)),
                    ("from", Value::from(o.from)),
                ])
            }),
        ),
    ]
}

fn smoothness_yaml(a: &Analysis, s: &Option<bound::Smoothness>) -> Value {
    s.as_ref().map_or(Value::Null, |m| {
        map(vec![
            ("value", f(m.value)),
            ("run_id", Value::from(a.runs[m.run].run_id.clone())),
            ("step", Value::from(m.step)),
            ("probe", Value::from(m.probe.to_string())),
        ])
    })
}

pub fn summary_yaml(a: &Analysis) -> Value {
    let s = &a.settings;
    let groups: Vec<Value> = a
        .groups
        .iter()
        .map(|g| {
            let ab = &g.ab;
            let mut abv = vec![
                ("region", Value::from(ab.region.kind())),
                (
                    "vertices",
                    Value::Sequence(ab.region.vertices.iter().map(|v| pair(*v)).collect()),
                ),
                ("ray_first", ab.region.ray_first.map_or(Value::Null, pair)),
                ("ray_last", ab.region.ray_last.map_or(Value::Null, pair)),
            ];
            abv.push((
                "smallest_alpha",
                ab.min_alpha.map_or(Value::Null, |m| {
                    let (al, lo, hi) = (m.alpha, m.beta_min, m.beta_max);
                    map(vec![
                        ("alpha", f(al)),
                        ("beta_min", f(lo)),
                        ("beta_max", f(hi)),
                    ])
                }),
            ));
            abv.push((
                "beta_alpha_minus_one",
                ab.gap_one.map_or(
                    Value::Null,
                    |GapOne {
                         alpha: al,
                         binding: bind,
                     }| {
                        let mut e = vec![("alpha", f(al)), ("beta", f(al - 1.0))];
                        if let Some(i) = bind {
                            e.push(("binding", map(origin_yaml(origin(a, g, i)))));
                        }
                        map(e)
                    },
                ),
            ));
            abv.push((
                "best_ratio",
                ab.best.as_ref().map_or(Value::Null, |b| {
                    map(vec![
                        ("alpha", f(b.alpha)),
                        ("beta", f(b.beta)),
                        ("beta_over_gap", f(b.ratio)),
                        ("attained", Value::from(b.attained)),
                        ("direction", b.direction.map_or(Value::Null, pair)),
                    ])
                }),
            ));
            if let Some(LeastViolation {
                alpha: al,
                beta: be,
                slack: t,
            }) = ab.least_violation
            {
                abv.push((
                    "least_violation",
                    map(vec![("alpha", f(al)), ("beta", f(be)), ("min_slack", f(t))]),
                ));
                abv.push((
                    "most_violating",
                    Value::Sequence(
                        ab.most_violating
                            .iter()
                            .map(|v| {
                                let mut e = origin_yaml(origin(a, g, v.row));
                                e.push(("slack", f(v.slack)));
                                map(e)
                            })
                            .collect(),
                    ),
                ));
            }
            let interp = map(vec![
                ("sigma_int2", opt(g.sigma_int2())),
                ("beta_sigma_int2", opt(g.bound_terms().map(|t| t.0))),
                ("bound_term", opt(g.bound_terms().map(|t| t.1))),
                (
                    "per_run",
                    Value::Sequence(
                        g.sigma
                            .iter()
                            .map(|s| {
                                map(vec![
                                    ("run_id", Value::from(a.runs[s.run].run_id.clone())),
                                    ("sigma_int2", f(s.sigma_int2)),
                                    ("f_ref", f(s.f_ref)),
                                    (
                                        "f_ref_from",
                                        Value::from(if s.from_full {
                                            "full-data probe"
                                        } else {
                                            "mean minibatch loss at x^K"
                                        }),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]);
            let per_run: Vec<Value> = g
                .conditions
                .iter()
                .map(|c| {
                    let mut e = vec![("run_id", Value::from(a.runs[c.run].run_id.clone()))];
                    e.extend(conditions_yaml(&c.constants));
                    map(e)
                })
                .collect();
            let conditions = aggregate(g)
                .map(|c| conditions_yaml(&c))
                .unwrap_or_else(|| {
                    ["aiming", "pl", "qcvx"]
                        .into_iter()
                        .map(|k| (k, Value::Null))
                        .collect()
                });
            let mut entries = vec![
                ("label", Value::from(g.group.label.clone())),
                (
                    "sweep",
                    map(g
                        .group
                        .values
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect()),
                ),
                (
                    "runs",
                    Value::Sequence(
                        g.group
                            .runs
                            .iter()
                            .map(|&ri| Value::from(a.runs[ri].run_id.clone()))
                            .collect(),
                    ),
                ),
                ("rows", Value::from(ab.rows.len() as u64)),
                ("alpha_beta", map(abv)),
                ("interpolation", interp),
            ];
            entries.extend(conditions);
            entries.push((
                "curvature",
                map(vec![
                    ("rows", Value::from(g.curvature.rows as u64)),
                    ("unconverged", Value::from(g.curvature.unconverged as u64)),
                    ("L_minibatch", smoothness_yaml(a, &g.curvature.minibatch)),
                    ("L_full", smoothness_yaml(a, &g.curvature.full)),
                ]),
            ));
            let mut sgd = bound_yaml(&g.bound);
            sgd.push((
                "per_run",
                Value::Sequence(
                    g.run_bounds
                        .iter()
                        .map(|(ri, b)| {
                            let mut e = vec![("run_id", Value::from(a.runs[*ri].run_id.clone()))];
                            e.extend(bound_yaml(b));
                            map(e)
                        })
                        .collect(),
                ),
            ));
            entries.push(("sgd_bound", map(sgd)));
            entries.push(("per_run", Value::Sequence(per_run)));
            map(entries)
        })
        .collect();
    map(vec![
        ("format", Value::from(SUMMARY_FORMAT)),
        ("created", Value::from(crate::util::now_rfc3339())),
        ("abcond_version", Value::from(env!("CARGO_PKG_VERSION"))),
        ("settings", serde_yaml::to_value(s).unwrap_or(Value::Null)),
        (
            "slack",
            Value::from("T = inner − alpha·(loss_k − loss_ref) + beta·(loss_k − f_i*) (the definition's +beta)"),
        ),
        (
            "sgd_bound",
            Value::from(BOUND_TEXT),
        ),
        (
            "runs",
            Value::Sequence(
                a.runs
                    .iter()
                    .map(|r| {
                        map(vec![
                            ("run_id", Value::from(r.run_id.clone())),
                            ("seed", Value::from(r.seed)),
                            ("dir", Value::from(r.dir.display().to_string())),
                            ("landscape_rows", Value::from(r.rows.len() as u64)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "skipped",
            Value::Sequence(a.skipped.iter().map(|s| Value::from(s.clone())).collect()),
        ),
        ("groups", Value::Sequence(groups)),
    ])
}

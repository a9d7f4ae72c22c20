//! The summary abcond prints after an analysis.

use super::alphabeta::{GapOne, LeastViolation, SmallestAlpha, Violation};
use super::result::{aggregate, origin, origin_text, Analysis, GroupResult};
use super::{bound, plots};

/// The curvature and Theorem 1 lines of the printed summary (nothing
/// without curvature rows).
fn render_bound(g: &GroupResult, a: &Analysis) -> String {
    let fmt = plots::num;
    let c = &g.curvature;
    if c.rows == 0 {
        return String::new();
    }
    let mut out = String::new();
    let at = |m: &bound::Smoothness| {
        format!(
            "{} ({} step {} {})",
            fmt(m.value),
            a.runs[m.run].run_id,
            m.step,
            m.probe
        )
    };
    out.push_str(&format!(
        "  curvature: L = max |λ| of minibatch Hessians {}; of f {}; {} rows, {} not converged\n",
        c.minibatch.as_ref().map_or("-".into(), at),
        c.full.as_ref().map_or("-".into(), at),
        c.rows,
        c.unconverged
    ));
    let b = &g.bound;
    let observed = b
        .observed
        .as_ref()
        .map_or("-".into(), |o| format!("{} ({})", fmt(o.value), o.from));
    match &b.bound {
        Some(x) => out.push_str(&format!(
            "  SGD bound (Theorem 1, gamma {}): {} = {} + {} + {} at (alpha, beta) = ({}, {}){}; observed min_k f(x^k) − f* = {}\n",
            fmt(b.gamma),
            fmt(x.at.value),
            fmt(x.terms[0]),
            fmt(x.terms[1]),
            fmt(x.terms[2]),
            fmt(x.at.alpha),
            fmt(x.at.beta),
            if x.at.attained { "" } else { ", approached along an unbounded edge" },
            observed
        )),
        None => out.push_str(&format!(
            "  SGD bound (Theorem 1): not evaluated; observed min_k f(x^k) − f* = {observed}\n"
        )),
    }
    if !b.applicable() {
        out.push_str(&format!("    not applicable: {}\n", b.reasons.join("; ")));
    }
    out
}

/// The concise summary printed by `abcond analyze` and `abcond run`.
pub fn render(a: &Analysis) -> String {
    let s = &a.settings;
    let fmt = plots::num;
    let mut out = String::new();
    let rows: usize = a.runs.iter().map(|r| r.rows.len()).sum();
    out.push_str(&format!(
        "analysis: {} run(s), {} group(s), {} landscape rows; f_i* = {}, alpha ≥ beta + {}, rows: {}\n",
        a.runs.len(),
        a.groups.len(),
        rows,
        s.f_star.describe(),
        s.margin,
        if s.train_only { "i_k only" } else { "i_k and extra minibatches" }
    ));
    out.push_str("slack T = inner − alpha·(loss_k − loss_ref) + beta·(loss_k − f_i*); feasible where T ≥ 0 on every row\n");
    for g in &a.groups {
        let ab = &g.ab;
        out.push_str(&format!(
            "[{}] {} run(s), {} minibatch rows: region {}\n",
            g.group.label,
            g.group.runs.len(),
            ab.rows.len(),
            ab.region.kind()
        ));
        if let Some(SmallestAlpha {
            alpha: al,
            beta_min: lo,
            beta_max: hi,
        }) = ab.min_alpha
        {
            out.push_str(&format!(
                "  smallest alpha: {} (beta in [{}, {}])\n",
                fmt(al),
                fmt(lo),
                fmt(hi)
            ));
        }
        match ab.gap_one {
            Some(GapOne {
                alpha: al,
                binding: bind,
            }) => {
                let b = bind.map(|i| format!(" (binding: {})", origin_text(origin(a, g, i))));
                out.push_str(&format!(
                    "  beta = alpha − 1: smallest alpha {}{}\n",
                    fmt(al),
                    b.unwrap_or_default()
                ))
            }
            None if s.margin > 1.0 => out.push_str(&format!(
                "  beta = alpha − 1: outside the domain (alpha − beta = 1 < margin {})\n",
                s.margin
            )),
            None => out.push_str("  beta = alpha − 1: no alpha works\n"),
        }
        if let Some(b) = &ab.best {
            out.push_str(&format!(
                "  min beta/(alpha − beta) = {} at (alpha, beta) = ({}, {}){}\n",
                fmt(b.ratio),
                fmt(b.alpha),
                fmt(b.beta),
                if b.attained {
                    String::new()
                } else {
                    let d = b.direction.unwrap_or((0.0, 0.0));
                    format!(", approached along direction ({:.3}, {:.3})", d.0, d.1)
                }
            ));
        }
        if let Some(LeastViolation {
            alpha: al,
            beta: be,
            slack: t,
        }) = ab.least_violation
        {
            out.push_str(&format!(
                "  no (alpha, beta) works; least worst slack {} at ({}, {}); most violating rows:\n",
                fmt(t),
                fmt(al),
                fmt(be)
            ));
            for Violation { row: i, slack: sl } in &ab.most_violating {
                out.push_str(&format!(
                    "    {}: T = {}\n",
                    origin_text(origin(a, g, *i)),
                    fmt(*sl)
                ));
            }
        }
        if let Some(sig) = g.sigma_int2() {
            let terms = g
                .bound_terms()
                .map(|(bs, bt)| {
                    format!(
                        "; beta·sigma² = {}, 2beta·sigma²/(alpha − beta) = {}",
                        fmt(bs),
                        fmt(bt)
                    )
                })
                .unwrap_or_default();
            out.push_str(&format!("  sigma_int² = {}{}\n", fmt(sig), terms));
        }
        out.push_str(&render_bound(g, a));
        match aggregate(g) {
            Some(c) => {
                out.push_str(&format!(
                    "  Aiming: fails at {}/{} steps (min cos {}), theta ≤ {}; QCvx {}\n",
                    c.aiming_fail_steps,
                    c.steps,
                    c.min_cos.map_or("-".into(), fmt),
                    c.aiming_theta.map_or("-".into(), fmt),
                    if c.qcvx_holds() {
                        format!(
                            "holds for theta in [{}, {}]",
                            fmt(c.qcvx_theta_lo),
                            fmt(c.qcvx_theta_hi)
                        )
                    } else {
                        "fails".to_string()
                    }
                ));
                let pl: Vec<String> =
                    c.pl.iter()
                        .map(|(d, b)| format!("delta {d}: {}", b.map_or("-".into(), |b| fmt(b.2))))
                        .collect();
                out.push_str(&format!("  PL mu: {}\n", pl.join(", ")));
            }
            None => out.push_str(
                "  Aiming/PL: no full-data probe rows (probe.full: true measures them)\n",
            ),
        }
    }
    for n in &a.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    for s in &a.skipped {
        out.push_str(&format!("skipped: {s}\n"));
    }
    out.push_str(&format!(
        "analysis: {} ({} files{})\n",
        a.dir.display(),
        a.written.len(),
        if a.settings.plots { ", report.md" } else { "" }
    ));
    out
}

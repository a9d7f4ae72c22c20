//! The short alpha-beta summary printed at the end of `abcond run`.
//!
//! Each probe row gives a = inner, b = loss_k − loss_ref, c = loss_k − f_i*,
//! and the slack of the alpha-beta condition is
//!
//!   T(alpha, beta) = a − alpha·b + beta·c
//!
//! (the definition, with +beta; the paper's figure captions print −beta, which
//! contradicts it — see README.md). The condition holds on the measured
//! rows iff min T ≥ 0. (The exact feasible (alpha, beta) region is not computed here.)

use crate::store::tables::LandscapeRow;

/// Slack of one row at (alpha, beta) with minibatch minimum `f_star`.
pub fn slack(r: &LandscapeRow, alpha: f64, beta: f64, f_star: f64) -> f64 {
    r.inner - alpha * (r.loss_k - r.loss_ref) + beta * (r.loss_k - f_star)
}

/// Minimum slack over rows and the index of the row attaining it.
pub fn min_slack(
    rows: &[&LandscapeRow],
    alpha: f64,
    beta: f64,
    f_star: f64,
) -> Option<(f64, usize)> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| (slack(r, alpha, beta, f_star), i))
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// The smallest alpha ≥ 1 such that (alpha, beta = alpha − 1) satisfies every
/// row, with the index of the binding row; None when no alpha works.
/// T = (a − c) + alpha·(c − b) is affine in alpha, so this is exact.
pub fn smallest_alpha_beta_minus_one(
    rows: &[&LandscapeRow],
    f_star: f64,
) -> Option<(f64, Option<usize>)> {
    let mut lo = 1.0f64;
    let mut binding = None;
    let mut hi = f64::INFINITY;
    for (i, r) in rows.iter().enumerate() {
        let a = r.inner;
        let b = r.loss_k - r.loss_ref;
        let c = r.loss_k - f_star;
        let slope = c - b;
        let offset = a - c;
        if slope > 0.0 {
            let bound = -offset / slope;
            if bound > lo {
                lo = bound;
                binding = Some(i);
            }
        } else if slope < 0.0 {
            hi = hi.min(offset / -slope);
        } else if offset < 0.0 {
            return None;
        }
    }
    (lo <= hi).then_some((lo, binding))
}

/// The (alpha, beta) pairs shown in the summary.
pub const PAIRS: [(f64, f64); 6] = [
    (1.0, 0.0),
    (2.0, 0.0),
    (2.0, 1.0),
    (5.0, 4.0),
    (10.0, 9.0),
    (50.0, 49.0),
];

/// The summary as text.
pub fn render(rows: &[LandscapeRow]) -> String {
    let mini: Vec<&LandscapeRow> = rows.iter().filter(|r| r.probe != "full").collect();
    let full: Vec<&LandscapeRow> = rows.iter().filter(|r| r.probe == "full").collect();
    let mut s = String::new();
    s.push_str(&format!(
        "alpha-beta summary: {} minibatch rows (train + extra), {} full-data rows\n",
        mini.len(),
        full.len()
    ));
    s.push_str("slack T = inner − alpha·(loss_k − loss_ref) + beta·(loss_k − f_i*), f_i* = 0; the condition holds where min T ≥ 0\n");
    s.push_str(&format!(
        "{:>7} {:>7} {:>15} {:>11} {:>15}\n",
        "alpha", "beta", "min T (f_i)", "violations", "min T (f)"
    ));
    for (alpha, beta) in PAIRS {
        let m = min_slack(&mini, alpha, beta, 0.0);
        let violations = mini
            .iter()
            .filter(|r| slack(r, alpha, beta, 0.0) < 0.0)
            .count();
        let f = min_slack(&full, alpha, beta, 0.0);
        let fmt = |v: Option<(f64, usize)>| v.map_or("-".to_string(), |(x, _)| format!("{x:.4e}"));
        s.push_str(&format!(
            "{alpha:>7} {beta:>7} {:>15} {:>11} {:>15}\n",
            fmt(m),
            if mini.is_empty() {
                "-".to_string()
            } else {
                format!("{violations}/{}", mini.len())
            },
            fmt(f)
        ));
    }
    for (label, set) in [("minibatches f_i", &mini), ("full data f", &full)] {
        if set.is_empty() {
            continue;
        }
        match smallest_alpha_beta_minus_one(set, 0.0) {
            Some((a, Some(i))) => s.push_str(&format!(
                "smallest alpha with beta = alpha − 1 ({label}): {a:.4} (binding row: step {}, probe {})\n",
                set[i].step, set[i].probe
            )),
            Some((a, None)) => s.push_str(&format!(
                "smallest alpha with beta = alpha − 1 ({label}): {a:.4} (no row binds above alpha = 1)\n"
            )),
            None => s.push_str(&format!(
                "no alpha satisfies beta = alpha − 1 ({label}): some row has loss_ref = 0 and inner < loss_k\n"
            )),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(inner: f64, loss_k: f64, loss_ref: f64) -> LandscapeRow {
        LandscapeRow {
            experiment: "e".into(),
            run_id: "r".into(),
            seed: 0,
            step: 1,
            probe: "train".into(),
            batch_size: 1,
            loss_k,
            loss_ref,
            inner,
            grad_norm: 1.0,
            dist: 1.0,
            cos: 0.0,
            ref_step: 2,
            batch_indices: None,
        }
    }

    #[test]
    fn smallest_alpha_is_exact() {
        // Row: a = 0.1, loss_k = 1, loss_ref = 0.5 → T = (0.1 − 1) + alpha·0.5 ≥ 0 ⇔ alpha ≥ 1.8.
        let rows = [r(0.1, 1.0, 0.5), r(2.0, 1.0, 0.9)];
        let refs: Vec<&LandscapeRow> = rows.iter().collect();
        let (a, i) = smallest_alpha_beta_minus_one(&refs, 0.0).unwrap();
        assert!((a - 1.8).abs() < 1e-12, "{a}");
        assert_eq!(i, Some(0));
        assert!(min_slack(&refs, a, a - 1.0, 0.0).unwrap().0.abs() < 1e-12);
        assert!(min_slack(&refs, a - 1e-6, a - 1.0 - 1e-6, 0.0).unwrap().0 < 0.0);
        // The sign of beta: larger beta must never lower the slack when loss_k ≥ f*.
        assert!(slack(&rows[0], 2.0, 1.5, 0.0) > slack(&rows[0], 2.0, 1.0, 0.0));
        // loss_ref = 0 and inner < loss_k: infeasible for every alpha.
        let bad = [r(0.5, 1.0, 0.0)];
        assert!(smallest_alpha_beta_minus_one(&bad.iter().collect::<Vec<_>>(), 0.0).is_none());
    }
}

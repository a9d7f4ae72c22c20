//! The conditions the paper compares the alpha-beta condition with
//! (docs/theory.md, Other conditions),
//! measured on the full-data probe rows of one run: Aiming, the relaxed PL
//! inequality and QCvx, all with x^K standing in for Proj(x^k, S) and x*, and
//! f(x^K) for f*.
//!
//! - Aiming: <∇f(x^k), x^k − x^K> ≥ theta·f(x^k); per step the cosine, angle and
//!   coefficient inner/f(x^k); it fails at a step where inner ≤ 0 (no theta > 0
//!   works), and the best theta is the smallest coefficient.
//! - PL, relaxed: ‖∇f‖^delta ≥ (2mu)^(delta/2)·(f − f*), i.e.
//!   log(2mu) ≤ 2 log‖∇f(x^k)‖ − (2/delta) log(f(x^k) − f(x^K)) (natural logs);
//!   mu = exp(min over k)/2. Steps with f(x^k) ≤ f(x^K) impose nothing.
//! - QCvx: <∇f(x^k), x^k − x^K> ≥ theta·(f(x^k) − f(x^K)); steps with a positive
//!   gap bound theta from above, steps with a negative gap and inner < 0 from below.

use crate::store::label::ProbeLabel;
use crate::store::tables::LandscapeRow;

/// One full-data probe row turned into the Aiming/QCvx quantities.
#[derive(Debug, Clone)]
pub struct AimingRow {
    pub step: i64,
    pub loss: f64,
    pub loss_ref: f64,
    pub inner: f64,
    pub grad_norm: f64,
    pub dist: f64,
    pub cos: f64,
    /// Angle between ∇f(x^k) and x^k − x^K in degrees.
    pub angle_deg: f64,
    /// inner / f(x^k).
    pub aiming_coef: f64,
    /// f(x^k) − f(x^K).
    pub gap: f64,
    /// inner / gap where gap > 0.
    pub qcvx_ratio: Option<f64>,
}

/// One point of a relaxed-PL curve.
#[derive(Debug, Clone)]
pub struct PlRow {
    pub step: i64,
    pub delta: f64,
    /// 2 ln‖∇f(x^k)‖ − (2/delta) ln(f(x^k) − f(x^K)); None where the gap is ≤ 0.
    pub log_2mu: Option<f64>,
}

/// The minimum of one relaxed-PL curve: (min log(2mu), its step, mu).
pub type PlMin = (f64, i64, f64);

/// Per-run constants of the three conditions.
#[derive(Debug, Clone, Default)]
pub struct RunConditions {
    pub steps: usize,
    pub aiming_fail_steps: usize,
    /// The largest theta with Aiming at every step (≤ 0: Aiming fails).
    pub aiming_theta: Option<f64>,
    pub min_cos: Option<f64>,
    pub min_cos_step: Option<i64>,
    /// Per delta: (delta, min log(2mu), its step, mu), over steps with a positive gap.
    pub pl: Vec<(f64, Option<PlMin>)>,
    pub nonpositive_gap_steps: usize,
    /// QCvx: theta must lie in [theta_lo, theta_hi] (and be > 0).
    pub qcvx_theta_lo: f64,
    pub qcvx_theta_hi: f64,
}

impl RunConditions {
    /// Whether some theta > 0 satisfies QCvx at every step.
    pub fn qcvx_holds(&self) -> bool {
        self.qcvx_theta_hi > 0.0 && self.qcvx_theta_hi >= self.qcvx_theta_lo
    }
}

/// The Aiming/QCvx rows of a run's full-data probes (x^K itself excluded).
pub fn aiming_rows(rows: &[LandscapeRow]) -> Vec<AimingRow> {
    let mut out: Vec<AimingRow> = rows
        .iter()
        .filter(|r| r.probe == ProbeLabel::Full && r.step != r.ref_step)
        .map(|r| {
            let gap = r.loss_k - r.loss_ref;
            AimingRow {
                step: r.step,
                loss: r.loss_k,
                loss_ref: r.loss_ref,
                inner: r.inner,
                grad_norm: r.grad_norm,
                dist: r.dist,
                cos: r.cos,
                angle_deg: r.cos.clamp(-1.0, 1.0).acos().to_degrees(),
                aiming_coef: r.inner / r.loss_k,
                gap,
                qcvx_ratio: (gap > 0.0).then(|| r.inner / gap),
            }
        })
        .collect();
    out.sort_by_key(|r| r.step);
    out
}

/// The relaxed-PL curves for each delta.
pub fn pl_rows(aiming: &[AimingRow], deltas: &[f64]) -> Vec<PlRow> {
    let mut out = Vec::new();
    for &delta in deltas {
        for r in aiming {
            let log_2mu = (r.gap > 0.0 && r.grad_norm > 0.0)
                .then(|| 2.0 * r.grad_norm.ln() - (2.0 / delta) * r.gap.ln());
            out.push(PlRow {
                step: r.step,
                delta,
                log_2mu,
            });
        }
    }
    out
}

/// The constants of one run.
pub fn constants(aiming: &[AimingRow], pl: &[PlRow], deltas: &[f64]) -> RunConditions {
    let mut c = RunConditions {
        steps: aiming.len(),
        aiming_fail_steps: aiming.iter().filter(|r| r.inner <= 0.0).count(),
        nonpositive_gap_steps: aiming.iter().filter(|r| r.gap <= 0.0).count(),
        qcvx_theta_lo: 0.0,
        qcvx_theta_hi: f64::INFINITY,
        ..Default::default()
    };
    c.aiming_theta = aiming
        .iter()
        .map(|r| r.aiming_coef)
        .min_by(|a, b| a.total_cmp(b));
    if let Some(r) = aiming.iter().min_by(|a, b| a.cos.total_cmp(&b.cos)) {
        c.min_cos = Some(r.cos);
        c.min_cos_step = Some(r.step);
    }
    for &delta in deltas {
        let best = pl
            .iter()
            .filter(|p| p.delta == delta)
            .filter_map(|p| p.log_2mu.map(|v| (v, p.step)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(v, step)| (v, step, 0.5 * v.exp()));
        c.pl.push((delta, best));
    }
    for r in aiming {
        if r.gap > 0.0 {
            c.qcvx_theta_hi = c.qcvx_theta_hi.min(r.inner / r.gap);
        } else if r.gap < 0.0 && r.inner < 0.0 {
            c.qcvx_theta_lo = c.qcvx_theta_lo.max(r.inner / r.gap);
        } else if r.gap == 0.0 && r.inner < 0.0 {
            c.qcvx_theta_hi = f64::NEG_INFINITY;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(step: i64, loss_k: f64, loss_ref: f64, inner: f64, grad_norm: f64) -> LandscapeRow {
        LandscapeRow {
            experiment: "e".into(),
            run_id: "r".into(),
            seed: 0,
            step,
            probe: ProbeLabel::Full,
            batch_size: 10,
            loss_k,
            loss_ref,
            inner,
            grad_norm,
            dist: 1.0,
            cos: inner / grad_norm,
            ref_step: 100,
            batch_indices: None,
            source: crate::store::label::RowSource::Snapshot,
        }
    }

    #[test]
    fn known_values() {
        // f(x^K) = 0.5. Step 0: gap 2, g = 4, inner 3; step 10: gap 0.5, g = 1,
        // inner −0.1 (Aiming fails); step 20: gap −0.1, inner −0.2 (QCvx lower bound 2).
        let rows = vec![
            full(0, 2.5, 0.5, 3.0, 4.0),
            full(10, 1.0, 0.5, -0.1, 1.0),
            full(20, 0.4, 0.5, -0.2, 0.5),
            full(100, 0.5, 0.5, 0.0, 0.3), // x^K itself: dropped
        ];
        let a = aiming_rows(&rows);
        assert_eq!(a.len(), 3);
        assert!((a[0].aiming_coef - 1.2).abs() < 1e-15);
        assert_eq!(a[0].qcvx_ratio, Some(1.5));
        let deltas = [1.0, 2.0];
        let pl = pl_rows(&a, &deltas);
        // delta = 2, step 0: 2 ln 4 − ln 2 = ln 8; step 10: 0 − ln 0.5 = ln 2.
        let p: Vec<_> = pl.iter().filter(|p| p.delta == 2.0).collect();
        assert!((p[0].log_2mu.unwrap() - 8f64.ln()).abs() < 1e-14);
        assert!((p[1].log_2mu.unwrap() - 2f64.ln()).abs() < 1e-14);
        assert!(p[2].log_2mu.is_none());
        let c = constants(&a, &pl, &deltas);
        assert_eq!(c.aiming_fail_steps, 2);
        assert!((c.aiming_theta.unwrap() - (-0.5)).abs() < 1e-15);
        let (v, step, mu) = c.pl[1].1.unwrap();
        assert!((v - 2f64.ln()).abs() < 1e-14 && step == 10 && (mu - 1.0).abs() < 1e-14);
        // delta = 1: step 0: 2 ln 4 − 2 ln 2 = ln 4; step 10: 0 − 2 ln 0.5 = ln 4.
        let (v1, _, _) = c.pl[0].1.unwrap();
        assert!((v1 - 4f64.ln()).abs() < 1e-14);
        // QCvx: theta ≤ min(1.5, −0.2) < 0: fails; lower bound −0.2/−0.1 = 2.
        assert!((c.qcvx_theta_hi - (-0.2)).abs() < 1e-15);
        assert!((c.qcvx_theta_lo - 2.0).abs() < 1e-15);
        assert!(!c.qcvx_holds());
        assert_eq!(c.nonpositive_gap_steps, 1);
    }
}

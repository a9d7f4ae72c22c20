//! Learning-rate schedules gamma_k over K steps (k = 0 … K−1), with
//! `optim.lr` as the base (peak) rate. Formulas follow PyTorch's schedulers so
//! that a run can be compared with a PyTorch one step by step.

use crate::config::{ScheduleConfig, ScheduleName};

fn cosine(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

/// Number of warm-up steps of a warmup-cosine schedule (AlgoPerf truncates:
/// `int(warmup_factor * step_hint)`).
pub fn warmup_steps(cfg: &ScheduleConfig, total: u64) -> u64 {
    match (cfg.warmup_steps, cfg.warmup_fraction) {
        (Some(w), _) => w.min(total),
        (None, Some(f)) => ((f * total as f64) as u64).min(total),
        (None, None) => 0,
    }
}

/// Checks that the schedule is defined for `total` steps.
pub fn validate(cfg: &ScheduleConfig, total: u64) -> anyhow::Result<()> {
    if cfg.name == ScheduleName::OneCycle {
        let up = cfg.pct_start.unwrap_or(0.3) * total as f64;
        if up <= 1.0 {
            anyhow::bail!(
                "schedule one-cycle needs schedule.pct_start × steps > 1 (its rising phase would be empty; PyTorch's OneCycleLR divides by zero), got {} × {total} = {up}",
                cfg.pct_start.unwrap_or(0.3)
            );
        }
    }
    Ok(())
}

/// The learning rate of step `k` of `total`.
pub fn lr_at(cfg: &ScheduleConfig, base: f64, k: u64, total: u64) -> f64 {
    let floor = cfg.floor.unwrap_or(0.0);
    let kf = k as f64;
    match cfg.name {
        ScheduleName::Constant => base,
        // Only runs logged from a PyTorch loop have it, and abcond does not
        // train them (train::train refuses); their rates are in steps.parquet.
        ScheduleName::Recorded => base,
        // torch.optim.lr_scheduler.CosineAnnealingLR(T_max = K, eta_min = floor).
        ScheduleName::Cosine => cosine(base, floor, kf / total as f64),
        // torch.optim.lr_scheduler.OneCycleLR (anneal_strategy "cos", two phases;
        // momentum is not cycled).
        ScheduleName::OneCycle => {
            let initial = base / cfg.div_factor.unwrap_or(25.0);
            let min = initial / cfg.final_div_factor.unwrap_or(1e4);
            let end1 = cfg.pct_start.unwrap_or(0.3) * total as f64 - 1.0;
            let end2 = total as f64 - 1.0;
            if kf <= end1 {
                cosine(initial, base, kf / end1)
            } else {
                cosine(base, min, (kf - end1) / (end2 - end1))
            }
        }
        // AlgoPerf's baseline: LinearLR(start_factor 1e-10) for W steps, then
        // CosineAnnealingLR(T_max = max(K − W, 1), eta_min = floor).
        ScheduleName::WarmupCosine => {
            let w = warmup_steps(cfg, total);
            if k < w {
                base * (1e-10 + (1.0 - 1e-10) * kf / w as f64)
            } else {
                cosine(base, floor, (k - w) as f64 / (total - w).max(1) as f64)
            }
        }
        // The paper's decreasing steps gamma_0/sqrt(k+1) (power 0.5), and the
        // lr_t = lr t^(−a) of normalised SGD (t = k + 1).
        ScheduleName::InversePower => base * (kf + 1.0).powf(-cfg.power.unwrap_or(0.5)),
        // torch.optim.lr_scheduler.PolynomialLR(total_iters = K, power), closed
        // form, decaying to `floor` instead of 0.
        ScheduleName::Polynomial => {
            let frac = 1.0 - kf.min(total as f64) / total as f64;
            floor + (base - floor) * frac.powf(cfg.power.unwrap_or(1.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: ScheduleName) -> ScheduleConfig {
        ScheduleConfig {
            name,
            ..Default::default()
        }
    }

    #[test]
    fn known_values() {
        let c = cfg(ScheduleName::Constant);
        assert_eq!(lr_at(&c, 0.1, 77, 100), 0.1);
        let mut c = cfg(ScheduleName::Cosine);
        c.floor = Some(0.0);
        assert_eq!(lr_at(&c, 0.1, 0, 100), 0.1);
        assert!((lr_at(&c, 0.1, 50, 100) - 0.05).abs() < 1e-15);
        // PyTorch 2.11: CosineAnnealingLR(SGD(lr=0.1), T_max=100) at step 77.
        assert!((lr_at(&c, 0.1, 77, 100) - 0.012494446518477033).abs() < 1e-12);
        // PyTorch 2.11: OneCycleLR(max_lr=0.01, total_steps=100, cycle_momentum=False)
        // at steps 0, 29, 30, 50, 99: 0.0003999999999999993, 0.01,
        // 0.009994965352845242, 0.00793893450575732, 4e-08.
        let mut c = cfg(ScheduleName::OneCycle);
        c.pct_start = Some(0.3);
        c.div_factor = Some(25.0);
        c.final_div_factor = Some(1e4);
        assert!((lr_at(&c, 0.01, 0, 100) - 0.0004).abs() < 1e-15);
        assert!((lr_at(&c, 0.01, 29, 100) - 0.01).abs() < 1e-15);
        assert!((lr_at(&c, 0.01, 30, 100) - 0.009994965352845242).abs() < 1e-15);
        assert!((lr_at(&c, 0.01, 50, 100) - 0.00793893450575732).abs() < 1e-15);
        assert!((lr_at(&c, 0.01, 99, 100) - 4e-8).abs() < 1e-15);
        let mut c = cfg(ScheduleName::WarmupCosine);
        c.warmup_fraction = Some(0.1);
        c.floor = Some(0.0);
        assert!(lr_at(&c, 1.0, 0, 100) < 1e-9);
        assert!((lr_at(&c, 1.0, 5, 100) - 0.5).abs() < 1e-9);
        assert_eq!(lr_at(&c, 1.0, 10, 100), 1.0);
        assert!((lr_at(&c, 1.0, 55, 100) - 0.5).abs() < 1e-12);
        // AlgoPerf truncates the warm-up length: int(0.1 * 99) = 9.
        assert_eq!(warmup_steps(&c, 99), 9);
    }

    #[test]
    fn inverse_power_and_polynomial() {
        let mut c = cfg(ScheduleName::InversePower);
        c.power = Some(0.5);
        assert_eq!(lr_at(&c, 0.3, 0, 100), 0.3);
        assert!((lr_at(&c, 0.3, 3, 100) - 0.15).abs() < 1e-16);
        assert!((lr_at(&c, 1.0, 99, 100) - 0.1).abs() < 1e-16);
        c.power = Some(4.0 / 7.0);
        assert!((lr_at(&c, 2.0, 127, 1000) - 2.0 * 128f64.powf(-4.0 / 7.0)).abs() < 1e-16);
        // PyTorch 2.11: PolynomialLR(SGD(lr=0.1), total_iters=100, power=2.0) at
        // steps 0, 50, 99: 0.1, 0.025, 1e-05 (to rounding).
        let mut c = cfg(ScheduleName::Polynomial);
        c.power = Some(2.0);
        c.floor = Some(0.0);
        assert_eq!(lr_at(&c, 0.1, 0, 100), 0.1);
        assert!((lr_at(&c, 0.1, 50, 100) - 0.025).abs() < 1e-15);
        assert!((lr_at(&c, 0.1, 99, 100) - 1e-5).abs() < 1e-15);
        c.floor = Some(0.01);
        assert!((lr_at(&c, 0.1, 50, 100) - (0.01 + 0.09 * 0.25)).abs() < 1e-15);
    }

    #[test]
    fn one_cycle_needs_a_rising_phase() {
        let mut c = cfg(ScheduleName::OneCycle);
        c.pct_start = Some(0.1);
        assert!(validate(&c, 10)
            .unwrap_err()
            .to_string()
            .contains("pct_start"));
        assert!(validate(&c, 11).is_ok());
        assert!((0..11).all(|k| lr_at(&c, 0.1, k, 11).is_finite()));
    }
}

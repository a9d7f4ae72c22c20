//! The signed-log slack scale of the heat maps and its colours.

use super::*;

/// Diverging map: −1 dark red … 0 white … 1 dark blue.
pub(super) fn diverging(s: f64) -> RGBColor {
    let s = s.clamp(-1.0, 1.0);
    let (end, t) = if s < 0.0 {
        ((178.0, 24.0, 43.0), -s)
    } else {
        ((33.0, 102.0, 172.0), s)
    };
    let mix = |e: f64| (255.0 + (e - 255.0) * t).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// Signed log scale of slack values, each sign on its own: linear within
/// 1e-3 of that sign's largest magnitude, logarithmic beyond, ±1 at the
/// largest violation and the largest positive slack (so a thin feasible band
/// is as visible as a deep violation).
#[derive(Debug, Clone, Copy)]
pub struct SymLog {
    neg: f64,
    pos: f64,
}

impl SymLog {
    pub fn new(values: impl Iterator<Item = f64>) -> SymLog {
        let (mut neg, mut pos) = (1e-300f64, 1e-300f64);
        for v in values.filter(|v| v.is_finite()) {
            if v < 0.0 {
                neg = neg.max(-v);
            } else {
                pos = pos.max(v);
            }
        }
        SymLog { neg, pos }
    }
    /// The scale of the in-domain cells of several grids (a shared colour bar).
    pub fn of_cells<'c>(cells: impl Iterator<Item = &'c Cell>) -> SymLog {
        SymLog::new(cells.filter(|c| c.in_domain).map(|c| c.min_slack))
    }
    fn side(&self, v: f64) -> f64 {
        if v < 0.0 {
            self.neg
        } else {
            self.pos
        }
    }
    fn unit_of(&self, v: f64) -> f64 {
        let m = self.side(v);
        let tau = m * 1e-3;
        v.signum() * (1.0 + v.abs() / tau).ln() / (1.0 + m / tau).ln()
    }
    /// Tick values: 0, the extremes, and the powers of ten between them
    /// (each side thinned to at most four), with their unit positions.
    pub(super) fn ticks(&self) -> Vec<(f64, f64)> {
        let mut out = vec![(0.0, 0.0)];
        for (sign, m) in [(-1.0, self.neg), (1.0, self.pos)] {
            if m <= 1e-299 {
                continue;
            }
            let top = m.log10().floor() as i32;
            let mut powers: Vec<i32> = (top - 2..=top).collect();
            powers.retain(|&k| 10f64.powi(k) <= m);
            for k in powers {
                let v = sign * 10f64.powi(k);
                out.push((self.unit_of(v), v));
            }
            out.push((sign, sign * m));
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Drop ticks closer than 0.07 of the bar to a kept one (extremes win).
        let mut kept: Vec<(f64, f64)> = Vec::new();
        for t in out {
            if let Some(last) = kept.last_mut() {
                if (t.0 - last.0).abs() < 0.07 {
                    if t.0.abs() == 1.0 {
                        *last = t;
                    }
                    continue;
                }
            }
            kept.push(t);
        }
        kept
    }
}

/// The colour of a cell.
pub(super) fn cell_colour(c: &Cell, scale: &SymLog) -> RGBColor {
    if c.in_domain {
        diverging(scale.unit_of(c.min_slack))
    } else {
        RGBColor(215, 215, 215)
    }
}

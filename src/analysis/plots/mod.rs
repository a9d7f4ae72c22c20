//! Figures of `analysis/` (PNG and SVG, drawn with plotters; text in the
//! embedded DejaVu Sans, so no system fonts are needed): the min-slack heat
//! map with the exact feasible region outlined, the relaxed-PL curves, the
//! Aiming angle, the training loss, and sweep trends.
//!
//! - `output`: writing a figure as PNG, SVG and PDF;
//! - `scale`: the signed-log slack scale and its colours;
//! - `heat`: heat-map panels with the exact region and the colour bar;
//! - `lines`: line charts (one line per series, or seed bands) and their axes;
//! - `overview`: the paper-style multi-panel figure of an experiment.

mod heat;
mod lines;
mod output;
mod overview;
mod scale;

use heat::colour_bar;
pub use heat::{HeatPanel, Heatmap};
pub use lines::{aiming_figure, band_of, log_spaced, pl_figure, Band, BandChart, Lines};
pub use output::{pdf_page, save};
pub use overview::Overview;
pub use scale::SymLog;
use scale::{cell_colour, diverging};

use super::alphabeta::{AbResult, Cell, Frame};
use super::alphabeta::{GapOne, LeastViolation, SmallestAlpha};
use super::conditions::{AimingRow, PlRow};
use crate::config::GridAxes;
use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &str = "sans-serif";

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Registering can only fail on unparsable font data; the embedded font parses.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// A figure that can be drawn on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32) {
        (900, 640)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// A number for labels and summaries: short, in scientific notation when
/// large or small, ∞ for infinity.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if v.is_infinite() {
        if v > 0.0 { "∞" } else { "−∞" }.to_string()
    } else if v == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Palette for series (colour-blind-friendly, Okabe–Ito).
pub const SERIES: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// A tick label: at most three significant digits, no trailing zeros,
/// scientific notation only beyond 1e±4.
pub fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return num(v);
    }
    let a = v.abs();
    if !(1e-4..1e5).contains(&a) {
        let e = a.log10().floor() as i32;
        let m = v / 10f64.powi(e);
        let m = format!("{m:.2}");
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    let digits = (2 - a.log10().floor() as i32).max(0) as usize;
    let t = format!("{v:.digits$}");
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    };
    t.replace('-', "−")
}

/// Tick values of a log axis over [lo, hi]: powers of ten where the range
/// spans many decades, else 1-2-5 in each decade, else 1-2-3-5, else every
/// digit: the first of these with at least 4 ticks in range (clean labels
/// instead of a crowded 0.1, 0.2, …, 0.9 run or a lone label).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && lo.is_finite() && hi.is_finite()) {
        return Vec::new();
    }
    let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |mantissas: &[f64]| -> Vec<f64> {
        (d0..=d1)
            .flat_map(|d| mantissas.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|v| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9))
            .collect()
    };
    let decades = within(&[1.0]);
    if decades.len() >= 4 {
        // At most ~8 labels: every k-th power of ten.
        let k = decades.len().div_ceil(8);
        return (d0..=d1)
            .filter(|d| d.rem_euclid(k as i32) == 0)
            .map(|d| 10f64.powi(d))
            .filter(|v| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9))
            .collect();
    }
    for m in [
        &[1.0, 2.0, 5.0][..],
        &[1.0, 2.0, 3.0, 5.0][..],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..],
    ] {
        let t = within(m);
        if t.len() >= 4 {
            return t;
        }
    }
    within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
}

#[cfg(test)]
mod tests {
    use super::log_ticks;

    #[test]
    fn log_ticks_are_few_and_clean() {
        assert_eq!(log_ticks(0.09, 2.1), vec![0.1, 0.2, 0.5, 1.0, 2.0]);
        assert_eq!(log_ticks(2.2, 47.0), vec![3.0, 5.0, 10.0, 20.0, 30.0]);
        assert_eq!(
            log_ticks(1.0, 40_000.0),
            vec![1.0, 10.0, 100.0, 1000.0, 10_000.0]
        );
        let wide = log_ticks(1e-12, 1e12);
        assert!(wide.len() <= 9 && wide.contains(&1.0), "{wide:?}");
        assert_eq!(log_ticks(2.0, 3.0), vec![2.0, 3.0]);
        assert!(log_ticks(0.0, 1.0).is_empty() && log_ticks(f64::NAN, 1.0).is_empty());
    }
}

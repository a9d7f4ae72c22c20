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

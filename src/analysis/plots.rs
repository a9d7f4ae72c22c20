//! Figures of `analysis/` (PNG and SVG, drawn with plotters; text in the
//! embedded DejaVu Sans, so no system fonts are needed): the min-slack heat
//! map with the exact feasible region outlined, the relaxed-PL curves, the
//! Aiming angle, the training loss, and sweep trends.

use super::alphabeta::{AbResult, Cell};
use super::alphabeta::{GapOne, LeastViolation, SmallestAlpha};
use super::conditions::{AimingRow, PlRow};
use anyhow::{anyhow, Result};
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

/// Writes `<dir>/<stem>.png` and `<dir>/<stem>.svg` (each atomically) and
/// returns both paths.
pub fn save<F: Figure>(fig: &F, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    fonts();
    let size = fig.size();
    let png = dir.join(format!("{stem}.png"));
    let tmp = dir.join(format!(".tmp-{}-{stem}.png", std::process::id()));
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    std::fs::rename(&tmp, &png)?;
    let svg = dir.join(format!("{stem}.svg"));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    crate::store::seal::write_sealed(&svg, &text, crate::store::seal::Comment::Markup)?;
    Ok(vec![png, svg])
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

/// Diverging map: −1 dark red … 0 white … 1 dark blue.
fn diverging(s: f64) -> RGBColor {
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
struct SymLog {
    neg: f64,
    pos: f64,
}

impl SymLog {
    fn new(values: impl Iterator<Item = f64>) -> SymLog {
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
    fn side(&self, v: f64) -> f64 {
        if v < 0.0 {
            self.neg
        } else {
            self.pos
        }
    }
    fn to_unit(&self, v: f64) -> f64 {
        let m = self.side(v);
        let tau = m * 1e-3;
        v.signum() * (1.0 + v.abs() / tau).ln() / (1.0 + m / tau).ln()
    }
    fn value_at(&self, s: f64) -> f64 {
        let m = self.side(s);
        let tau = m * 1e-3;
        s.signum() * tau * ((s.abs() * (1.0 + m / tau).ln()).exp() - 1.0)
    }
}

/// The paper's Figs. 3–4 done right: min slack over all rows of a group on the
/// (alpha, beta) grid, the exact feasible region outlined.
pub struct Heatmap<'a> {
    pub title: String,
    pub cells: &'a [Cell],
    pub points: usize,
    pub frame: (f64, f64, f64, f64),
    pub ab: &'a AbResult,
    pub margin: f64,
}

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 800)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (a0, a1, b0, b1) = self.frame;
        let n = self.points;
        let da = (a1 - a0) / (n - 1) as f64;
        let db = (b1 - b0) / (n - 1) as f64;
        let scale = SymLog::new(
            self.cells
                .iter()
                .filter(|c| c.in_domain)
                .map(|c| c.min_slack),
        );
        let (main, bar) = root.split_horizontally(860);
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, (FONT, 22))
            .margin(12)
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (a0 - da / 2.0)..(a1 + da / 2.0),
                (b0 - db / 2.0)..(b1 + db / 2.0),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("alpha")
            .y_desc("beta")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .x_label_formatter(&|v| num(*v))
            .y_label_formatter(&|v| num(*v))
            .draw()
            .map_err(err)?;
        let grey = RGBColor(215, 215, 215);
        chart
            .draw_series(self.cells.iter().map(|c| {
                let colour = if c.in_domain {
                    diverging(scale.to_unit(c.min_slack))
                } else {
                    grey
                };
                Rectangle::new(
                    [
                        (c.alpha - da / 2.0, c.beta - db / 2.0),
                        (c.alpha + da / 2.0, c.beta + db / 2.0),
                    ],
                    colour.filled(),
                )
            }))
            .map_err(err)?;
        // The line beta = alpha − 1 (the paper's convention in its examples).
        let lo = a0.max(b0 + 1.0).max(1.0);
        let hi = a1.min(b1 + 1.0);
        if lo < hi {
            chart
                .draw_series(DashedLineSeries::new(
                    [(lo, lo - 1.0), (hi, hi - 1.0)],
                    8,
                    6,
                    RGBColor(90, 90, 90).stroke_width(1),
                ))
                .map_err(err)?
                .label("beta = alpha − 1")
                .legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], RGBColor(90, 90, 90).stroke_width(1))
                });
        }
        // The exact region, clipped to the frame.
        let outline = self.ab.region.clipped_to(a0, a1, b0, b1);
        if !outline.is_empty() {
            let mut closed = outline.clone();
            closed.push(outline[0]);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    closed,
                    BLACK.stroke_width(3),
                )))
                .map_err(err)?
                .label("exact feasible region")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(3)));
        }
        let inside = |a: f64, b: f64| a >= a0 && a <= a1 && b >= b0 && b <= b1;
        if let Some(SmallestAlpha {
            alpha: a,
            beta_min: blo,
            ..
        }) = self.ab.min_alpha
        {
            if inside(a, blo) {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (a, blo),
                        7,
                        SERIES[4].filled(),
                    )))
                    .map_err(err)?
                    .label(format!("smallest alpha = {}", num(a)))
                    .legend(|(x, y)| Circle::new((x + 9, y), 6, SERIES[4].filled()));
            }
        }
        if let Some(GapOne { alpha: a, .. }) = self.ab.gap_one {
            if inside(a, a - 1.0) {
                chart
                    .draw_series(std::iter::once(TriangleMarker::new(
                        (a, a - 1.0),
                        9,
                        SERIES[2].filled(),
                    )))
                    .map_err(err)?
                    .label(format!("beta = alpha − 1 from alpha = {}", num(a)))
                    .legend(|(x, y)| TriangleMarker::new((x + 9, y), 7, SERIES[2].filled()));
            }
        }
        if let Some(b) = &self.ab.best {
            if inside(b.alpha, b.beta) {
                chart
                    .draw_series(std::iter::once(Cross::new(
                        (b.alpha, b.beta),
                        8,
                        BLACK.stroke_width(3),
                    )))
                    .map_err(err)?
                    .label(format!(
                        "min beta/(alpha − beta) = {}{}",
                        num(b.ratio),
                        if b.attained { "" } else { " (approached)" }
                    ))
                    .legend(|(x, y)| Cross::new((x + 9, y), 6, BLACK.stroke_width(2)));
            }
        }
        if let Some(LeastViolation {
            alpha: a,
            beta: b,
            slack: t,
        }) = self.ab.least_violation
        {
            if inside(a, b) {
                chart
                    .draw_series(std::iter::once(Cross::new((a, b), 8, RED.stroke_width(3))))
                    .map_err(err)?
                    .label(format!("empty region; least violation {} here", num(t)))
                    .legend(|(x, y)| Cross::new((x + 9, y), 6, RED.stroke_width(2)));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 15))
            .draw()
            .map_err(err)?;

        // Colour bar, labelled in slack values (symmetric-log scale).
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(60)
            .margin_bottom(67)
            .margin_right(10)
            .y_label_area_size(75)
            .caption("min T", (FONT, 16))
            .build_cartesian_2d(0.0..1.0, -1.0..1.0)
            .map_err(err)?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(9)
            .label_style((FONT, 13))
            .y_label_formatter(&|s| num(scale.value_at(*s)))
            .draw()
            .map_err(err)?;
        let steps = 200;
        cb.draw_series((0..steps).map(|i| {
            let lo = -1.0 + 2.0 * i as f64 / steps as f64;
            let hi = lo + 2.0 / steps as f64;
            Rectangle::new([(0.0, lo), (1.0, hi)], diverging(0.5 * (lo + hi)).filled())
        }))
        .map_err(err)?;
        Ok(())
    }
}

/// One line: label, points, whether to mark the points.
pub type Series = (String, Vec<(f64, f64)>, bool);

/// Lines over steps (one per series), optionally with a log y axis.
pub struct Lines {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    pub log_y: bool,
    /// Horizontal reference line (value, label).
    pub hline: Option<(f64, String)>,
    /// Points to flag (label, points), drawn as red crosses over the lines.
    pub marks: Option<(String, Vec<(f64, f64)>)>,
}

impl Figure for Lines {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let pts = || self.series.iter().flat_map(|s| s.1.iter());
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in pts() {
            if !(x.is_finite() && y.is_finite()) || (self.log_y && y <= 0.0) {
                continue;
            }
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if let Some((h, _)) = &self.hline {
            y0 = y0.min(*h);
            y1 = y1.max(*h);
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            let d = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
            (y0, y1) = (y0 - d, y1 + d);
        }
        let colours = |i: usize| SERIES[i % SERIES.len()];
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(&self.x_desc)
                    .y_desc(&self.y_desc)
                    .label_style((FONT, 15))
                    .axis_desc_style((FONT, 18))
                    .x_label_formatter(&|v| num(*v))
                    .y_label_formatter(&|v| num(*v))
                    .y_labels(12)
                    .light_line_style(RGBColor(235, 235, 235))
                    .draw()
                    .map_err(err)?;
                if let Some((h, label)) = &self.hline {
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(x0, *h), (x1, *h)],
                            8,
                            6,
                            BLACK.stroke_width(1),
                        ))
                        .map_err(err)?
                        .label(label.clone())
                        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
                }
                for (i, (label, points, markers)) in self.series.iter().enumerate() {
                    let c = colours(i);
                    let clean: Vec<(f64, f64)> = points
                        .iter()
                        .cloned()
                        .filter(|(x, y)| {
                            x.is_finite() && y.is_finite() && !(self.log_y && *y <= 0.0)
                        })
                        .collect();
                    chart
                        .draw_series(LineSeries::new(clean.clone(), c.stroke_width(2)))
                        .map_err(err)?
                        .label(label.clone())
                        .legend(move |(x, y)| {
                            PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2))
                        });
                    if *markers {
                        chart
                            .draw_series(clean.iter().map(|p| Circle::new(*p, 3, c.filled())))
                            .map_err(err)?;
                    }
                }
                if let Some((label, points)) = self.marks.as_ref().filter(|m| !m.1.is_empty()) {
                    let red = RGBColor(200, 0, 0);
                    chart
                        .draw_series(
                            points
                                .iter()
                                .filter(|(x, y)| x.is_finite() && y.is_finite())
                                .map(|p| Cross::new(*p, 6, red.stroke_width(2))),
                        )
                        .map_err(err)?
                        .label(label.clone())
                        .legend(move |(x, y)| Cross::new((x + 9, y), 5, red.stroke_width(2)));
                }
                if self.series.len() > 1 || self.hline.is_some() {
                    chart
                        .configure_series_labels()
                        .position(SeriesLabelPosition::UpperRight)
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .label_font((FONT, 14))
                        .draw()
                        .map_err(err)?;
                }
            }};
        }
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, (FONT, 20))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(80);
        if self.log_y {
            body!(builder
                .build_cartesian_2d(x0..x1, ((y0 / 1.25)..(y1 * 1.25)).log_scale())
                .map_err(err)?);
        } else {
            let pad = 0.05 * (y1 - y0);
            body!(builder
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(err)?);
        }
        Ok(())
    }
}

/// Relaxed-PL curves of a group: one line per (run, delta).
pub fn pl_figure(title: &str, runs: &[(String, Vec<PlRow>)], deltas: &[f64]) -> Lines {
    let mut series = Vec::new();
    for (run, rows) in runs {
        for &d in deltas {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.delta == d)
                .filter_map(|r| r.log_2mu.map(|v| (r.step as f64, v)))
                .collect();
            let label = if runs.len() > 1 {
                format!("delta = {d} ({run})")
            } else {
                format!("delta = {d}")
            };
            series.push((label, pts, true));
        }
    }
    Lines {
        title: format!(
            "relaxed PL: log(2mu) ≤ 2 ln‖∇f(x^k)‖ − (2/delta) ln(f(x^k) − f(x^K))  [{title}]"
        ),
        x_desc: "step k".into(),
        y_desc: "2 ln‖∇f‖ − (2/delta) ln(f − f(x^K))".into(),
        series,
        log_y: false,
        hline: None,
        marks: None,
    }
}

/// Aiming angle over steps, one line per run; above 90° Aiming fails.
pub fn aiming_figure(title: &str, runs: &[(String, Vec<AimingRow>)]) -> Lines {
    Lines {
        title: format!("Aiming: angle between ∇f(x^k) and x^k − x^K  [{title}]"),
        x_desc: "step k".into(),
        y_desc: "angle (degrees)".into(),
        series: runs
            .iter()
            .map(|(run, rows)| {
                (
                    run.clone(),
                    rows.iter().map(|r| (r.step as f64, r.angle_deg)).collect(),
                    true,
                )
            })
            .collect(),
        log_y: false,
        hline: Some((90.0, "90° (Aiming fails above)".into())),
        marks: Some((
            "cos < 0: ∇f(x^k) points away from x^k − x^K".into(),
            runs.iter()
                .flat_map(|(_, rows)| rows.iter().filter(|r| r.cos < 0.0))
                .map(|r| (r.step as f64, r.angle_deg))
                .collect(),
        )),
    }
}

//! Figures of `analysis/` (PNG and SVG, drawn with plotters; text in the
//! embedded DejaVu Sans, so no system fonts are needed): the min-slack heat
//! map with the exact feasible region outlined, the relaxed-PL curves, the
//! Aiming angle, the training loss, and sweep trends.

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

/// Writes `<dir>/<stem>.png`, `<dir>/<stem>.svg` and `<dir>/<stem>.pdf`
/// (each atomically) and returns the paths. The PDF holds the PNG's pixels
/// (a raster page at 144 dpi); the SVG is the vector form.
pub fn save<F: Figure>(fig: &F, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    fonts();
    let (w, h) = fig.size();
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    let png = dir.join(format!("{stem}.png"));
    let tmp = dir.join(format!(".tmp-{}-{stem}.png", std::process::id()));
    image::save_buffer_with_format(
        &tmp,
        &rgb,
        w,
        h,
        image::ColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &png)?;
    let pdf = dir.join(format!("{stem}.pdf"));
    crate::store::atomic::write_bytes(&pdf, &pdf_page(&rgb, w, h)?)?;
    let svg = dir.join(format!("{stem}.svg"));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    crate::store::seal::write_sealed(&svg, &text, crate::store::seal::Comment::Markup)?;
    Ok(vec![png, svg, pdf])
}

/// A one-page PDF showing an RGB image (8 bits per channel, rows top to
/// bottom) at 144 dpi, its pixels deflate-compressed.
pub fn pdf_page(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(rgb)?;
    let pixels = z.finish()?;
    let (pw, ph) = (w as f64 / 2.0, h as f64 / 2.0);
    let content = format!("q {pw} 0 0 {ph} 0 0 cm /Im0 Do Q\n");
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let objects: Vec<(String, Option<&[u8]>)> = vec![
        ("<< /Type /Catalog /Pages 2 0 R >>".into(), None),
        ("<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(), None),
        (
            format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw} {ph}] /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>"),
            None,
        ),
        (
            format!("<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode /Length {} >>", pixels.len()),
            Some(&pixels),
        ),
        (
            format!("<< /Length {} >>", content.len()),
            Some(content.as_bytes()),
        ),
    ];
    for (i, (dict, stream)) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{dict}\n", i + 1).as_bytes());
        if let Some(data) = stream {
            out.extend_from_slice(b"stream\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\nendstream\n");
        }
        out.extend_from_slice(b"endobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    Ok(out)
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
    fn ticks(&self) -> Vec<(f64, f64)> {
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

/// The colour of a cell.
fn cell_colour(c: &Cell, scale: &SymLog) -> RGBColor {
    if c.in_domain {
        diverging(scale.unit_of(c.min_slack))
    } else {
        RGBColor(215, 215, 215)
    }
}

/// One heat-map panel: min slack over all rows of a group on the frame's
/// grid, the exact feasible region outlined, its landmarks marked.
pub struct HeatPanel<'a> {
    pub title: String,
    pub cells: &'a [Cell],
    pub points: usize,
    pub frame: Frame,
    pub ab: &'a AbResult,
    /// Whether to draw the legend of the landmarks.
    pub legend: bool,
}

/// The corners of cell (i, j): half a step each way, geometrically on log axes.
fn cell_box(frame: &Frame, n: usize, c: &Cell) -> [(f64, f64); 2] {
    let (x, y) = frame.to_frame(c.alpha, c.beta);
    let y = if frame.axes == GridAxes::Gap {
        c.alpha - c.beta
    } else {
        y
    };
    match frame.axes {
        GridAxes::Gap => {
            let rx = (frame.alpha.1 / frame.alpha.0).powf(0.5 / (n - 1) as f64);
            let ry = (frame.y.1 / frame.y.0).powf(0.5 / (n - 1) as f64);
            [(x / rx, y / ry), (x * rx, y * ry)]
        }
        GridAxes::AlphaBeta => {
            let dx = 0.5 * (frame.alpha.1 - frame.alpha.0) / (n - 1) as f64;
            let dy = 0.5 * (frame.y.1 - frame.y.0) / (n - 1) as f64;
            [(x - dx, y - dy), (x + dx, y + dy)]
        }
    }
}

/// The drawn range of an axis: the frame and half a cell beyond.
fn padded(frame: &Frame, n: usize) -> ((f64, f64), (f64, f64)) {
    let pad = |(lo, hi): (f64, f64)| match frame.axes {
        GridAxes::Gap => {
            let r = (hi / lo).powf(0.5 / (n - 1) as f64);
            (lo / r, hi * r)
        }
        GridAxes::AlphaBeta => {
            let d = 0.5 * (hi - lo) / (n - 1) as f64;
            (lo - d, hi + d)
        }
    };
    (pad(frame.alpha), pad(frame.y))
}

impl HeatPanel<'_> {
    /// Draws the panel; `scale` colours the cells (shared between panels).
    pub fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        scale: &SymLog,
        font: u32,
    ) -> Result<()> {
        let ((x0, x1), (y0, y1)) = padded(&self.frame, self.points);
        let y_desc = match self.frame.axes {
            GridAxes::Gap => "α − β  (log scale)",
            GridAxes::AlphaBeta => "β",
        };
        let x_desc = match self.frame.axes {
            GridAxes::Gap => "α  (log scale)",
            GridAxes::AlphaBeta => "α",
        };
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (FONT, font + 4))
            .margin(10)
            .x_label_area_size(font * 3)
            .y_label_area_size(font * 4);
        match self.frame.axes {
            GridAxes::Gap => {
                let mut chart = builder
                    .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                    .map_err(err)?;
                self.body(&mut chart, scale, font, x_desc, y_desc)
            }
            GridAxes::AlphaBeta => {
                let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?;
                self.body(&mut chart, scale, font, x_desc, y_desc)
            }
        }
    }

    fn body<'c, DB, X, Y>(
        &self,
        chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>,
        scale: &SymLog,
        font: u32,
        x_desc: &str,
        y_desc: &str,
    ) -> Result<()>
    where
        DB: DrawingBackend + 'c,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let f = &self.frame;
        let n = self.points;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, font))
            .axis_desc_style((FONT, font + 2))
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                self.cells
                    .iter()
                    .map(|c| Rectangle::new(cell_box(f, n, c), cell_colour(c, scale).filled())),
            )
            .map_err(err)?;
        // beta = alpha − 1: the line gap = 1 (from alpha = 1, where beta = 0).
        let grey = RGBColor(70, 70, 70);
        let line: Option<[(f64, f64); 2]> = match f.axes {
            GridAxes::Gap => {
                let lo = f.alpha.0.max(1.0);
                (lo < f.alpha.1 && f.y.0 < 1.0 && 1.0 < f.y.1)
                    .then_some([(lo, 1.0), (f.alpha.1, 1.0)])
            }
            GridAxes::AlphaBeta => {
                let lo = f.alpha.0.max(f.y.0 + 1.0).max(1.0);
                let hi = f.alpha.1.min(f.y.1 + 1.0);
                (lo < hi).then_some([(lo, lo - 1.0), (hi, hi - 1.0)])
            }
        };
        if let Some(l) = line {
            chart
                .draw_series(DashedLineSeries::new(l, 8, 6, grey.stroke_width(2)))
                .map_err(err)?
                .label("β = α − 1")
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], grey.stroke_width(2))
                });
        }
        // The exact region within the frame: its own edges solid, where the
        // frame cuts it open arrows outward (it goes on beyond the frame).
        let poly = self.ab.region.clipped_by(&f.half_planes());
        let planes = f.half_planes();
        let on_frame = |p: (f64, f64)| -> Option<usize> {
            planes.iter().position(|h| {
                let v = h.p * p.0 + h.q * p.1 - h.r;
                v.abs()
                    <= 1e-9
                        * (h.p.abs() * p.0.abs() + h.q.abs() * p.1.abs() + h.r.abs()).max(1e-300)
            })
        };
        let mut drew_outline = false;
        let mut opens = Vec::new();
        let k = poly.len();
        for i in 0..k {
            let (p, q) = (poly[i], poly[(i + 1) % k]);
            if k == 2 && i == 1 {
                break;
            }
            let side = match (on_frame(p), on_frame(q)) {
                (Some(a), Some(b)) if a == b => Some(a),
                _ => None,
            };
            if let Some(side) = side {
                if k > 2 {
                    opens.push((side, ((p.0 + q.0) / 2.0, (p.1 + q.1) / 2.0)));
                    continue;
                }
            }
            // Straight in (alpha, beta), mapped point by point (curved on log axes).
            let pts: Vec<(f64, f64)> = (0..=64)
                .map(|t| {
                    let t = t as f64 / 64.0;
                    f.to_frame(p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1))
                })
                .collect();
            let s = chart
                .draw_series(std::iter::once(PathElement::new(
                    pts,
                    BLACK.stroke_width(3),
                )))
                .map_err(err)?;
            if !drew_outline {
                s.label("exact feasible region (boundary)")
                    .legend(|(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(3))
                    });
                drew_outline = true;
            }
        }
        if k == 1 {
            let p = f.to_frame(poly[0].0, poly[0].1);
            chart
                .draw_series(std::iter::once(Circle::new(p, 5, BLACK.filled())))
                .map_err(err)?
                .label("exact feasible region (a point)")
                .legend(|(x, y)| Circle::new((x + 9, y), 4, BLACK.filled()));
        }
        let mut labelled = false;
        for (side, mid) in opens {
            // Frame half-planes: 0 alpha low, 1 alpha high, 2 y low, 3 y high
            // (on the gap axes 2 is the gap's low end, 3 its high end).
            let gap_axes = f.axes == GridAxes::Gap;
            let (dx, dy): (i32, i32) = match (side, gap_axes) {
                (0, _) => (-1, 0),
                (1, _) => (1, 0),
                (2, true) => (0, 1),
                (3, true) => (0, -1),
                (2, false) => (0, 1),
                _ => (0, -1),
            };
            // Inside the frame, its head on the edge the region crosses.
            let at = f.to_frame(mid.0, mid.1);
            let base = (-dx * 30, -dy * 30);
            let neck = (-dx * 10, -dy * 10);
            let (wx, wy) = (dy * 8, dx * 8);
            let arrow = EmptyElement::at(at)
                + PathElement::new(vec![base, neck], BLACK.stroke_width(3))
                + Polygon::new(
                    vec![
                        (0, 0),
                        (neck.0 + wx, neck.1 + wy),
                        (neck.0 - wx, neck.1 - wy),
                    ],
                    BLACK.filled(),
                );
            let s = chart.draw_series(std::iter::once(arrow)).map_err(err)?;
            if !labelled {
                let what = if self.ab.region.is_bounded() {
                    "region goes on beyond the frame"
                } else {
                    "region goes on beyond the frame (unbounded)"
                };
                s.label(what).legend(|(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (12, 0)], BLACK.stroke_width(3))
                        + Polygon::new(vec![(18, 0), (11, -5), (11, 5)], BLACK.filled())
                });
                labelled = true;
            }
        }
        if let Some(SmallestAlpha {
            alpha: a,
            beta_min: blo,
            beta_max: bhi,
        }) = self.ab.min_alpha
        {
            // On the gap axes the widest gap (beta_min) is the corner shown.
            let b = if bhi.is_finite() && !f.contains(a, blo) {
                bhi
            } else {
                blo
            };
            if f.contains(a, b) {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        f.to_frame(a, b),
                        8,
                        SERIES[4].filled(),
                    )))
                    .map_err(err)?
                    .label(format!("smallest α = {}", num(a)))
                    .legend(|(x, y)| Circle::new((x + 9, y), 6, SERIES[4].filled()));
            }
        }
        if let Some(GapOne { alpha: a, .. }) = self.ab.gap_one {
            if f.contains(a, a - 1.0) {
                chart
                    .draw_series(std::iter::once(TriangleMarker::new(
                        f.to_frame(a, a - 1.0),
                        10,
                        SERIES[2].filled(),
                    )))
                    .map_err(err)?
                    .label(format!("β = α − 1 holds from α = {}", num(a)))
                    .legend(|(x, y)| TriangleMarker::new((x + 9, y), 7, SERIES[2].filled()));
            }
        }
        if let Some(b) = &self.ab.best {
            if f.contains(b.alpha, b.beta) {
                chart
                    .draw_series(std::iter::once(Cross::new(
                        f.to_frame(b.alpha, b.beta),
                        8,
                        BLACK.stroke_width(3),
                    )))
                    .map_err(err)?
                    .label(format!(
                        "min β/(α − β) = {}{}",
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
            if f.contains(a, b) {
                chart
                    .draw_series(std::iter::once(Cross::new(
                        f.to_frame(a, b),
                        8,
                        RED.stroke_width(3),
                    )))
                    .map_err(err)?
                    .label(format!("empty region; least violation {} here", num(t)))
                    .legend(|(x, y)| Cross::new((x + 9, y), 6, RED.stroke_width(2)));
            }
        }
        if self.legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font((FONT, font))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

/// The colour bar of a slack scale, ticked at 0, powers of ten and the extremes.
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    scale: &SymLog,
    top: u32,
    bottom: u32,
) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let bar = area.margin(top, bottom, 12, w.saturating_sub(42) as i32);
    let mut cb = ChartBuilder::on(&bar)
        .build_cartesian_2d(0.0..1.0, -1.0..1.0)
        .map_err(err)?;
    let steps = 200;
    cb.draw_series((0..steps).map(|i| {
        let lo = -1.0 + 2.0 * i as f64 / steps as f64;
        let hi = lo + 2.0 / steps as f64;
        Rectangle::new([(0.0, lo), (1.0, hi)], diverging(0.5 * (lo + hi)).filled())
    }))
    .map_err(err)?;
    cb.draw_series(std::iter::once(Rectangle::new(
        [(0.0, -1.0), (1.0, 1.0)],
        BLACK.stroke_width(1),
    )))
    .map_err(err)?;
    let text = TextStyle::from((FONT, 14)).color(&BLACK);
    for (u, v) in scale.ticks() {
        cb.draw_series(std::iter::once(
            EmptyElement::at((1.0, u))
                + PathElement::new(vec![(0, 0), (5, 0)], BLACK)
                + Text::new(tick(v), (8, -7), text.clone()),
        ))
        .map_err(err)?;
    }
    let label = TextStyle::from((FONT, 15))
        .color(&BLACK)
        .transform(FontTransform::Rotate270);
    area.draw(&Text::new(
        "min slack T over rows  (signed log scale)",
        (
            w as i32 - 22,
            (top as i32 + h as i32 - bottom as i32) / 2 + 150,
        ),
        label,
    ))
    .map_err(err)?;
    area.draw(&Text::new(
        "holds",
        (6, top as i32 - 22),
        TextStyle::from((FONT, 14)).color(&RGBColor(33, 102, 172)),
    ))
    .map_err(err)?;
    area.draw(&Text::new(
        "violated",
        (6, h as i32 - bottom as i32 + 6),
        TextStyle::from((FONT, 14)).color(&RGBColor(178, 24, 43)),
    ))
    .map_err(err)?;
    Ok(())
}

/// The heat map of one group: a panel and its colour bar.
pub struct Heatmap<'a> {
    pub panel: HeatPanel<'a>,
}

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 800)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let scale = SymLog::of_cells(self.panel.cells.iter());
        let (main, bar) = root.split_horizontally(850);
        self.panel.draw(&main, &scale, 16)?;
        colour_bar(&bar, &scale, 60, 70)
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
    /// Plot x + 1 on a log axis (steps of log-spaced snapshots; + 1 so that
    /// step 0 has a place).
    pub log_x: bool,
    /// Horizontal reference line (value, label).
    pub hline: Option<(f64, String)>,
    /// Points to flag (label, points), drawn as red crosses over the lines.
    pub marks: Option<(String, Vec<(f64, f64)>)>,
}

/// Whether steps are log-spaced enough to deserve a log axis: at least 8
/// distinct steps in the first 2% of the range (as `snapshots.log_spaced`
/// puts them; a linear axis would crowd them into a few pixel columns).
pub fn log_spaced(steps: impl Iterator<Item = f64>) -> bool {
    let mut v: Vec<f64> = steps.filter(|s| s.is_finite() && *s >= 0.0).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup();
    let Some(&last) = v.last() else {
        return false;
    };
    v.iter().filter(|&&s| s <= 0.02 * last).count() >= 8
}

impl Lines {
    /// The same lines with x moved to x + 1 (for the log x axis).
    fn shifted(&self) -> Lines {
        let sh = |p: &Vec<(f64, f64)>| p.iter().map(|(x, y)| (x + 1.0, *y)).collect();
        Lines {
            title: self.title.clone(),
            x_desc: self.x_desc.clone(),
            y_desc: self.y_desc.clone(),
            series: self
                .series
                .iter()
                .map(|(l, p, m)| (l.clone(), sh(p), *m))
                .collect(),
            log_y: self.log_y,
            log_x: false,
            hline: self.hline.clone(),
            marks: self.marks.as_ref().map(|(l, p)| (l.clone(), sh(p))),
        }
    }
}

impl Figure for Lines {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        if self.log_x {
            let mut s = self.shifted();
            s.x_desc = format!("{} + 1  (log scale)", self.x_desc);
            return s.draw_axes(root, true);
        }
        self.draw_axes(root, false)
    }
}

impl Lines {
    fn draw_axes<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        log_x: bool,
    ) -> Result<()> {
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
                    .x_label_formatter(&|v| tick(*v))
                    .y_label_formatter(&|v| tick(*v))
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
        let pad = 0.05 * (y1 - y0);
        match (log_x, self.log_y) {
            (false, true) => body!(builder
                .build_cartesian_2d(x0..x1, ((y0 / 1.25)..(y1 * 1.25)).log_scale())
                .map_err(err)?),
            (false, false) => body!(builder
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(err)?),
            (true, true) => body!(builder
                .build_cartesian_2d(
                    (x0.max(1.0)..x1.max(2.0)).log_scale(),
                    ((y0 / 1.25)..(y1 * 1.25)).log_scale()
                )
                .map_err(err)?),
            (true, false) => body!(builder
                .build_cartesian_2d(
                    (x0.max(1.0)..x1.max(2.0)).log_scale(),
                    (y0 - pad)..(y1 + pad)
                )
                .map_err(err)?),
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
                format!("δ = {d} ({run})")
            } else {
                format!("δ = {d}")
            };
            series.push((label, pts, true));
        }
    }
    let log_x = log_spaced(runs.iter().flat_map(|r| r.1.iter().map(|p| p.step as f64)));
    Lines {
        title: format!("relaxed PL: ln(2μ) ≤ 2 ln‖∇f(x^k)‖ − (2/δ) ln(f(x^k) − f(x^K))  [{title}]"),
        x_desc: "step k".into(),
        y_desc: "2 ln‖∇f‖ − (2/δ) ln(f − f(x^K))".into(),
        series,
        log_y: false,
        log_x,
        hline: None,
        marks: None,
    }
}

/// Aiming angle over steps, one line per run; above 90° Aiming fails.
pub fn aiming_figure(title: &str, runs: &[(String, Vec<AimingRow>)]) -> Lines {
    let log_x = log_spaced(runs.iter().flat_map(|r| r.1.iter().map(|p| p.step as f64)));
    Lines {
        log_x,
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

/// A curve with its spread over the seeds of a group: (x, lowest, mean,
/// highest) at every x.
pub struct Band {
    pub label: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// The band of several runs' curves: where all runs have the same x values,
/// min/mean/max at each; else None.
pub fn band_of(label: String, curves: &[Vec<(f64, f64)>]) -> Option<Band> {
    let first = curves.first()?;
    if curves
        .iter()
        .any(|c| c.len() != first.len() || c.iter().zip(first).any(|(a, b)| a.0 != b.0))
    {
        return None;
    }
    let points = (0..first.len())
        .map(|i| {
            let ys = curves.iter().map(|c| c[i].1);
            let lo = ys.clone().fold(f64::INFINITY, f64::min);
            let hi = ys.clone().fold(f64::NEG_INFINITY, f64::max);
            let mean = ys.sum::<f64>() / curves.len() as f64;
            (first[i].0, lo, mean, hi)
        })
        .collect();
    Some(Band { label, points })
}

/// Curves with seed bands on one chart.
pub struct BandChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub bands: Vec<Band>,
    pub log_x: bool,
    pub log_y: bool,
    pub hline: Option<(f64, String)>,
}

impl BandChart {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let shift = if self.log_x { 1.0 } else { 0.0 };
        let ok = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0);
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for b in &self.bands {
            for &(x, lo, _, hi) in &b.points {
                for y in [lo, hi] {
                    if ok(x, y) {
                        x0 = x0.min(x + shift);
                        x1 = x1.max(x + shift);
                        y0 = y0.min(y);
                        y1 = y1.max(y);
                    }
                }
            }
        }
        if let Some((h, _)) = &self.hline {
            y0 = y0.min(*h);
            y1 = y1.max(*h);
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (1.0, 2.0, 1.0, 2.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            let d = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
            (y0, y1) = (y0 - d, y1 + d);
        }
        let x_desc = if self.log_x {
            format!("{} + 1  (log scale)", self.x_desc)
        } else {
            self.x_desc.clone()
        };
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (FONT, 17))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(65);
        let pad = 0.05 * (y1 - y0);
        let (ly0, ly1) = (y0 / 1.25, y1 * 1.25);
        let x0 = if self.log_x { x0.max(1.0) } else { x0 };
        match (self.log_x, self.log_y) {
            (true, true) => self.body(
                &mut builder
                    .build_cartesian_2d((x0..x1).log_scale(), (ly0..ly1).log_scale())
                    .map_err(err)?,
                &x_desc,
                shift,
            ),
            (true, false) => self.body(
                &mut builder
                    .build_cartesian_2d((x0..x1).log_scale(), (y0 - pad)..(y1 + pad))
                    .map_err(err)?,
                &x_desc,
                shift,
            ),
            (false, true) => self.body(
                &mut builder
                    .build_cartesian_2d(x0..x1, (ly0..ly1).log_scale())
                    .map_err(err)?,
                &x_desc,
                shift,
            ),
            (false, false) => self.body(
                &mut builder
                    .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                    .map_err(err)?,
                &x_desc,
                shift,
            ),
        }
    }

    fn body<'c, DB, X, Y>(
        &self,
        chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>,
        x_desc: &str,
        shift: f64,
    ) -> Result<()>
    where
        DB: DrawingBackend + 'c,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(&self.y_desc)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        let (xr, yr) = (chart.x_range(), chart.y_range());
        if let Some((h, label)) = &self.hline {
            chart
                .draw_series(DashedLineSeries::new(
                    [(xr.start, *h), (xr.end, *h)],
                    8,
                    6,
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?
                .label(label.clone())
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
        }
        let clamp = |y: f64| y.clamp(yr.start, yr.end);
        for (i, b) in self.bands.iter().enumerate() {
            let c = SERIES[i % SERIES.len()];
            let pts: Vec<&(f64, f64, f64, f64)> = b
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite() && p.3.is_finite())
                .filter(|p| !(self.log_y_band() && p.1 <= 0.0))
                .collect();
            if pts.iter().any(|p| p.3 > p.1) {
                let mut poly: Vec<(f64, f64)> =
                    pts.iter().map(|p| (p.0 + shift, clamp(p.3))).collect();
                poly.extend(pts.iter().rev().map(|p| (p.0 + shift, clamp(p.1))));
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.25).filled())))
                    .map_err(err)?;
            }
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0 + shift, clamp(p.2))),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(b.label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        Ok(())
    }

    fn log_y_band(&self) -> bool {
        self.log_y
    }
}

/// The paper-style figure of an experiment: one heat map per group (sweep
/// value) on a shared frame and colour scale, then the loss and the Aiming
/// angle of every group with the spread over its seeds as bands.
pub struct Overview<'a> {
    pub title: String,
    pub panels: Vec<HeatPanel<'a>>,
    pub loss: BandChart,
    pub aiming: Option<BandChart>,
}

impl Overview<'_> {
    fn cols(&self) -> u32 {
        (self.panels.len() as u32).clamp(1, 3)
    }
    fn rows(&self) -> u32 {
        (self.panels.len() as u32).div_ceil(self.cols()).max(1)
    }
}

impl Figure for Overview<'_> {
    fn size(&self) -> (u32, u32) {
        let w = (self.cols() * 600).max(1200) + 110;
        (w, 50 + self.rows() * 560 + 430)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (w, _) = self.size();
        let root = root.titled(&self.title, (FONT, 22)).map_err(err)?;
        let (heat, bottom) = root.split_vertically(self.rows() * 560);
        let (maps, bar) = heat.split_horizontally(w - 110);
        let scale = SymLog::of_cells(self.panels.iter().flat_map(|p| p.cells.iter()));
        let cells = maps.split_evenly((self.rows() as usize, self.cols() as usize));
        for (p, area) in self.panels.iter().zip(cells.iter()) {
            p.draw(area, &scale, 14)?;
        }
        colour_bar(&bar, &scale, 60, 60)?;
        match &self.aiming {
            Some(a) => {
                let (l, r) = bottom.split_horizontally(w / 2);
                self.loss.draw(&l)?;
                a.draw(&r)?;
            }
            None => self.loss.draw(&bottom)?,
        }
        Ok(())
    }
}

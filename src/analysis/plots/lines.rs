//! Line charts over steps: one line per series (`Lines`) or curves with seed bands (`BandChart`).

use super::*;

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
            return s.draw_on(root, true);
        }
        self.draw_on(root, false)
    }
}

impl Lines {
    fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        log_x: bool,
    ) -> Result<()> {
        let range = data_range(
            self.series.iter().flat_map(|s| s.1.iter().copied()),
            self.log_y,
            self.hline.as_ref().map(|h| h.0),
            (0.0, 1.0, 0.0, 1.0),
        );
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, (FONT, 20))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(80);
        on_axes(&mut builder, log_x, self.log_y, range, self)
    }
}

impl Plot for Lines {
    fn plot<'c, DB, X, Y>(&self, chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>) -> Result<()>
    where
        DB: DrawingBackend + 'c,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
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
            reference_line(chart, *h, label)?;
        }
        for (i, (label, points, markers)) in self.series.iter().enumerate() {
            let c = SERIES[i % SERIES.len()];
            let clean: Vec<(f64, f64)> = points
                .iter()
                .copied()
                .filter(|&(x, y)| plottable(x, y, self.log_y))
                .collect();
            chart
                .draw_series(LineSeries::new(clean.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
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
            legend(chart, 14)?;
        }
        Ok(())
    }
}

/// What is drawn inside a pair of axes, whatever their scales.
trait Plot {
    fn plot<'c, DB, X, Y>(&self, chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>) -> Result<()>
    where
        DB: DrawingBackend + 'c,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>;
}

/// Whether a point can be drawn (finite; positive on a log y axis).
fn plottable(x: f64, y: f64, log_y: bool) -> bool {
    x.is_finite() && y.is_finite() && !(log_y && y <= 0.0)
}

/// The range (x0, x1, y0, y1) of the plottable points and the reference
/// line, never empty: `empty` where there is no point, one unit (or 10 %)
/// wide where all points share an x or a y.
fn data_range(
    points: impl Iterator<Item = (f64, f64)>,
    log_y: bool,
    hline: Option<f64>,
    empty: (f64, f64, f64, f64),
) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in points.filter(|&(x, y)| plottable(x, y, log_y)) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if let Some(h) = hline {
        y0 = y0.min(h);
        y1 = y1.max(h);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = empty;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        let d = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
        (y0, y1) = (y0 - d, y1 + d);
    }
    (x0, x1, y0, y1)
}

/// Builds the axes over `range` (x from 1 on a log x axis; y padded by 5 %
/// on a linear axis, by a factor 1.25 on a log one) and draws `p` on them.
fn on_axes<DB: DrawingBackend, P: Plot>(
    builder: &mut ChartBuilder<DB>,
    log_x: bool,
    log_y: bool,
    (x0, x1, y0, y1): (f64, f64, f64, f64),
    p: &P,
) -> Result<()> {
    let pad = 0.05 * (y1 - y0);
    let (y0, y1, ly0, ly1) = (y0 - pad, y1 + pad, y0 / 1.25, y1 * 1.25);
    let (lx0, lx1) = (x0.max(1.0), x1.max(2.0));
    match (log_x, log_y) {
        (true, true) => p.plot(
            &mut builder
                .build_cartesian_2d(
                    (lx0..lx1).log_scale().with_key_points(log_ticks(lx0, lx1)),
                    (ly0..ly1).log_scale().with_key_points(log_ticks(ly0, ly1)),
                )
                .map_err(err)?,
        ),
        (true, false) => p.plot(
            &mut builder
                .build_cartesian_2d(
                    (lx0..lx1).log_scale().with_key_points(log_ticks(lx0, lx1)),
                    y0..y1,
                )
                .map_err(err)?,
        ),
        (false, true) => p.plot(
            &mut builder
                .build_cartesian_2d(
                    x0..x1,
                    (ly0..ly1).log_scale().with_key_points(log_ticks(ly0, ly1)),
                )
                .map_err(err)?,
        ),
        (false, false) => p.plot(&mut builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?),
    }
}

/// A dashed horizontal line across the chart at `y`, with its legend entry.
fn reference_line<'c, DB, X, Y>(
    chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>,
    y: f64,
    label: &str,
) -> Result<()>
where
    DB: DrawingBackend + 'c,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let xr = chart.x_range();
    chart
        .draw_series(DashedLineSeries::new(
            [(xr.start, y), (xr.end, y)],
            8,
            6,
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label(label.to_string())
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
    Ok(())
}

/// The legend box, upper right.
fn legend<'c, DB, X, Y>(
    chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>,
    size: u32,
) -> Result<()>
where
    DB: DrawingBackend + 'c,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, size))
        .draw()
        .map_err(err)?;
    Ok(())
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
    pub(super) fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let shift = self.shift();
        let range = data_range(
            self.bands.iter().flat_map(|b| {
                b.points
                    .iter()
                    .flat_map(move |&(x, lo, _, hi)| [(x + shift, lo), (x + shift, hi)])
            }),
            self.log_y,
            self.hline.as_ref().map(|h| h.0),
            (1.0, 2.0, 1.0, 2.0),
        );
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (FONT, 17))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(65);
        on_axes(&mut builder, self.log_x, self.log_y, range, self)
    }

    /// x + 1 on a log x axis (step 0 has a place).
    fn shift(&self) -> f64 {
        if self.log_x {
            1.0
        } else {
            0.0
        }
    }
}

impl Plot for BandChart {
    fn plot<'c, DB, X, Y>(&self, chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>) -> Result<()>
    where
        DB: DrawingBackend + 'c,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let x_desc = if self.log_x {
            format!("{} + 1  (log scale)", self.x_desc)
        } else {
            self.x_desc.clone()
        };
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
        if let Some((h, label)) = &self.hline {
            reference_line(chart, *h, label)?;
        }
        let yr = chart.y_range();
        let clamp = |y: f64| y.clamp(yr.start, yr.end);
        let shift = self.shift();
        for (i, b) in self.bands.iter().enumerate() {
            let c = SERIES[i % SERIES.len()];
            let pts: Vec<&(f64, f64, f64, f64)> = b
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite() && p.3.is_finite())
                .filter(|p| !(self.log_y && p.1 <= 0.0))
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
        legend(chart, 13)
    }
}

//! Heat-map panels: min slack on the grid, the exact region, the landmarks, the colour bar.

use super::*;

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
                    .build_cartesian_2d(
                        (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)),
                        (y0..y1).log_scale().with_key_points(log_ticks(y0, y1)),
                    )
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
        // What the legend will list, and where the landmarks are (frame
        // coordinates), so that the legend goes where it hides none.
        let mut labels: Vec<String> = Vec::new();
        let mut marks: Vec<(f64, f64)> = Vec::new();
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
                .label(remember(&mut labels, "β = α − 1".into()))
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
                s.label(remember(
                    &mut labels,
                    "exact feasible region (boundary)".into(),
                ))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(3)));
                drew_outline = true;
            }
        }
        if k == 1 {
            let p = f.to_frame(poly[0].0, poly[0].1);
            chart
                .draw_series(std::iter::once(Circle::new(p, 5, BLACK.filled())))
                .map_err(err)?
                .label(remember(
                    &mut labels,
                    "exact feasible region (a point)".into(),
                ))
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
            marks.push(at);
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
                s.label(remember(&mut labels, what.into()))
                    .legend(|(x, y)| {
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
                marks.push(f.to_frame(a, b));
                chart
                    .draw_series(std::iter::once(Circle::new(
                        f.to_frame(a, b),
                        8,
                        SERIES[4].filled(),
                    )))
                    .map_err(err)?
                    .label(remember(&mut labels, format!("smallest α = {}", num(a))))
                    .legend(|(x, y)| Circle::new((x + 9, y), 6, SERIES[4].filled()));
            }
        }
        if let Some(GapOne { alpha: a, .. }) = self.ab.gap_one {
            if f.contains(a, a - 1.0) {
                marks.push(f.to_frame(a, a - 1.0));
                chart
                    .draw_series(std::iter::once(TriangleMarker::new(
                        f.to_frame(a, a - 1.0),
                        10,
                        SERIES[2].filled(),
                    )))
                    .map_err(err)?
                    .label(remember(
                        &mut labels,
                        format!("β = α − 1 holds from α = {}", num(a)),
                    ))
                    .legend(|(x, y)| TriangleMarker::new((x + 9, y), 7, SERIES[2].filled()));
            }
        }
        if let Some(b) = &self.ab.best {
            if f.contains(b.alpha, b.beta) {
                marks.push(f.to_frame(b.alpha, b.beta));
                chart
                    .draw_series(std::iter::once(Cross::new(
                        f.to_frame(b.alpha, b.beta),
                        8,
                        BLACK.stroke_width(3),
                    )))
                    .map_err(err)?
                    .label(remember(
                        &mut labels,
                        format!(
                            "min β/(α − β) = {}{}",
                            num(b.ratio),
                            if b.attained { "" } else { " (approached)" }
                        ),
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
                marks.push(f.to_frame(a, b));
                chart
                    .draw_series(std::iter::once(Cross::new(
                        f.to_frame(a, b),
                        8,
                        RED.stroke_width(3),
                    )))
                    .map_err(err)?
                    .label(remember(
                        &mut labels,
                        format!("empty region; least violation {} here", num(t)),
                    ))
                    .legend(|(x, y)| Cross::new((x + 9, y), 6, RED.stroke_width(2)));
            }
        }
        if self.legend {
            let corner = legend_corner(chart, &labels, &marks, font);
            chart
                .configure_series_labels()
                .position(corner)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font((FONT, font))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

/// Records a legend label and hands it on.
fn remember(labels: &mut Vec<String>, label: String) -> String {
    labels.push(label.clone());
    label
}

/// The corner of the plotting area (upper left, upper right, lower right,
/// lower left, in this order of preference) whose legend box covers the
/// fewest landmarks: the box is measured as plotters lays it out (text of
/// `labels`, a 30 px symbol column, 10 px margins, 5 px from the edges) and
/// widened by a marker's radius.
fn legend_corner<'c, DB, X, Y>(
    chart: &ChartContext<'c, DB, Cartesian2d<X, Y>>,
    labels: &[String],
    marks: &[(f64, f64)],
    font: u32,
) -> SeriesLabelPosition
where
    DB: DrawingBackend + 'c,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    use SeriesLabelPosition::*;
    let style: TextStyle = (FONT, font).into_font().into();
    let mut text = MultiLineText::<_, &str>::new((0, 0), &style);
    for l in labels {
        text.push_line(l.as_str());
    }
    let Ok((w, h)) = text.estimate_dimension() else {
        return UpperLeft;
    };
    let (w, h) = (w + 30 + 20, h + 20);
    let area = chart.plotting_area();
    let (aw, ah) = area.dim_in_pixel();
    let base = area.get_base_pixel();
    let pts: Vec<(i32, i32)> = marks
        .iter()
        .map(|p| {
            let (x, y) = chart.backend_coord(p);
            (x - base.0, y - base.1)
        })
        .collect();
    let (right, bottom) = (aw as i32 - w - 5, ah as i32 - h - 5);
    let covered = |x0: i32, y0: i32| {
        pts.iter()
            .filter(|&&(x, y)| x >= x0 - 12 && x <= x0 + w + 12 && y >= y0 - 12 && y <= y0 + h + 12)
            .count()
    };
    [
        (UpperLeft, 5, 5),
        (UpperRight, right, 5),
        (LowerRight, right, bottom),
        (LowerLeft, 5, bottom),
    ]
    .into_iter()
    .min_by_key(|&(_, x, y)| covered(x, y))
    .map_or(UpperLeft, |c| c.0)
}

/// The colour bar of a slack scale, ticked at 0, powers of ten and the extremes.
pub(super) fn colour_bar<DB: DrawingBackend>(
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

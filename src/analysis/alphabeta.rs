//! The alpha-beta condition of one group of runs (docs/theory.md, The
//! alpha-beta condition; Feasible region): the constraint rows (a, b, c) of
//! every minibatch probe row of every run in the group, the
//! exact feasible region and its landmarks, the slack grid of the heat maps,
//! and the interpolation error sigma_int².

use super::inputs::{Group, RunData};
use super::region::{self, BestRatio, HalfPlane, Region};
use crate::config::{AnalysisConfig, FStar, GridAxes};
use crate::store::label::ProbeLabel;
use std::collections::HashMap;

/// One constraint row: T = a − alpha·b + beta·c ≥ 0, from `runs[run].rows[row]`.
#[derive(Debug, Clone, Copy)]
pub struct AbRow {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub run: usize,
    pub row: usize,
}

impl AbRow {
    pub fn slack(&self, alpha: f64, beta: f64) -> f64 {
        self.a - alpha * self.b + beta * self.c
    }
}

/// f_i* of every minibatch probe row of a run, in row order (None for `full` rows).
pub fn f_stars(run: &RunData, f_star: FStar) -> Vec<Option<f64>> {
    let key = |r: &crate::store::tables::LandscapeRow| r.batch_indices.clone();
    let mut min: HashMap<Option<Vec<i64>>, f64> = HashMap::new();
    if f_star == FStar::MinObserved {
        for r in run.rows.iter().filter(|r| r.probe != ProbeLabel::Full) {
            let m = min.entry(key(r)).or_insert(f64::INFINITY);
            *m = m.min(r.loss_k).min(r.loss_ref);
        }
    }
    // Known-answer models: the exact minimum of each minibatch loss (the
    // settings check that every run's model knows it).
    let problem = (f_star == FStar::Known)
        .then(|| crate::model::known::Problem::new(&run.config.model).ok())
        .flatten();
    let mut exact: HashMap<Option<Vec<i64>>, f64> = HashMap::new();
    run.rows
        .iter()
        .map(|r| {
            (r.probe != ProbeLabel::Full).then(|| match f_star {
                FStar::Constant(v) => v,
                FStar::MinObserved => min[&key(r)],
                FStar::Known => *exact.entry(key(r)).or_insert_with(|| {
                    problem
                        .as_ref()
                        .and_then(|p| p.minibatch_min(r.batch_indices.as_deref()?))
                        .unwrap_or(f64::NAN)
                }),
            })
        })
        .collect()
}

/// The constraint rows of a group: every minibatch row (`train` and `extra-*`,
/// or `train` only with `analysis.train_only`) of every run.
pub fn rows(runs: &[RunData], group: &Group, settings: &AnalysisConfig) -> Vec<AbRow> {
    let mut out = Vec::new();
    for &ri in &group.runs {
        let run = &runs[ri];
        let stars = f_stars(run, settings.f_star);
        for (i, r) in run.rows.iter().enumerate() {
            let Some(fs) = stars[i] else { continue };
            if settings.train_only && r.probe != ProbeLabel::Train {
                continue;
            }
            out.push(AbRow {
                a: r.inner,
                b: r.loss_k - r.loss_ref,
                c: r.loss_k - fs,
                run: ri,
                row: i,
            });
        }
    }
    out
}

/// sigma_int² = E_i[f* − f_i*] of one run, estimated at x^K: f(x^K) from the
/// full-data probe (or the mean minibatch loss at x^K when there is none)
/// minus the mean f_i* of the probed minibatches. Returns (value, f(x^K),
/// whether f(x^K) came from a full-data probe).
pub fn sigma_int2(run: &RunData, f_star: FStar) -> Option<(f64, f64, bool)> {
    let stars = f_stars(run, f_star);
    let mini: Vec<usize> = (0..run.rows.len())
        .filter(|&i| stars[i].is_some())
        .collect();
    if mini.is_empty() {
        return None;
    }
    let n = mini.len() as f64;
    let mean_star = mini.iter().map(|&i| stars[i].unwrap()).sum::<f64>() / n;
    let (f_ref, from_full) = match run.rows.iter().find(|r| r.probe == ProbeLabel::Full) {
        Some(r) => (r.loss_ref, true),
        None => (
            mini.iter().map(|&i| run.rows[i].loss_ref).sum::<f64>() / n,
            false,
        ),
    };
    Some((f_ref - mean_star, f_ref, from_full))
}

/// The exact region of a group and what the summary reports about it.
pub struct AbResult {
    pub rows: Vec<AbRow>,
    pub region: Region,
    pub min_alpha: Option<SmallestAlpha>,
    /// None when no alpha works with beta = alpha − 1 (or margin > 1).
    pub gap_one: Option<GapOne>,
    pub best: Option<BestRatio>,
    /// Empty region only.
    pub least_violation: Option<LeastViolation>,
    /// Empty region: the rows most violated at the least-violation pair, worst first.
    pub most_violating: Vec<Violation>,
}

/// The smallest alpha for which some beta works, and beta's range there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmallestAlpha {
    pub alpha: f64,
    pub beta_min: f64,
    pub beta_max: f64,
}

/// The smallest alpha with beta = alpha − 1, and the row that binds there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GapOne {
    pub alpha: f64,
    /// Index into [`AbResult::rows`].
    pub binding: Option<usize>,
}

/// Empty region: the pair where the worst row is least violated, and the
/// slack of that row there (negative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeastViolation {
    pub alpha: f64,
    pub beta: f64,
    pub slack: f64,
}

/// A constraint row (index into [`AbResult::rows`]) and its slack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Violation {
    pub row: usize,
    pub slack: f64,
}

pub fn analyse(rows: Vec<AbRow>, margin: f64) -> AbResult {
    let hp: Vec<HalfPlane> = rows.iter().map(|r| HalfPlane::row(r.a, r.b, r.c)).collect();
    let region = region::intersect(margin, &hp);
    let abc: Vec<(f64, f64, f64)> = rows.iter().map(|r| (r.a, r.b, r.c)).collect();
    let gap_one = if margin <= 1.0 {
        region::smallest_on_gap_line(&abc, 1.0).map(|(alpha, binding)| GapOne { alpha, binding })
    } else {
        None
    };
    let (least_violation, most_violating) = if region.is_empty() {
        let (a, b, t) = region::least_violation(margin, &hp);
        let mut worst: Vec<Violation> = rows
            .iter()
            .enumerate()
            .map(|(row, r)| Violation {
                row,
                slack: r.slack(a, b),
            })
            .filter(|v| v.slack < 0.0)
            .collect();
        worst.sort_by(|x, y| x.slack.total_cmp(&y.slack));
        worst.truncate(5);
        let least = LeastViolation {
            alpha: a,
            beta: b,
            slack: -t,
        };
        (Some(least), worst)
    } else {
        (None, Vec::new())
    };
    AbResult {
        min_alpha: region
            .min_alpha()
            .map(|(alpha, beta_min, beta_max)| SmallestAlpha {
                alpha,
                beta_min,
                beta_max,
            }),
        best: region.best_ratio(),
        gap_one,
        least_violation,
        most_violating,
        region,
        rows,
    }
}

/// The frame of the grid and the heat maps: alpha across, and up either
/// the gap alpha − beta (both axes log-scaled) or beta (both linear).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub axes: GridAxes,
    pub alpha: (f64, f64),
    /// The gap alpha − beta (`Gap`) or beta (`AlphaBeta`).
    pub y: (f64, f64),
}

impl Frame {
    /// The grid point (alpha, y) of column i and row j of an n × n grid:
    /// evenly spaced, geometrically on the log axes.
    pub fn point(&self, i: usize, j: usize, n: usize) -> (f64, f64) {
        let at = |(lo, hi): (f64, f64), k: usize| {
            let t = k as f64 / (n - 1) as f64;
            match self.axes {
                GridAxes::Gap => lo * (hi / lo).powf(t),
                GridAxes::AlphaBeta => lo + (hi - lo) * t,
            }
        };
        (at(self.alpha, i), at(self.y, j))
    }

    /// beta of a frame point (alpha, y).
    pub fn beta(&self, alpha: f64, y: f64) -> f64 {
        match self.axes {
            GridAxes::Gap => alpha - y,
            GridAxes::AlphaBeta => y,
        }
    }

    /// The frame point (alpha, y) of a pair (alpha, beta).
    pub fn to_frame(&self, alpha: f64, beta: f64) -> (f64, f64) {
        match self.axes {
            GridAxes::Gap => (alpha, alpha - beta),
            GridAxes::AlphaBeta => (alpha, beta),
        }
    }

    /// Whether the pair (alpha, beta) lies inside the frame (with a relative
    /// tolerance of 1e-9, so landmarks on its edge count).
    pub fn contains(&self, alpha: f64, beta: f64) -> bool {
        let (x, y) = self.to_frame(alpha, beta);
        let within = |v: f64, (lo, hi): (f64, f64)| {
            let tol = 1e-9 * lo.abs().max(hi.abs());
            v >= lo - tol && v <= hi + tol
        };
        within(x, self.alpha) && within(y, self.y)
    }

    /// The frame as half-planes p·alpha + q·beta ≤ r in the (alpha, beta)
    /// plane (for clipping the exact region to it).
    pub fn half_planes(&self) -> [HalfPlane; 4] {
        let (a0, a1) = self.alpha;
        let (y0, y1) = self.y;
        let h = |p: f64, q: f64, r: f64| HalfPlane { p, q, r };
        match self.axes {
            // y0 ≤ alpha − beta ≤ y1
            GridAxes::Gap => [
                h(-1.0, 0.0, -a0),
                h(1.0, 0.0, a1),
                h(-1.0, 1.0, -y0),
                h(1.0, -1.0, y1),
            ],
            GridAxes::AlphaBeta => [
                h(-1.0, 0.0, -a0),
                h(1.0, 0.0, a1),
                h(0.0, -1.0, -y0),
                h(0.0, 1.0, y1),
            ],
        }
    }
}

/// The smallest frame holding all of `frames` (same axes): the shared frame
/// of a multi-panel figure.
pub fn union(frames: &[Frame]) -> Option<Frame> {
    let first = *frames.first()?;
    Some(frames.iter().fold(first, |u, f| Frame {
        axes: u.axes,
        alpha: (u.alpha.0.min(f.alpha.0), u.alpha.1.max(f.alpha.1)),
        y: (u.y.0.min(f.y.0), u.y.1.max(f.y.1)),
    }))
}

/// The alphas and (alpha, beta) pairs the frame must show: smallest alpha
/// (both ends of its beta range), the beta = alpha − 1 point, the best-ratio
/// pair, the least-violation pair of an empty region.
pub fn landmarks(r: &AbResult) -> Vec<(f64, f64)> {
    let mut marks = Vec::new();
    if let Some(m) = r.min_alpha {
        marks.push((m.alpha, m.beta_min));
        marks.push((m.alpha, m.beta_max));
    }
    if let Some(GapOne { alpha: a, .. }) = r.gap_one {
        marks.push((a, a - 1.0));
    }
    if let Some(b) = &r.best {
        marks.push((b.alpha, b.beta));
    }
    if let Some(LeastViolation {
        alpha: a, beta: b, ..
    }) = r.least_violation
    {
        marks.push((a, b));
    }
    marks.retain(|(a, b)| a.is_finite() && b.is_finite());
    marks
}

/// The frame of the grid: the configured ranges where given; else, on the
/// `gap` axes, alpha from half the smallest landmark alpha to twice the
/// largest finite vertex (up to 10⁴ times the landmarks) and the gap from
/// 0.8·margin to 1.5 times the region's widest gap in that alpha range; on
/// the `alpha-beta` axes [0, A] × [0, A] with A a fifth beyond the landmarks
/// and the finite vertices up to 10× those.
pub fn frame(r: &AbResult, s: &AnalysisConfig) -> Frame {
    let marks = landmarks(r);
    let axes = s.grid.effective_axes();
    match axes {
        GridAxes::AlphaBeta => {
            let base = marks.iter().map(|m| m.0).fold(0.0f64, f64::max);
            let near = r
                .region
                .vertices
                .iter()
                .map(|v| v.0)
                .filter(|a| *a <= 10.0 * base.max(1.0))
                .fold(base, f64::max);
            let top = (1.2 * near).max(1.0).max(4.0 * s.margin);
            let [a0, a1] = s.grid.alpha.unwrap_or([0.0, top]);
            let [b0, b1] = s.grid.beta.unwrap_or([0.0, a1]);
            Frame {
                axes,
                alpha: (a0, a1),
                y: (b0, b1),
            }
        }
        GridAxes::Gap => {
            let m = s.margin;
            let lo = marks.iter().map(|m| m.0).fold(f64::INFINITY, f64::min);
            let hi = marks.iter().map(|m| m.0).fold(0.0f64, f64::max);
            let lo = if lo.is_finite() { lo.max(m) } else { m };
            let far = r
                .region
                .vertices
                .iter()
                .map(|v| v.0)
                .filter(|a| a.is_finite() && *a <= 1e4 * hi.max(lo))
                .fold(hi.max(lo), f64::max);
            let [a0, a1] = s
                .grid
                .alpha
                .unwrap_or([0.5 * lo, (2.0 * far).max(20.0 * lo)]);
            let [g0, g1] = s.grid.gap.unwrap_or_else(|| {
                // The widest gap of the region (or the landmarks') in the alpha range.
                let strip = [
                    HalfPlane {
                        p: -1.0,
                        q: 0.0,
                        r: -a0,
                    },
                    HalfPlane {
                        p: 1.0,
                        q: 0.0,
                        r: a1,
                    },
                ];
                let widest = r
                    .region
                    .clipped_by(&strip)
                    .iter()
                    .chain(marks.iter())
                    .map(|(a, b)| a - b)
                    .filter(|g| g.is_finite())
                    .fold(m, f64::max);
                let top = if r.gap_one.is_some() {
                    widest.max(1.0)
                } else {
                    widest
                };
                [0.8 * m, (1.5 * top).max(3.0 * m).min(a1.max(3.0 * m))]
            });
            Frame {
                axes,
                alpha: (a0, a1),
                y: (g0, g1),
            }
        }
    }
}

/// One grid cell of the heat map.
#[derive(Debug, Clone)]
pub struct Cell {
    pub alpha: f64,
    pub beta: f64,
    /// alpha ≥ beta + margin and beta ≥ 0 (the paper shows only these cells).
    pub in_domain: bool,
    pub min_slack: f64,
    pub violations: usize,
    /// Index into the rows of the row attaining `min_slack`.
    pub binding: usize,
}

impl Cell {
    pub fn feasible(&self) -> bool {
        self.in_domain && self.min_slack >= 0.0
    }
}

/// Min slack and violation count over `rows` at every grid point
/// (alpha-major), computed on all cores.
pub fn grid(rows: &[AbRow], frame: Frame, n: usize, margin: f64) -> Vec<Cell> {
    if rows.is_empty() {
        return Vec::new();
    }
    let column = |i: usize| -> Vec<Cell> {
        (0..n)
            .map(|j| {
                let (alpha, y) = frame.point(i, j, n);
                let beta = frame.beta(alpha, y);
                let mut min = f64::INFINITY;
                let mut binding = 0;
                let mut violations = 0;
                for (k, r) in rows.iter().enumerate() {
                    let t = r.slack(alpha, beta);
                    if t < 0.0 {
                        violations += 1;
                    }
                    if t < min {
                        min = t;
                        binding = k;
                    }
                }
                Cell {
                    alpha,
                    beta,
                    in_domain: beta >= 0.0 && alpha >= beta + margin,
                    min_slack: min,
                    violations,
                    binding,
                }
            })
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(n);
    let mut columns: Vec<Vec<Cell>> = vec![Vec::new(); n];
    std::thread::scope(|s| {
        for (t, chunk) in columns.chunks_mut(n.div_ceil(threads)).enumerate() {
            let start = t * n.div_ceil(threads);
            let column = &column;
            s.spawn(move || {
                for (k, c) in chunk.iter_mut().enumerate() {
                    *c = column(start + k);
                }
            });
        }
    });
    columns.into_iter().flatten().collect()
}

//! The exact feasible (alpha, beta) region of the alpha-beta condition.
//!
//! Each probe row gives a = <∇f_i(x^k), x^k − x^K>, b = f_i(x^k) − f_i(x^K) and
//! c = f_i(x^k) − f_i*; the slack T = a − alpha·b + beta·c is affine in
//! (alpha, beta), so the pairs with T ≥ 0 on every row, alpha ≥ beta + margin
//! and beta ≥ 0 form a convex polygon, possibly unbounded or empty. It is
//! computed here by clipping the wedge {beta ≥ 0, alpha ≥ beta + margin} with
//! one half-plane per row, in homogeneous coordinates (x, y, w), w ≥ 0:
//! finite points have w > 0, points at infinity (directions of unbounded
//! edges) have w = 0. Clipping is then the same operation for bounded and
//! unbounded polygons, and near-parallel constraints only produce vertices with
//! small w (far away) instead of divisions by zero.
//!
//! Constraints are met to a relative tolerance of [`TOL`] (a vertex counts as
//! inside a half-plane when it violates it by at most 1e-12 of the magnitude of
//! the terms), so that a region that is exactly one point or one segment does
//! not vanish by rounding.

/// Relative tolerance of the inside test.
pub const TOL: f64 = 1e-12;

/// A half-plane p·alpha + q·beta ≤ r.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HalfPlane {
    pub p: f64,
    pub q: f64,
    pub r: f64,
}

impl HalfPlane {
    /// The alpha-beta constraint of one row: T = a − alpha·b + beta·c ≥ 0,
    /// i.e. b·alpha − c·beta ≤ a.
    pub fn row(a: f64, b: f64, c: f64) -> HalfPlane {
        HalfPlane { p: b, q: -c, r: a }
    }

    /// Violation measure of a homogeneous point and the magnitude of its terms.
    fn eval(&self, h: &[f64; 3]) -> (f64, f64) {
        let terms = [self.p * h[0], self.q * h[1], -self.r * h[2]];
        (
            terms[0] + terms[1] + terms[2],
            terms.iter().map(|t| t.abs()).sum(),
        )
    }

    fn inside(&self, h: &[f64; 3]) -> bool {
        let (s, mag) = self.eval(h);
        s <= TOL * mag
    }

    /// Whether the finite point (alpha, beta) satisfies the constraint (with [`TOL`]).
    pub fn contains(&self, alpha: f64, beta: f64) -> bool {
        self.inside(&[alpha, beta, 1.0])
    }
}

fn normalise(h: [f64; 3]) -> [f64; 3] {
    let n = (h[0] * h[0] + h[1] * h[1] + h[2] * h[2]).sqrt();
    if n == 0.0 || !n.is_finite() {
        return h;
    }
    [h[0] / n, h[1] / n, h[2] / n]
}

fn same(a: &[f64; 3], b: &[f64; 3]) -> bool {
    (a[0] - b[0]).abs() <= 1e-14 && (a[1] - b[1]).abs() <= 1e-14 && (a[2] - b[2]).abs() <= 1e-14
}

/// A convex polygon in homogeneous coordinates, counter-clockwise in the
/// (alpha, beta) plane; the working representation while clipping.
#[derive(Debug, Clone)]
pub struct Polygon {
    points: Vec<[f64; 3]>,
}

impl Polygon {
    /// The wedge {beta ≥ 0, alpha ≥ beta + margin}: apex (margin, 0) and the
    /// directions (1, 0) and (1, 1).
    pub fn wedge(margin: f64) -> Polygon {
        Polygon {
            points: vec![
                normalise([margin, 0.0, 1.0]),
                [1.0, 0.0, 0.0],
                normalise([1.0, 1.0, 0.0]),
            ],
        }
    }

    /// The rectangle [a0, a1] × [b0, b1].
    pub fn rectangle(a0: f64, a1: f64, b0: f64, b1: f64) -> Polygon {
        Polygon {
            points: [[a0, b0], [a1, b0], [a1, b1], [a0, b1]]
                .iter()
                .map(|p| normalise([p[0], p[1], 1.0]))
                .collect(),
        }
    }

    /// Keeps the part with p·alpha + q·beta ≤ r (Sutherland–Hodgman on the
    /// projective plane: an edge is the set of non-negative combinations of its
    /// end points).
    pub fn clip(&mut self, h: &HalfPlane) {
        let n = self.points.len();
        if n == 0 {
            return;
        }
        let scale = h.p.abs().max(h.q.abs()).max(h.r.abs());
        if scale == 0.0 {
            return; // 0 ≤ 0
        }
        let h = HalfPlane {
            p: h.p / scale,
            q: h.q / scale,
            r: h.r / scale,
        };
        let inside: Vec<bool> = self.points.iter().map(|x| h.inside(x)).collect();
        if inside.iter().all(|v| *v) {
            return;
        }
        let mut out: Vec<[f64; 3]> = Vec::with_capacity(n + 1);
        for i in 0..n {
            let j = (i + 1) % n;
            let (pi, pj) = (self.points[i], self.points[j]);
            if inside[i] {
                out.push(pi);
            }
            if inside[i] != inside[j] && n > 1 {
                let si = h.eval(&pi).0;
                let sj = h.eval(&pj).0;
                let d = sj - si;
                if d != 0.0 {
                    let (wi, wj) = (sj / d, -si / d);
                    let mut x = [
                        wi * pi[0] + wj * pj[0],
                        wi * pi[1] + wj * pj[1],
                        wi * pi[2] + wj * pj[2],
                    ];
                    x[2] = x[2].max(0.0);
                    out.push(normalise(x));
                }
            }
        }
        // Drop repeated points (a vertex on the line yields itself twice).
        let mut dedup: Vec<[f64; 3]> = Vec::with_capacity(out.len());
        for x in out {
            if dedup.last().is_none_or(|l| !same(l, &x)) {
                dedup.push(x);
            }
        }
        while dedup.len() > 1 && same(&dedup[0], dedup.last().unwrap()) {
            dedup.pop();
        }
        self.points = dedup;
    }

    /// Whether no finite point is left (points at infinity alone are no region).
    pub fn is_empty(&self) -> bool {
        !self.points.iter().any(|p| p[2] > 0.0)
    }

    /// The polygon as finite vertices and the directions of its unbounded edges.
    pub fn region(&self) -> Region {
        let n = self.points.len();
        let finite: Vec<bool> = self.points.iter().map(|p| p[2] > 0.0).collect();
        if !finite.iter().any(|f| *f) {
            return Region::default();
        }
        let to_point = |p: &[f64; 3]| (p[0] / p[2], p[1] / p[2]);
        let to_dir = |p: &[f64; 3]| {
            let n = (p[0] * p[0] + p[1] * p[1]).sqrt();
            (p[0] / n, p[1] / n)
        };
        if finite.iter().all(|f| *f) {
            return Region {
                vertices: self.points.iter().map(to_point).collect(),
                ray_first: None,
                ray_last: None,
            };
        }
        // Start at the first finite point after the (contiguous) run of points
        // at infinity.
        let start = (0..n)
            .find(|&i| finite[i] && !finite[(i + n - 1) % n])
            .expect("a finite point follows a point at infinity");
        let mut vertices = Vec::new();
        let mut i = start;
        while finite[i] {
            vertices.push(to_point(&self.points[i]));
            i = (i + 1) % n;
        }
        let ray_last = to_dir(&self.points[i]);
        let ray_first = to_dir(&self.points[(start + n - 1) % n]);
        Region {
            vertices,
            ray_first: Some(ray_first),
            ray_last: Some(ray_last),
        }
    }
}

/// A convex region of the (alpha, beta) plane: `vertices` counter-clockwise;
/// when unbounded, the edge before the first vertex comes from infinity along
/// `ray_first` (the region contains vertices[0] + t·ray_first, t ≥ 0) and the
/// edge after the last vertex leaves along `ray_last`. Empty: no vertices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Region {
    pub vertices: Vec<(f64, f64)>,
    pub ray_first: Option<(f64, f64)>,
    pub ray_last: Option<(f64, f64)>,
}

/// The pair minimising beta/(alpha − beta).
#[derive(Debug, Clone, PartialEq)]
pub struct BestRatio {
    pub alpha: f64,
    pub beta: f64,
    /// beta/(alpha − beta) at (alpha, beta), or its infimum when not attained.
    pub ratio: f64,
    /// False when the infimum is only approached along an unbounded edge from
    /// (alpha, beta) in direction `direction`.
    pub attained: bool,
    pub direction: Option<(f64, f64)>,
}

/// The infimum of a linear-fractional function over a region
/// ([`Region::min_fraction`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BestFraction {
    pub alpha: f64,
    pub beta: f64,
    /// The value at (alpha, beta), or the infimum when not attained.
    pub value: f64,
    /// False when the infimum is only approached along the unbounded edge from
    /// (alpha, beta) in direction `direction`.
    pub attained: bool,
    pub direction: Option<(f64, f64)>,
}

impl Region {
    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    pub fn is_bounded(&self) -> bool {
        self.ray_first.is_none()
    }

    /// "empty", "point", "segment", "bounded" or "unbounded".
    pub fn kind(&self) -> &'static str {
        match (self.vertices.len(), self.is_bounded()) {
            (0, _) => "empty",
            (_, false) => "unbounded",
            (1, true) => "point",
            (2, true) => "segment",
            _ => "bounded",
        }
    }

    /// The smallest alpha of the region and the range of beta there (the upper
    /// end is infinite when an unbounded edge goes straight up from it).
    pub fn min_alpha(&self) -> Option<(f64, f64, f64)> {
        let amin = self
            .vertices
            .iter()
            .map(|v| v.0)
            .min_by(|a, b| a.total_cmp(b))?;
        let tol = 1e-12 * amin.abs().max(1.0);
        let at: Vec<f64> = self
            .vertices
            .iter()
            .filter(|v| v.0 <= amin + tol)
            .map(|v| v.1)
            .collect();
        let lo = at.iter().cloned().fold(f64::INFINITY, f64::min);
        let mut hi = at.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        for (ray, v) in [
            (self.ray_first, self.vertices.first()),
            (self.ray_last, self.vertices.last()),
        ] {
            if let (Some(d), Some(v)) = (ray, v) {
                if v.0 <= amin + tol && d.0.abs() <= 1e-12 && d.1 > 0.0 {
                    hi = f64::INFINITY;
                }
            }
        }
        Some((amin, lo, hi))
    }

    /// The feasible pair minimising beta/(alpha − beta), i.e. beta/alpha (the
    /// level sets are lines through the origin, and the region lies in
    /// alpha > beta ≥ 0); among ties the one with the smallest alpha.
    pub fn best_ratio(&self) -> Option<BestRatio> {
        if self.is_empty() {
            return None;
        }
        let rho = |a: f64, b: f64| b / a;
        let mut best: Option<(f64, usize)> = None;
        for (i, v) in self.vertices.iter().enumerate() {
            let r = rho(v.0, v.1);
            let better = match best {
                None => true,
                Some((br, bi)) => {
                    r < br - 1e-12 * br.abs().max(1e-300)
                        || (r <= br + 1e-12 * br.abs() && v.0 < self.vertices[bi].0)
                }
            };
            if better {
                best = Some((r, i));
            }
        }
        let (rv, iv) = best.expect("non-empty");
        let mut out = BestRatio {
            alpha: self.vertices[iv].0,
            beta: self.vertices[iv].1,
            ratio: rv / (1.0 - rv),
            attained: true,
            direction: None,
        };
        for (ray, v) in [
            (self.ray_first, self.vertices.first()),
            (self.ray_last, self.vertices.last()),
        ] {
            if let (Some(d), Some(v)) = (ray, v) {
                if d.0 > 0.0 {
                    let rd = rho(d.0, d.1);
                    if rd < rv - 1e-12 * rv.abs().max(1e-300) {
                        out = BestRatio {
                            alpha: v.0,
                            beta: v.1,
                            ratio: rd / (1.0 - rd),
                            attained: false,
                            direction: Some(d),
                        };
                    }
                }
            }
        }
        Some(out)
    }

    /// The part of the region inside the half-plane `h`.
    pub fn clip(&self, h: &HalfPlane) -> Region {
        if self.is_empty() {
            return Region::default();
        }
        let mut p = self.polygon();
        p.clip(h);
        if p.is_empty() {
            Region::default()
        } else {
            p.region()
        }
    }

    /// The supremum of alpha − beta over the region (∞ when an unbounded edge
    /// widens the gap).
    pub fn max_gap(&self) -> Option<f64> {
        let v = self
            .vertices
            .iter()
            .map(|v| v.0 - v.1)
            .max_by(|a, b| a.total_cmp(b))?;
        let widens = [self.ray_first, self.ray_last]
            .iter()
            .flatten()
            .any(|d| d.0 - d.1 > 1e-12);
        Some(if widens { f64::INFINITY } else { v })
    }

    /// The infimum over the region of the linear-fractional function
    /// (n0 + n1·alpha + n2·beta) / (d0 + d1·alpha + d2·beta), whose denominator
    /// must be positive on the region. On every edge such a function is
    /// monotone, so the infimum is at a vertex or approached at the far end of
    /// an unbounded edge (the limit along its direction d is
    /// (n1·d.0 + n2·d.1)/(d1·d.0 + d2·d.1)); among ties the vertex with the
    /// smallest alpha. `best_ratio` is the case n = (0, 0, 1), d = (0, 1, −1).
    pub fn min_fraction(&self, n: [f64; 3], d: [f64; 3]) -> Option<BestFraction> {
        let value = |a: f64, b: f64| (n[0] + n[1] * a + n[2] * b) / (d[0] + d[1] * a + d[2] * b);
        let mut best: Option<BestFraction> = None;
        for v in &self.vertices {
            let f = value(v.0, v.1);
            let better = best.as_ref().is_none_or(|b| {
                f < b.value - 1e-12 * b.value.abs()
                    || (f <= b.value + 1e-12 * b.value.abs() && v.0 < b.alpha)
            });
            if better {
                best = Some(BestFraction {
                    alpha: v.0,
                    beta: v.1,
                    value: f,
                    attained: true,
                    direction: None,
                });
            }
        }
        let mut best = best?;
        for (ray, v) in [
            (self.ray_first, self.vertices.first()),
            (self.ray_last, self.vertices.last()),
        ] {
            if let (Some(dir), Some(v)) = (ray, v) {
                let nd = n[1] * dir.0 + n[2] * dir.1;
                let dd = d[1] * dir.0 + d[2] * dir.1;
                let limit = if dd > 1e-12 * (d[1].abs() + d[2].abs()) {
                    nd / dd
                } else if nd < 0.0 {
                    f64::NEG_INFINITY
                } else {
                    continue; // constant or growing along the edge
                };
                if limit < best.value - 1e-12 * best.value.abs() {
                    best = BestFraction {
                        alpha: v.0,
                        beta: v.1,
                        value: limit,
                        attained: false,
                        direction: Some(dir),
                    };
                }
            }
        }
        Some(best)
    }

    /// Back to homogeneous points (for clipping the region to a picture frame).
    pub fn polygon(&self) -> Polygon {
        let mut points = Vec::new();
        if let Some(d) = self.ray_first {
            points.push([d.0, d.1, 0.0]);
        }
        points.extend(self.vertices.iter().map(|v| normalise([v.0, v.1, 1.0])));
        if let Some(d) = self.ray_last {
            points.push([d.0, d.1, 0.0]);
        }
        Polygon { points }
    }

    /// The finite polygon of the region cut by the half-planes (empty when
    /// nothing is left), counter-clockwise.
    pub fn clipped_by(&self, planes: &[HalfPlane]) -> Vec<(f64, f64)> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut p = self.polygon();
        for h in planes {
            p.clip(h);
        }
        p.region().vertices
    }
}

/// The intersection of the wedge {beta ≥ 0, alpha ≥ beta + margin} with the
/// half-planes.
pub fn intersect(margin: f64, constraints: &[HalfPlane]) -> Region {
    let mut poly = Polygon::wedge(margin);
    for h in constraints {
        poly.clip(h);
        if poly.is_empty() {
            return Region::default();
        }
    }
    poly.region()
}

/// Where the region is empty: the pair (alpha, beta) of the wedge at which the
/// worst row is least violated, and that smallest worst violation t* > 0 (the
/// minimum slack there is −t*). Found by bisection on t: the region of
/// {T_j ≥ −t} is non-empty exactly for t ≥ t*.
pub fn least_violation(margin: f64, constraints: &[HalfPlane]) -> (f64, f64, f64) {
    let relaxed = |t: f64| -> Vec<HalfPlane> {
        constraints
            .iter()
            .map(|h| HalfPlane {
                p: h.p,
                q: h.q,
                r: h.r + t,
            })
            .collect()
    };
    // At the apex (margin, 0) every row holds with t = max_j(p_j·margin − r_j).
    let mut hi = constraints
        .iter()
        .map(|h| h.p * margin - h.r)
        .fold(0.0f64, f64::max);
    let mut lo = 0.0f64;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if intersect(margin, &relaxed(mid)).is_empty() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let region = intersect(margin, &relaxed(hi));
    let n = region.vertices.len().max(1) as f64;
    let (sa, sb) = region
        .vertices
        .iter()
        .fold((0.0, 0.0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
    if region.vertices.is_empty() {
        return (margin, 0.0, hi);
    }
    (sa / n, sb / n, hi)
}

/// The smallest alpha with alpha − beta = `gap` that satisfies every row
/// (beta ≥ 0 included), and the index of the binding row; None when no alpha
/// works. On that line T = (a − gap·b) + beta·(c − b) is affine in beta.
pub fn smallest_on_gap_line(rows: &[(f64, f64, f64)], gap: f64) -> Option<(f64, Option<usize>)> {
    let mut lo = 0.0f64; // beta ≥ 0
    let mut binding = None;
    let mut hi = f64::INFINITY;
    for (i, &(a, b, c)) in rows.iter().enumerate() {
        let offset = a - gap * b;
        let slope = c - b;
        if slope > 0.0 {
            let bound = -offset / slope;
            if bound > lo {
                lo = bound;
                binding = Some(i);
            }
        } else if slope < 0.0 {
            hi = hi.min(offset / -slope);
        } else if offset < -TOL * (a.abs() + (gap * b).abs()) {
            return None;
        }
    }
    (lo <= hi * (1.0 + TOL) + TOL).then_some((lo + gap, binding))
}

#[cfg(test)]
#[path = "region_tests.rs"]
mod tests;

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

    /// The region within [a0, a1] × [b0, b1] as a closed list of finite points.
    pub fn clipped_to(&self, a0: f64, a1: f64, b0: f64, b1: f64) -> Vec<(f64, f64)> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut p = self.polygon();
        for h in [
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
            HalfPlane {
                p: 0.0,
                q: -1.0,
                r: -b0,
            },
            HalfPlane {
                p: 0.0,
                q: 1.0,
                r: b1,
            },
        ] {
            p.clip(&h);
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
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() <= 1e-9 * b.0.abs().max(1.0)
            && (a.1 - b.1).abs() <= 1e-9 * b.1.abs().max(1.0)
    }

    fn assert_vertices(r: &Region, want: &[(f64, f64)]) {
        assert_eq!(r.vertices.len(), want.len(), "{r:?} vs {want:?}");
        // Same cyclic sequence, any starting point.
        let n = want.len();
        let ok = (0..n).any(|s| (0..n).all(|i| close(r.vertices[(s + i) % n], want[i])));
        assert!(ok, "{r:?} vs {want:?}");
    }

    /// Box constraints alpha ≤ A, beta ≥ B as rows.
    fn alpha_le(a: f64) -> HalfPlane {
        HalfPlane {
            p: 1.0,
            q: 0.0,
            r: a,
        }
    }
    fn beta_ge(b: f64) -> HalfPlane {
        HalfPlane {
            p: 0.0,
            q: -1.0,
            r: -b,
        }
    }
    fn beta_le(b: f64) -> HalfPlane {
        HalfPlane {
            p: 0.0,
            q: 1.0,
            r: b,
        }
    }

    #[test]
    fn wedge_alone_is_unbounded_with_its_two_directions() {
        let r = intersect(0.1, &[]);
        assert_eq!(r.kind(), "unbounded");
        assert_vertices(&r, &[(0.1, 0.0)]);
        // Counter-clockwise: arrives along the alpha = beta + 0.1 line from
        // infinity, leaves along beta = 0.
        let f = r.ray_first.unwrap();
        let l = r.ray_last.unwrap();
        assert!(close(f, (0.5f64.sqrt(), 0.5f64.sqrt())), "{f:?}");
        assert!(close(l, (1.0, 0.0)), "{l:?}");
        assert_eq!(r.min_alpha(), Some((0.1, 0.0, 0.0)));
        let b = r.best_ratio().unwrap();
        assert!(b.attained && b.ratio == 0.0 && b.alpha == 0.1);
    }

    #[test]
    fn bounded_triangle_and_quadrilateral() {
        // alpha ≤ 3 cuts the wedge into the triangle (0.1,0), (3,0), (3,2.9).
        let r = intersect(0.1, &[alpha_le(3.0)]);
        assert_eq!(r.kind(), "bounded");
        assert_vertices(&r, &[(0.1, 0.0), (3.0, 0.0), (3.0, 2.9)]);
        // and beta ≥ 1: (1.1,1), (3,1), (3,2.9).
        let r = intersect(0.1, &[alpha_le(3.0), beta_ge(1.0)]);
        assert_vertices(&r, &[(1.1, 1.0), (3.0, 1.0), (3.0, 2.9)]);
        assert_eq!(r.min_alpha(), Some((1.1, 1.0, 1.0)));
        // beta ∈ [1, 2]: quadrilateral.
        let r = intersect(0.1, &[alpha_le(3.0), beta_ge(1.0), beta_le(2.0)]);
        assert_vertices(&r, &[(1.1, 1.0), (3.0, 1.0), (3.0, 2.0), (2.1, 2.0)]);
        let b = r.best_ratio().unwrap();
        assert!(b.attained && close((b.alpha, b.beta), (3.0, 1.0)), "{b:?}");
        assert!((b.ratio - 0.5).abs() < 1e-12);
    }

    #[test]
    fn unbounded_region_from_rows() {
        // Row a=1, b=1, c=2: alpha − 2 beta ≤ 1, i.e. beta ≥ (alpha − 1)/2.
        let rows = [HalfPlane::row(1.0, 1.0, 2.0)];
        let r = intersect(0.1, &rows);
        assert_eq!(r.kind(), "unbounded");
        // Vertices: apex (0.1, 0), (1, 0) where the row meets beta = 0.
        assert_vertices(&r, &[(0.1, 0.0), (1.0, 0.0)]);
        let l = r.ray_last.unwrap();
        let s = 5f64.sqrt();
        assert!(close(l, (2.0 / s, 1.0 / s)), "{l:?}");
        // Infimum of beta/alpha: along the ray, 1/2 → ratio 1, but the vertex
        // (1, 0) has ratio 0.
        let b = r.best_ratio().unwrap();
        assert!(b.attained && b.ratio == 0.0);
        // With beta ≥ 1 too: vertices (1.1, 1), (3, 1); along the ray (2, 1)
        // beta/alpha rises from 1/3 to 1/2, so the vertex (3, 1) is best: ratio 1/2.
        let r = intersect(0.1, &[rows[0], beta_ge(1.0)]);
        let b = r.best_ratio().unwrap();
        assert!(b.attained && close((b.alpha, b.beta), (3.0, 1.0)), "{b:?}");
        assert!((b.ratio - 0.5).abs() < 1e-12, "{b:?}");
        // beta ≥ 1 alone: beta/alpha → 0 along beta = 1, never attained.
        let r = intersect(0.1, &[beta_ge(1.0)]);
        let b = r.best_ratio().unwrap();
        assert!(!b.attained && b.ratio == 0.0, "{b:?}");
        assert!(close((b.alpha, b.beta), (1.1, 1.0)), "{b:?}");
        assert_eq!(b.direction, Some((1.0, 0.0)));
    }

    #[test]
    fn empty_point_and_segment() {
        // alpha ≤ 0.05 is below the apex: empty.
        assert_eq!(intersect(0.1, &[alpha_le(0.05)]).kind(), "empty");
        // alpha ≤ 0.1 leaves exactly the apex.
        let r = intersect(0.1, &[alpha_le(0.1)]);
        assert_eq!(r.kind(), "point");
        assert_vertices(&r, &[(0.1, 0.0)]);
        // beta ≤ 0 and alpha ≤ 2: the segment [0.1, 2] × {0}.
        let r = intersect(0.1, &[beta_le(0.0), alpha_le(2.0)]);
        assert_eq!(r.kind(), "segment");
        assert_vertices(&r, &[(0.1, 0.0), (2.0, 0.0)]);
        // A row with b = c = 0 and a < 0 holds nowhere.
        assert_eq!(
            intersect(0.1, &[HalfPlane::row(-1.0, 0.0, 0.0)]).kind(),
            "empty"
        );
        assert_eq!(
            intersect(0.1, &[HalfPlane::row(1.0, 0.0, 0.0)]).kind(),
            "unbounded"
        );
    }

    #[test]
    fn parallel_and_near_parallel_edges() {
        // beta ≥ 1 twice, and beta ≥ 1 + 1e-15: same region as once.
        let r = intersect(
            0.1,
            &[
                beta_ge(1.0),
                beta_ge(1.0),
                beta_ge(1.0 + 1e-15),
                alpha_le(4.0),
            ],
        );
        assert_vertices(&r, &[(1.1, 1.0), (4.0, 1.0), (4.0, 3.9)]);
        // Parallel opposite half-planes beta ≥ 2, beta ≤ 1: empty.
        assert!(intersect(0.1, &[beta_ge(2.0), beta_le(1.0)]).is_empty());
        // beta ≥ 1, beta ≤ 1: the ray along beta = 1 from (1.1, 1).
        let r = intersect(0.1, &[beta_ge(1.0), beta_le(1.0)]);
        assert_eq!(r.kind(), "unbounded");
        assert!(close(r.vertices[0], (1.1, 1.0)));
        // A row nearly parallel to the wedge edge alpha = beta + 0.1:
        // alpha − (1 + 1e-9) beta ≤ 0.1 meets beta = 0 at 0.1 and cuts away
        // nothing else of the edge except far away: vertices stay finite.
        let r = intersect(
            0.1,
            &[HalfPlane {
                p: 1.0,
                q: -(1.0 + 1e-9),
                r: 0.1,
            }],
        );
        assert_eq!(r.kind(), "unbounded");
        assert!(r
            .vertices
            .iter()
            .all(|v| v.0.is_finite() && v.1.is_finite()));
    }

    #[test]
    fn linear_fractional_minimum() {
        // The SGD bound's shape: (c + 2s·beta)/(alpha − beta) over the wedge
        // cut by alpha − beta ≥ g and alpha ≤ 4: vertices (g, 0), (4, 0),
        // (4, 4 − g); the minimum c/(4) at (4, 0).
        let (c, s, g) = (1.0, 0.5, 0.5);
        let r = intersect(0.1, &[alpha_le(4.0)]).clip(&HalfPlane {
            p: -1.0,
            q: 1.0,
            r: -g,
        });
        assert_vertices(&r, &[(0.5, 0.0), (4.0, 0.0), (4.0, 3.5)]);
        assert!((r.max_gap().unwrap() - 4.0).abs() < 1e-12);
        let b = r.min_fraction([c, 0.0, 2.0 * s], [0.0, 1.0, -1.0]).unwrap();
        assert!(b.attained && close((b.alpha, b.beta), (4.0, 0.0)), "{b:?}");
        assert!((b.value - 0.25).abs() < 1e-15, "{b:?}");
        // Unbounded with beta ≥ 1: along beta = 1 the value (c + 2s)/(alpha − 1)
        // falls to 0, approached, not attained.
        let r = intersect(0.1, &[beta_ge(1.0)]);
        assert_eq!(r.max_gap(), Some(f64::INFINITY));
        let b = r.min_fraction([c, 0.0, 2.0 * s], [0.0, 1.0, -1.0]).unwrap();
        assert!(
            !b.attained && b.value == 0.0 && b.direction == Some((1.0, 0.0)),
            "{b:?}"
        );
        // Only the diagonal direction (1, 1) is unbounded: alpha ≤ beta + 2
        // with beta ≥ 1; along it the value grows, so a vertex is best:
        // (1.1, 1): 2/0.1 = 20, (3, 1): 2/2 = 1.
        let r = intersect(
            0.1,
            &[
                beta_ge(1.0),
                HalfPlane {
                    p: 1.0,
                    q: -1.0,
                    r: 2.0,
                },
            ],
        );
        let b = r.min_fraction([c, 0.0, 2.0 * s], [0.0, 1.0, -1.0]).unwrap();
        assert!(b.attained && close((b.alpha, b.beta), (3.0, 1.0)), "{b:?}");
        assert!((b.value - 1.0).abs() < 1e-12);
        // beta/(alpha − beta) agrees with best_ratio on these regions.
        for r in [intersect(0.1, &[beta_ge(1.0), alpha_le(5.0)]), r] {
            let f = r.min_fraction([0.0, 0.0, 1.0], [0.0, 1.0, -1.0]).unwrap();
            let b = r.best_ratio().unwrap();
            assert!((f.value - b.ratio).abs() < 1e-12 && f.attained == b.attained);
            assert!(close((f.alpha, f.beta), (b.alpha, b.beta)));
        }
    }

    #[test]
    fn least_violation_of_an_empty_region() {
        // beta ≥ 2 and beta ≤ 1 conflict; the least worst violation is 0.5 at beta = 1.5.
        let (a, b, t) = least_violation(0.1, &[beta_ge(2.0), beta_le(1.0)]);
        assert!((t - 0.5).abs() < 1e-9, "{t}");
        assert!((b - 1.5).abs() < 1e-6, "{a} {b}");
        assert!(a >= b + 0.1 - 1e-9);
    }

    #[test]
    fn gap_line_is_exact() {
        // Row a = 0.1, b = 0.5, c = 1 (loss_k = 1, loss_ref = 0.5, f* = 0):
        // T = 0.1 − alpha·0.5 + beta = (0.1 − 0.5) + 0.5·beta on alpha − beta = 1 → beta ≥ 0.8.
        let rows = [(0.1, 0.5, 1.0), (2.0, 0.1, 1.0)];
        let (a, i) = smallest_on_gap_line(&rows, 1.0).unwrap();
        assert!((a - 1.8).abs() < 1e-12, "{a}");
        assert_eq!(i, Some(0));
        // loss_ref = f* (b = c) and inner < gap·b: nothing works.
        assert!(smallest_on_gap_line(&[(0.5, 1.0, 1.0)], 1.0).is_none());
    }

    /// Deterministic pseudo-random numbers for the fuzz test.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
        }
    }

    /// Fuzz: random rows shaped like probe rows; every grid point the brute-force
    /// slack check finds feasible lies in the polygon and every infeasible one
    /// lies outside (points within 1e-9 of a boundary are skipped).
    #[test]
    fn fuzz_against_brute_force_grid() {
        let mut rng = Lcg(7);
        let mut checked = 0usize;
        let mut kinds = std::collections::BTreeMap::new();
        for case in 0..300 {
            let n = 1 + (rng.next() * 12.0) as usize;
            let margin = if case % 3 == 0 { 0.1 } else { rng.next() };
            let rows: Vec<(f64, f64, f64)> = (0..n)
                .map(|_| {
                    let loss_k = rng.next() * 2.0;
                    let loss_ref = rng.next() * 0.5;
                    // f* = 0, f* below loss_ref, or f* = loss_ref (the minimum
                    // observed), which can bound or empty the region.
                    let f_star = match case % 3 {
                        0 => 0.0,
                        1 => loss_ref * rng.next(),
                        _ => loss_ref,
                    };
                    let a = (rng.next() - 0.3) * 3.0;
                    if case % 5 == 4 {
                        // Arbitrary signs: bounded polygons too.
                        return (a, rng.next() * 2.0 - 1.0, rng.next() * 2.0 - 1.0);
                    }
                    (a, loss_k - loss_ref, loss_k - f_star)
                })
                .collect();
            let hp: Vec<HalfPlane> = rows
                .iter()
                .map(|&(a, b, c)| HalfPlane::row(a, b, c))
                .collect();
            let region = intersect(margin, &hp);
            *kinds.entry(region.kind()).or_insert(0) += 1;
            let poly = region.polygon();
            for i in 0..=40 {
                for j in 0..=40 {
                    let alpha = i as f64 * 0.25;
                    let beta = j as f64 * 0.25;
                    let slacks: Vec<f64> = rows
                        .iter()
                        .map(|&(a, b, c)| a - alpha * b + beta * c)
                        .chain([beta, alpha - beta - margin])
                        .collect();
                    let min = slacks.iter().cloned().fold(f64::INFINITY, f64::min);
                    if min.abs() < 1e-9 {
                        continue;
                    }
                    let inside = contains(&poly, alpha, beta);
                    assert_eq!(
                        inside,
                        min > 0.0,
                        "case {case}: ({alpha}, {beta}) min slack {min}, region {region:?}"
                    );
                    checked += 1;
                }
            }
            // Every reported vertex satisfies every constraint.
            for v in &region.vertices {
                for &(a, b, c) in &rows {
                    let t = a - v.0 * b + v.1 * c;
                    assert!(
                        t >= -1e-9 * (a.abs() + (v.0 * b).abs() + (v.1 * c).abs()).max(1.0),
                        "case {case}: vertex {v:?} T {t}"
                    );
                }
                assert!(v.1 >= -1e-12 && v.0 - v.1 >= margin - 1e-9);
            }
        }
        assert!(checked > 100_000, "{checked}");
        assert!(kinds.len() >= 3, "{kinds:?}");
    }

    /// Example 1 of the paper (docs/theory.md, Known-answer problems):
    /// f_1 = s²/(s²+1), f_2 = (s+1)²/((s+1)²+1),
    /// s = x + y, S = {s = −1/2} with f_i = 1/5 there, f_i* = 0. Rows at
    /// s ∈ [−100, 100]: x − x_p = ((s + 1/2)/2)(1, 1) and ∇f_i = f_i'(s)(1, 1),
    /// so inner = f_i'(s)(s + 1/2). (2.5, 2.0) holds, (2.5, 1.9) fails, and
    /// beta ≥ 0.8·alpha is necessary (rows with s → ∞ tend to 0.8·alpha − beta ≤ 0).
    #[test]
    fn known_answer_example_1() {
        let mut rows = Vec::new();
        for k in 0..=20_000 {
            let s = -100.0 + 200.0 * k as f64 / 20_000.0;
            for shift in [0.0, 1.0] {
                let u: f64 = s + shift;
                let f = u * u / (u * u + 1.0);
                let fp = 2.0 * u / (u * u + 1.0).powi(2);
                rows.push(HalfPlane::row(fp * (s + 0.5), f - 0.2, f));
            }
        }
        let r = intersect(0.1, &rows);
        assert_eq!(r.kind(), "unbounded");
        let holds = |a: f64, b: f64| rows.iter().all(|h| h.contains(a, b));
        assert!(holds(2.5, 2.0));
        assert!(!holds(2.5, 1.9));
        for v in &r.vertices {
            assert!(
                v.1 >= 0.8 * v.0 - 0.03,
                "vertex {v:?} below beta = 0.8 alpha"
            );
        }
        // Recession directions satisfy b·d_alpha ≤ c·d_beta for every row: slope
        // ≥ max (f − 0.2)/f = 1 − 0.2/f(100) = 0.8 − 2e-5 on this sample.
        for d in [r.ray_first, r.ray_last].into_iter().flatten() {
            assert!(d.1 / d.0 >= 0.8 - 3e-5, "ray {d:?} leaves beta ≥ 0.8 alpha");
        }
    }

    /// Example 6 (docs/theory.md, Known-answer problems): f_1 = r²/(1+r²)
    /// centred at 0, f_2 the same at
    /// (1, 1); S = {(t, t): t = 0.159375, 0.840625}, min_i f_i on S = 0.0483448.
    /// beta = alpha − 1 holds from alpha = 2/c ≈ 41.37 on (the paper's bound);
    /// beta = 0 fails for every alpha. On the grid [−3, 4]² (281² points, x_p
    /// the nearer minimiser) numpy gives the smallest alpha on beta = alpha − 1
    /// as 18.36899 (tests: same rows rebuilt here).
    #[test]
    fn known_answer_example_6() {
        let t = [0.159375, 0.840625];
        let f = |x: f64, y: f64, cx: f64, cy: f64| {
            let (dx, dy) = (x - cx, y - cy);
            let r2 = dx * dx + dy * dy;
            let g = 2.0 / (1.0 + r2).powi(2);
            (r2 / (1.0 + r2), g * dx, g * dy)
        };
        let mut abc = Vec::new();
        for i in 0..281 {
            for j in 0..281 {
                let x = -3.0 + 7.0 * j as f64 / 280.0;
                let y = -3.0 + 7.0 * i as f64 / 280.0;
                let d0 = (x - t[0]).powi(2) + (y - t[0]).powi(2);
                let d1 = (x - t[1]).powi(2) + (y - t[1]).powi(2);
                let p = if d0 <= d1 { t[0] } else { t[1] };
                for c in [0.0, 1.0] {
                    let (fx, gx, gy) = f(x, y, c, c);
                    let (fp, _, _) = f(p, p, c, c);
                    abc.push((gx * (x - p) + gy * (y - p), fx - fp, fx));
                }
            }
        }
        let (alpha, _) = smallest_on_gap_line(&abc, 1.0).unwrap();
        assert!((alpha - 18.36899).abs() < 1e-4, "{alpha}");
        assert!(alpha <= 2.0 / 0.0483448);
        let rows: Vec<HalfPlane> = abc
            .iter()
            .map(|&(a, b, c)| HalfPlane::row(a, b, c))
            .collect();
        let r = intersect(0.1, &rows);
        assert!(!r.is_empty());
        // beta = 0 fails: nothing of the region lies on beta ≤ 0.
        let mut with_zero = rows.clone();
        with_zero.push(HalfPlane {
            p: 0.0,
            q: 1.0,
            r: 0.0,
        });
        assert!(intersect(0.1, &with_zero).is_empty());
        // The region's intersection with beta = alpha − 1 starts at `alpha`.
        let mut on_line = rows.clone();
        on_line.push(HalfPlane {
            p: 1.0,
            q: -1.0,
            r: 1.0,
        });
        on_line.push(HalfPlane {
            p: -1.0,
            q: 1.0,
            r: -1.0,
        });
        let seg = intersect(0.1, &on_line);
        let lo = seg
            .vertices
            .iter()
            .map(|v| v.0)
            .fold(f64::INFINITY, f64::min);
        assert!((lo - alpha).abs() < 1e-6 * alpha, "{lo} vs {alpha}");
    }

    /// Point-in-polygon from the polygon itself (orientation of every edge),
    /// independent of the constraints that built it.
    fn contains(poly: &Polygon, alpha: f64, beta: f64) -> bool {
        let pts = &poly.points;
        if pts.len() < 3 {
            return false; // degenerate regions have no interior points
        }
        let x = [alpha, beta, 1.0];
        (0..pts.len()).all(|i| {
            let p = pts[i];
            let q = pts[(i + 1) % pts.len()];
            let det = p[0] * (q[1] * x[2] - q[2] * x[1]) - p[1] * (q[0] * x[2] - q[2] * x[0])
                + p[2] * (q[0] * x[1] - q[1] * x[0]);
            det >= 0.0
        })
    }
}

//! Tests of the exact region (region.rs): polygons, rays, landmarks and
//! least violation against closed forms and brute force.
use super::*;

fn close(a: (f64, f64), b: (f64, f64)) -> bool {
    (a.0 - b.0).abs() <= 1e-9 * b.0.abs().max(1.0) && (a.1 - b.1).abs() <= 1e-9 * b.1.abs().max(1.0)
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

//! The minimiser set S of a known-answer problem, and Proj(x, S).
//!
//! Two cases are exact reductions to one dimension (every φ_i is increasing):
//! - ridge components sharing one normal a: f depends on x only through
//!   L = aᵀx, so S = {x: aᵀx ∈ argmin h} with h(L) = (1/n) Σ φ_i((L + b_i)²);
//!   h' > 0 for L > −min b_i and h' < 0 for L < −max b_i, so argmin h lies in
//!   [−max b_i, −min b_i];
//! - two radial components: projecting x onto the segment [c_0, c_1] (a convex
//!   set holding both centres) shortens both distances, strictly unless x is
//!   on it, so S lies on the segment: x(t) = c_0 + t(c_1 − c_0), t in [0, 1].
//!
//! The 1-D problem is solved in f64: the derivative is evaluated on a grid of
//! 2·10^5 intervals, every − → + sign change is bisected to the last bit, the
//! endpoints are candidates when the derivative points out of the interval,
//! and S keeps every candidate whose value is within 1e-12 (relative) of the
//! smallest — so symmetric problems (Examples 2 and 6) get both minimisers.
//! tests/check_known.py certifies S independently (gradient ≈ 0, Hessian PSD,
//! global optimality on a grid with multistart refinement).

use super::component::{Component, Shape};
use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Minimisers {
    /// Finitely many points, in increasing order of t along [c_0, c_1].
    Points(Vec<Vec<f64>>),
    /// The hyperplanes {x: aᵀx = L} for each level L (increasing).
    Hyperplanes { normal: Vec<f64>, levels: Vec<f64> },
}

/// Relative tolerance under which two minima (or two distances) are a tie.
const TIE: f64 = 1e-12;

impl Minimisers {
    pub fn compute(components: &[Component]) -> Result<Minimisers> {
        let ridge: Option<Vec<(&Vec<f64>, f64)>> = components
            .iter()
            .map(|c| match &c.shape {
                Shape::Ridge { normal, shift } => Some((normal, *shift)),
                _ => None,
            })
            .collect();
        if let Some(r) = ridge {
            let normal = r[0].0.clone();
            if r.iter().any(|(n, _)| **n != normal) {
                bail!("S is only known for ridge components that share one normal");
            }
            let lo = -r.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
            let hi = -r.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            let n = components.len() as f64;
            let h = |l: f64| {
                components
                    .iter()
                    .zip(&r)
                    .map(|(c, (_, b))| c.profile.value((l + b) * (l + b)))
                    .sum::<f64>()
                    / n
            };
            let dh = |l: f64| {
                components
                    .iter()
                    .zip(&r)
                    .map(|(c, (_, b))| c.profile.slope((l + b) * (l + b)) * 2.0 * (l + b))
                    .sum::<f64>()
                    / n
            };
            let levels = minimise_1d(lo, hi, h, dh);
            return Ok(Minimisers::Hyperplanes { normal, levels });
        }
        if let [a, b] = components {
            if let (Shape::Radial { centre: c0 }, Shape::Radial { centre: c1 }) =
                (&a.shape, &b.shape)
            {
                let dsq: f64 = c0.iter().zip(c1).map(|(p, q)| (q - p) * (q - p)).sum();
                let f = |t: f64| {
                    0.5 * (a.profile.value(t * t * dsq)
                        + b.profile.value((1.0 - t) * (1.0 - t) * dsq))
                };
                let df = |t: f64| {
                    a.profile.slope(t * t * dsq) * t * dsq
                        - b.profile.slope((1.0 - t) * (1.0 - t) * dsq) * (1.0 - t) * dsq
                };
                let ts = minimise_1d(0.0, 1.0, f, df);
                let points = ts
                    .iter()
                    .map(|t| c0.iter().zip(c1).map(|(p, q)| p + t * (q - p)).collect())
                    .collect();
                return Ok(Minimisers::Points(points));
            }
        }
        bail!("S is known only for ridge components with one normal or two radial components")
    }

    /// Proj(x, S): the nearest point of S. When two parts of S are equally
    /// near (within a relative 1e-12) the first is taken: the point with the
    /// smaller t along [c_0, c_1], or the hyperplane with the smaller level.
    pub fn project(&self, x: &[f64]) -> Vec<f64> {
        let candidates: Vec<Vec<f64>> = match self {
            Minimisers::Points(p) => p.clone(),
            Minimisers::Hyperplanes { normal, levels } => {
                let nn: f64 = normal.iter().map(|a| a * a).sum();
                let ax: f64 = x.iter().zip(normal).map(|(v, a)| v * a).sum();
                levels
                    .iter()
                    .map(|l| {
                        let k = (ax - l) / nn;
                        x.iter().zip(normal).map(|(v, a)| v - k * a).collect()
                    })
                    .collect()
            }
        };
        let dist = |p: &Vec<f64>| -> f64 {
            p.iter()
                .zip(x)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt()
        };
        let mut best = 0;
        for j in 1..candidates.len() {
            let (dj, db) = (dist(&candidates[j]), dist(&candidates[best]));
            if dj < db - TIE * db.max(dj) {
                best = j;
            }
        }
        candidates[best].clone()
    }

    /// One line for metadata and logs.
    pub fn describe(&self) -> String {
        let v = |p: &[f64]| {
            format!(
                "({})",
                p.iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match self {
            Minimisers::Points(p) => format!(
                "points {}",
                p.iter().map(|q| v(q)).collect::<Vec<_>>().join(" ")
            ),
            Minimisers::Hyperplanes { normal, levels } => format!(
                "hyperplanes a·x = L, a = {}, L in [{}]",
                v(normal),
                levels
                    .iter()
                    .map(|l| format!("{l:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The global minimisers of `f` on [lo, hi] (see the module doc), increasing.
fn minimise_1d(lo: f64, hi: f64, f: impl Fn(f64) -> f64, df: impl Fn(f64) -> f64) -> Vec<f64> {
    if hi <= lo {
        return vec![lo];
    }
    const N: usize = 200_000;
    let at = |j: usize| lo + (hi - lo) * j as f64 / N as f64;
    let mut cands = Vec::new();
    if df(lo) >= 0.0 {
        cands.push(lo);
    }
    if df(hi) <= 0.0 {
        cands.push(hi);
    }
    let mut prev = df(lo);
    for j in 1..=N {
        let t = at(j);
        let d = df(t);
        if prev < 0.0 && d >= 0.0 {
            let (mut a, mut b) = (at(j - 1), t);
            for _ in 0..200 {
                let m = 0.5 * (a + b);
                if m <= a || m >= b {
                    break;
                }
                if df(m) < 0.0 {
                    a = m;
                } else {
                    b = m;
                }
            }
            cands.push(if f(a) <= f(b) { a } else { b });
        }
        prev = d;
    }
    let best = cands.iter().map(|&t| f(t)).fold(f64::INFINITY, f64::min);
    let mut s: Vec<f64> = cands
        .into_iter()
        .filter(|&t| f(t) <= best + TIE * best.abs().max(1e-300))
        .collect();
    s.sort_by(f64::total_cmp);
    s.dedup();
    s
}

#[cfg(test)]
mod tests {
    use super::super::component::{radial, Profile, G};
    use super::*;

    #[test]
    fn example6_points_and_projection_ties() {
        let c = [radial(&[0.0, 0.0], G), radial(&[1.0, 1.0], G)];
        let Minimisers::Points(p) = Minimisers::compute(&c).unwrap() else {
            panic!()
        };
        assert_eq!(p.len(), 2);
        assert!((p[0][0] - 0.159375).abs() < 1e-6 && (p[1][0] - 0.840625).abs() < 1e-6);
        assert!((p[0][0] + p[1][0] - 1.0).abs() < 1e-12, "symmetric: {p:?}");
        let s = Minimisers::Points(p.clone());
        assert_eq!(s.project(&[0.5, 0.5]), p[0], "a tie takes the first");
        assert_eq!(s.project(&[0.9, 0.2]), p[1]);
        assert_eq!(s.project(&[-3.0, 0.4]), p[0]);
    }

    #[test]
    fn example1_line_and_closed_form_projection() {
        let comps: Vec<Component> = (0..2)
            .map(|i| Component {
                shape: Shape::Ridge {
                    normal: vec![1.0, 1.0],
                    shift: i as f64,
                },
                profile: G,
            })
            .collect();
        let s = Minimisers::compute(&comps).unwrap();
        let Minimisers::Hyperplanes { levels, .. } = &s else {
            panic!()
        };
        assert_eq!(levels.len(), 1);
        assert!((levels[0] + 0.5).abs() < 1e-13, "{levels:?}");
        let p = s.project(&[2.0, 0.5]);
        assert!(
            (p[0] - 0.5).abs() < 1e-12 && (p[1] + 1.0).abs() < 1e-12,
            "{p:?}"
        );
    }

    #[test]
    fn unknown_shapes_are_refused() {
        let c = [
            radial(&[0.0], G),
            radial(&[1.0], G),
            radial(&[2.0], Profile::Gaussian),
        ];
        assert!(Minimisers::compute(&c).is_err());
    }
}

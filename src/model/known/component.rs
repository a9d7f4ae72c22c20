//! The components f_i(x) = φ(u(x)) of the known-answer problems, evaluated
//! in f64 (the model's tensors follow the same formulas).

/// φ: how a component turns u into a loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// (p + u)/(q + u), 0 ≤ p < q.
    Rational { p: f64, q: f64 },
    /// 1 − exp(−u).
    Gaussian,
}

impl Profile {
    pub fn value(self, u: f64) -> f64 {
        match self {
            Profile::Rational { p, q } => (p + u) / (q + u),
            Profile::Gaussian => -(-u).exp_m1(),
        }
    }
    /// dφ/du.
    pub fn slope(self, u: f64) -> f64 {
        match self {
            Profile::Rational { p, q } => (q - p) / ((q + u) * (q + u)),
            Profile::Gaussian => (-u).exp(),
        }
    }
}

/// u: the squared distance to a centre, or a squared affine function.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Radial { centre: Vec<f64> },
    Ridge { normal: Vec<f64>, shift: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub shape: Shape,
    pub profile: Profile,
}

impl Component {
    /// u(x) and ∇u(x).
    fn u(&self, x: &[f64]) -> (f64, Vec<f64>) {
        match &self.shape {
            Shape::Radial { centre } => {
                let diff: Vec<f64> = x.iter().zip(centre).map(|(a, c)| a - c).collect();
                let u = diff.iter().map(|d| d * d).sum();
                (u, diff.iter().map(|d| 2.0 * d).collect())
            }
            Shape::Ridge { normal, shift } => {
                let s: f64 = x.iter().zip(normal).map(|(a, n)| a * n).sum::<f64>() + shift;
                (s * s, normal.iter().map(|n| 2.0 * s * n).collect())
            }
        }
    }
    pub fn value(&self, x: &[f64]) -> f64 {
        self.profile.value(self.u(x).0)
    }
    pub fn grad(&self, x: &[f64]) -> Vec<f64> {
        let (u, du) = self.u(x);
        let s = self.profile.slope(u);
        du.iter().map(|d| s * d).collect()
    }
    /// f_i* = φ(0) (u = 0 is attained: at the centre, or on the ridge's hyperplane).
    pub fn minimum(&self) -> f64 {
        self.profile.value(0.0)
    }
}

pub(crate) fn radial(centre: &[f64], profile: Profile) -> Component {
    Component {
        shape: Shape::Radial {
            centre: centre.to_vec(),
        },
        profile,
    }
}

pub(crate) const G: Profile = Profile::Rational { p: 0.0, q: 1.0 };

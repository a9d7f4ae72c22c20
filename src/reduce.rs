//! Reductions over lists of tensors (one entry per parameter), converted to
//! and accumulated in f64 piece by piece so that temporaries stay bounded for
//! huge tensors. One host synchronisation per call.
//!
//! Never in place: `to_kind(Double)` on an f64 tensor returns the tensor
//! itself, so an in-place operation here would overwrite a parameter.

use tch::{Kind, Tensor};

/// Elements per f64 conversion.
const CHUNK: i64 = 1 << 22;

/// Σ over tensors i and chunks [s, s + len) of `term(i, s, len)` (a scalar f64
/// tensor). `lens` are the numbers of elements of the tensors.
fn chunked_sum(lens: &[i64], mut term: impl FnMut(usize, i64, i64) -> Tensor) -> f64 {
    let mut parts = Vec::new();
    for (i, &n) in lens.iter().enumerate() {
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            parts.push(term(i, start, len));
            start += len;
        }
    }
    if parts.is_empty() {
        return 0.0;
    }
    Tensor::stack(&parts, 0).sum(Kind::Double).double_value(&[])
}

fn flat(ts: &[Tensor]) -> Vec<Tensor> {
    ts.iter().map(|t| t.reshape([-1])).collect()
}

fn piece(t: &Tensor, start: i64, len: i64) -> Tensor {
    t.narrow(0, start, len).to_kind(Kind::Double)
}

fn lens(ts: &[Tensor]) -> Vec<i64> {
    ts.iter().map(|t| t.numel() as i64).collect()
}

/// Σ_i <a_i, b_i>.
pub fn dot(a: &[Tensor], b: &[Tensor]) -> f64 {
    let (a, b) = (flat(a), flat(b));
    chunked_sum(&lens(&a), |i, s, l| {
        (piece(&a[i], s, l) * piece(&b[i], s, l)).sum(Kind::Double)
    })
}

/// Σ_i <a_i, b_i − c_i>, the difference taken in f64.
pub fn dot_diff(a: &[Tensor], b: &[Tensor], c: &[Tensor]) -> f64 {
    let (a, b, c) = (flat(a), flat(b), flat(c));
    chunked_sum(&lens(&a), |i, s, l| {
        (piece(&a[i], s, l) * (piece(&b[i], s, l) - piece(&c[i], s, l))).sum(Kind::Double)
    })
}

/// Σ_i ||b_i − c_i||², the difference taken in f64.
pub fn dist_sq(b: &[Tensor], c: &[Tensor]) -> f64 {
    let (b, c) = (flat(b), flat(c));
    chunked_sum(&lens(&b), |i, s, l| {
        (piece(&b[i], s, l) - piece(&c[i], s, l))
            .square()
            .sum(Kind::Double)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_no_aliasing() {
        let opts = (Kind::Double, tch::Device::Cpu);
        let a = vec![
            Tensor::from_slice(&[1.0f64, 2.0, 3.0]),
            Tensor::ones([2, 2], opts),
        ];
        let b = vec![
            Tensor::from_slice(&[4.0f64, 5.0, 6.0]),
            Tensor::full([2, 2], 2.0, opts),
        ];
        assert_eq!(dot(&a, &b), 32.0 + 8.0);
        assert_eq!(
            dot_diff(&a, &b, &a),
            1.0 * 3.0 + 2.0 * 3.0 + 3.0 * 3.0 + 4.0
        );
        assert_eq!(dist_sq(&b, &a), 27.0 + 4.0);
        // f64 inputs are left unchanged
        assert_eq!(Vec::<f64>::try_from(&a[0]).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(dot(&[], &[]), 0.0);
    }
}

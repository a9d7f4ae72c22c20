//! Reductions over lists of tensors (one entry per parameter), converted to
//! and accumulated in f64 piece by piece so that temporaries stay bounded for
//! huge tensors. One host synchronisation per call. They run at every
//! training step (the gradient norm) and for every probed minibatch, so their
//! cost matters (docs/benchmarks.md).
//!
//! Never in place: `to_kind(Double)` on an f64 tensor returns the tensor
//! itself, so an in-place operation here would overwrite a parameter.

use tch::{Device, Kind, Tensor};

/// Elements per f64 conversion on the CPU: 2^16 (512 KiB of f64), so that the
/// converted piece is still in cache when it is multiplied and summed. With
/// 4M-element pieces every pass went to memory: ResNet-18's gradient norm
/// took ~10× longer on one core (docs/benchmarks.md).
const CPU_CHUNK: i64 = 1 << 16;
/// On a GPU each piece costs kernel launches; memory bandwidth is plentiful.
const GPU_CHUNK: i64 = 1 << 22;

/// Σ over tensors i and chunks [s, s + len) of `term(i, s, len)` (a scalar f64
/// tensor). `lens` are the numbers of elements of the tensors.
///
/// The partial sums go into one f64 tensor allocated up front, not into a
/// list of scalar tensors: thousands of small long-lived allocations between
/// the pieces' temporaries kept glibc from reusing the temporaries' memory,
/// and the heap grew by about one piece per piece (≈ 2 M for a 100M-parameter
/// model with pieces of 2^16 values). Summed in the same order as before.
fn chunked_sum(
    lens: &[i64],
    device: Device,
    mut term: impl FnMut(usize, i64, i64) -> Tensor,
) -> f64 {
    let chunk = if device == Device::Cpu {
        CPU_CHUNK
    } else {
        GPU_CHUNK
    };
    let count: i64 = lens.iter().map(|&n| (n + chunk - 1) / chunk).sum();
    if count == 0 {
        return 0.0;
    }
    let mut parts: Option<Tensor> = None;
    let mut j = 0;
    for (i, &n) in lens.iter().enumerate() {
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let t = term(i, start, len);
            let all =
                parts.get_or_insert_with(|| Tensor::zeros([count], (Kind::Double, t.device())));
            all.get(j).copy_(&t);
            j += 1;
            start += len;
        }
    }
    parts.unwrap().sum(Kind::Double).double_value(&[])
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

fn device(ts: &[Tensor]) -> Device {
    ts.first().map_or(Device::Cpu, Tensor::device)
}

/// Σ_i <a_i, b_i>.
pub fn dot(a: &[Tensor], b: &[Tensor]) -> f64 {
    let (a, b) = (flat(a), flat(b));
    chunked_sum(&lens(&a), device(&a), |i, s, l| {
        (piece(&a[i], s, l) * piece(&b[i], s, l)).sum(Kind::Double)
    })
}

/// Σ_i ||a_i||² (= `dot(a, a)`, converting each piece to f64 once), in
/// `csrc/ops.cpp`: the gradient norm of every training step, where the seven
/// tch calls per piece of the generic path cost more than the arithmetic for
/// small models (docs/benchmarks.md). Same pieces; each piece's sum of
/// squares is an f64 dot product (agreeing with the generic path to rounding,
/// tested below).
pub fn norm_sq(a: &[Tensor]) -> f64 {
    let chunk = if device(a) == Device::Cpu {
        CPU_CHUNK
    } else {
        GPU_CHUNK
    };
    crate::torch::ops::norm_sq(a, chunk)
}

/// Σ_i <a_i, b_i − c_i>, the difference taken in f64: the probe's inner
/// product <∇f_i(x^k), x^k − x^K>. On the CPU in one pass (`csrc/ops.cpp`:
/// each value converted to f64, lanes within blocks of 4096, block sums with
/// Kahan compensation); on CUDA in f64 pieces ([`dot_diff_pieces`]).
pub fn dot_diff(a: &[Tensor], b: &[Tensor], c: &[Tensor]) -> f64 {
    if device(b) == Device::Cpu {
        return crate::torch::ops::dot_diff_dist(Some(a), b, c, CPU_CHUNK).0;
    }
    dot_diff_pieces(a, b, c)
}

/// [`dot_diff`] by f64 pieces: the CUDA path (and the CPU's before the
/// one-pass loop; kept as the reference its tests compare with).
pub fn dot_diff_pieces(a: &[Tensor], b: &[Tensor], c: &[Tensor]) -> f64 {
    let (a, b, c) = (flat(a), flat(b), flat(c));
    chunked_sum(&lens(&a), device(&a), |i, s, l| {
        (piece(&a[i], s, l) * (piece(&b[i], s, l) - piece(&c[i], s, l))).sum(Kind::Double)
    })
}

/// Σ_i ||b_i − c_i||², the difference taken in f64: the probe's squared
/// distance ||x^k − x^K||² (as [`dot_diff`]: one pass on the CPU, f64 pieces
/// on CUDA).
pub fn dist_sq(b: &[Tensor], c: &[Tensor]) -> f64 {
    if device(b) == Device::Cpu {
        return crate::torch::ops::dot_diff_dist(None, b, c, CPU_CHUNK).1;
    }
    dist_sq_pieces(b, c)
}

/// [`dist_sq`] by f64 pieces (the CUDA path; the CPU's reference in tests).
pub fn dist_sq_pieces(b: &[Tensor], c: &[Tensor]) -> f64 {
    let (b, c) = (flat(b), flat(c));
    chunked_sum(&lens(&b), device(&b), |i, s, l| {
        let d = piece(&b[i], s, l) - piece(&c[i], s, l);
        (&d * &d).sum(Kind::Double)
    })
}

/// (Σ_i <a_i, b_i − c_i>, Σ_i ||b_i − c_i||²) in one call (`csrc/ops.cpp`):
/// bit for bit `dot_diff(a, b, c)` and `dist_sq(b, c)` (tested below), for the
/// replay probe's every step.
pub fn dot_diff_and_dist_sq(a: &[Tensor], b: &[Tensor], c: &[Tensor]) -> (f64, f64) {
    let chunk = if device(b) == Device::Cpu {
        CPU_CHUNK
    } else {
        GPU_CHUNK
    };
    crate::torch::ops::dot_diff_dist(Some(a), b, c, chunk)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_pass_inner_and_distance_agree_with_f64_pieces() {
        tch::manual_seed(11);
        let opts = (Kind::Float, tch::Device::Cpu);
        // two pieces of 2^16 and a partial block, a small tensor, an empty one,
        // a transposed (non-contiguous) one
        let shapes: [&[i64]; 4] = [&[300, 300], &[17], &[0], &[40, 30]];
        let mk = || -> Vec<Tensor> {
            let mut v: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, opts)).collect();
            v[3] = v[3].transpose(0, 1);
            v
        };
        let (a, b, c) = (mk(), mk(), mk());
        let (inner, dist) = dot_diff_and_dist_sq(&a, &b, &c);
        // the pair and the single calls: the same bits
        assert_eq!(inner.to_bits(), dot_diff(&a, &b, &c).to_bits());
        assert_eq!(dist.to_bits(), dist_sq(&b, &c).to_bits());
        // the one-pass loop against ATen's f64 pieces: both accumulate in f64
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-13 * y.abs();
        assert!(close(inner, dot_diff_pieces(&a, &b, &c)), "{inner}");
        assert!(close(dist, dist_sq_pieces(&b, &c)), "{dist}");
        // f32 values stored as f64 give the same bits (the value decides)
        let f64s =
            |v: &[Tensor]| -> Vec<Tensor> { v.iter().map(|t| t.to_kind(Kind::Double)).collect() };
        let (i2, d2) = dot_diff_and_dist_sq(&f64s(&a), &b, &f64s(&c));
        assert_eq!(
            (i2.to_bits(), d2.to_bits()),
            (inner.to_bits(), dist.to_bits())
        );
        // an exact case: 1·(3 − 1) over 10^5 ones = 2·10^5; distance 4·10^5
        let n = 100_000;
        let one = Tensor::ones([n], opts);
        let three = Tensor::full([n], 3.0, opts);
        let (i3, d3) = dot_diff_and_dist_sq(&[one.shallow_clone()], &[three], &[one]);
        assert_eq!((i3, d3), (2.0 * n as f64, 4.0 * n as f64));
    }

    use super::*;

    /// The documented order of the CPU one-pass reduction (csrc/ops.cpp),
    /// written as a scalar loop: per tensor, blocks of 4096 values; in a
    /// block eight lanes (value j to lane j % 8) combined pairwise, then the
    /// tail; the blocks added in order with Kahan compensation, across all
    /// tensors.
    fn one_pass_model(a: &[Vec<f64>], b: &[Vec<f64>], c: &[Vec<f64>]) -> (f64, f64) {
        let kahan = |(sum, comp): (f64, f64), v: f64| {
            let y = v - comp;
            let t = sum + y;
            (t, (t - sum) - y)
        };
        let lanes =
            |p: &[f64; 8]| ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
        let (mut ki, mut kd) = ((0.0, 0.0), (0.0, 0.0));
        for ((a, b), c) in a.iter().zip(b).zip(c) {
            for s in (0..b.len()).step_by(4096) {
                let e = (s + 4096).min(b.len());
                let (mut pi, mut pd) = ([0.0; 8], [0.0; 8]);
                let mut i = s;
                while i + 8 <= e {
                    for l in 0..8 {
                        let d = b[i + l] - c[i + l];
                        pd[l] += d * d;
                        pi[l] += a[i + l] * d;
                    }
                    i += 8;
                }
                let (mut ti, mut td) = (0.0, 0.0);
                for j in i..e {
                    let d = b[j] - c[j];
                    td += d * d;
                    ti += a[j] * d;
                }
                kd = kahan(kd, lanes(&pd) + td);
                ki = kahan(ki, lanes(&pi) + ti);
            }
        }
        (ki.0, kd.0)
    }

    /// The vectorised loop gives the bits of the documented scalar order, for
    /// f32 and f64 values, whole blocks, partial blocks and tails.
    #[test]
    fn one_pass_follows_its_documented_order_bit_for_bit() {
        tch::manual_seed(3);
        for kind in [Kind::Float, Kind::Double] {
            let opts = (kind, tch::Device::Cpu);
            let shapes: [&[i64]; 5] = [&[3, 4096], &[5000], &[13], &[1], &[64, 129]];
            let mk = |scale: f64| -> Vec<Tensor> {
                shapes
                    .iter()
                    .map(|s| Tensor::randn(*s, opts) * scale)
                    .collect()
            };
            let (a, b, c) = (mk(1e-3), mk(1.0), mk(1.0));
            let vals = |v: &[Tensor]| -> Vec<Vec<f64>> {
                v.iter()
                    .map(|t| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap())
                    .collect()
            };
            let want = one_pass_model(&vals(&a), &vals(&b), &vals(&c));
            let got = dot_diff_and_dist_sq(&a, &b, &c);
            assert_eq!(
                (got.0.to_bits(), got.1.to_bits()),
                (want.0.to_bits(), want.1.to_bits()),
                "{kind:?}: {got:?} vs {want:?}"
            );
        }
    }

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
        assert_eq!(norm_sq(&a), 14.0 + 4.0);
        // f64 inputs are left unchanged
        assert_eq!(Vec::<f64>::try_from(&a[0]).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(dot(&[], &[]), 0.0);
        assert_eq!(norm_sq(&[]), 0.0);
    }

    /// The shim's norm (BLAS ddot per piece) agrees with the generic path
    /// (square, then sum) to f64 rounding.
    #[test]
    fn norm_sq_agrees_with_the_generic_path() {
        tch::manual_seed(5);
        let opts = (Kind::Float, tch::Device::Cpu);
        let a = vec![
            Tensor::randn([3 * CPU_CHUNK + 123], opts),
            Tensor::randn([300, 17], opts),
            Tensor::randn([5], opts),
        ];
        let flat_a = flat(&a);
        let generic = chunked_sum(&lens(&flat_a), Device::Cpu, |i, s, l| {
            let p = piece(&flat_a[i], s, l);
            (&p * &p).sum(Kind::Double)
        });
        let shim = norm_sq(&a);
        assert!(
            (shim - generic).abs() <= 1e-14 * generic,
            "{shim} vs {generic}"
        );
    }

    /// Tensors longer than a CPU piece (and not a multiple of it) are summed
    /// whole: every element of f32 inputs enters in f64, so the sums of
    /// integers below 2^24 are exact.
    #[test]
    fn pieces_cover_every_element() {
        let n = 3 * CPU_CHUNK + 17;
        let opts = (Kind::Float, tch::Device::Cpu);
        let a = vec![Tensor::arange(n, opts), Tensor::ones([5, 7], opts)];
        let b = vec![Tensor::ones([n], opts), Tensor::full([5, 7], 3.0, opts)];
        let c = vec![Tensor::zeros([n], opts), Tensor::ones([5, 7], opts)];
        let m = n as f64;
        assert_eq!(dot(&a, &b), m * (m - 1.0) / 2.0 + 105.0);
        assert_eq!(dot_diff(&a, &b, &c), m * (m - 1.0) / 2.0 + 70.0);
        assert_eq!(norm_sq(&a), (m - 1.0) * m * (2.0 * m - 1.0) / 6.0 + 35.0);
        assert_eq!(dist_sq(&b, &c), m + 140.0);
    }
}

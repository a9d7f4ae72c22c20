//! A small, portable pseudo-random generator (xoshiro256**, seeded by SplitMix64).
//!
//! Minibatch order, extra probe minibatches, subsets and synthetic data come from
//! here rather than from libtorch's generator, so that they are a pure function of
//! (seed, purpose, step, …) — the probe can rebuild the minibatch i_k of any step
//! k exactly, on any machine and device, without replaying the run.

/// Stream tags: each purpose draws from its own stream of the run seed.
pub mod stream {
    pub const EPOCH_ORDER: u64 = 1;
    pub const EXTRA_BATCH: u64 = 2;
    pub const DATA: u64 = 3;
    pub const SUBSET: u64 = 4;
    pub const FULL_SUBSET: u64 = 5;
    pub const STEP_TORCH_SEED: u64 = 6;
    pub const PROBE_CLOUD: u64 = 7;
    pub const CURVATURE_START: u64 = 8;
    /// CIFAR crop-flip augmentation of example i at step k.
    pub const AUGMENT: u64 = 9;
    /// imagefolder random-resized-crop + flip, per (step, example).
    pub const IMAGE_AUGMENT: u64 = 10;
    /// fastMRI: the k-space column mask of slice n (src/data/fastmri.rs).
    pub const MRI_MASK: u64 = 11;
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Mixes a seed and a list of tags into one 64-bit seed.
pub fn derive(seed: u64, tags: &[u64]) -> u64 {
    let mut s = seed;
    let mut out = splitmix64(&mut s);
    for t in tags {
        let mut st = out ^ t.wrapping_mul(0xd6e8_feb8_6659_fd93);
        out = splitmix64(&mut st);
    }
    out
}

#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut st = seed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Rng { s }
    }

    /// A generator for `seed` and the given stream tags.
    pub fn for_stream(seed: u64, tags: &[u64]) -> Rng {
        Rng::new(derive(seed, tags))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n), unbiased (Lemire's method with rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Standard normal (Box–Muller; one value per call, so the stream is simple).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// `k` distinct values from 0..n in random order (partial Fisher–Yates).
    pub fn sample_distinct(&mut self, n: u64, k: u64) -> Vec<i64> {
        assert!(k <= n);
        let mut pool: Vec<i64> = (0..n as i64).collect();
        for i in 0..k as usize {
            let j = i + self.below(n - i as u64) as usize;
            pool.swap(i, j);
        }
        pool.truncate(k as usize);
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_are_stable() {
        // Pinned outputs, computed by an independent Python implementation of
        // SplitMix64 and xoshiro256**: changing the generator would silently
        // change every minibatch order, so it must fail here.
        let mut st = 0u64;
        assert_eq!(splitmix64(&mut st), 0xe220_a839_7b1d_cdaf); // the published first value
        let mut r = Rng::new(0);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            vec![
                0x99ec_5f36_cb75_f2b4,
                0xbf6e_1f78_4956_452a,
                0x1a5f_849d_4933_e6e0
            ]
        );
        assert_ne!(derive(0, &[1]), derive(0, &[2]));
        assert_ne!(derive(0, &[1, 2]), derive(0, &[2, 1]));
    }

    #[test]
    fn below_and_shuffle_are_uniform_enough() {
        let mut r = Rng::new(42);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
        let d = r.sample_distinct(10, 10);
        let mut ds = d.clone();
        ds.sort();
        assert_eq!(ds, (0..10).collect::<Vec<i64>>());
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.01, "{var}");
    }
}

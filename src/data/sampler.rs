//! Minibatch order. Epoch e visits the examples in a permutation that is a pure
//! function of (run seed, e); step k takes the (k mod S)-th block of B indices
//! of epoch k div S, where S = floor(N / B) steps per epoch (the last N mod B
//! examples of each permutation are skipped, so every minibatch has B
//! examples). The minibatch i_k of any step can therefore be rebuilt exactly.

use crate::util::rng::{stream, Rng};
use anyhow::{bail, Result};

pub struct Sampler {
    n: u64,
    batch: u64,
    seed: u64,
    cached: Option<(u64, Vec<i64>)>,
}

impl Sampler {
    pub fn new(n: u64, batch: u64, seed: u64) -> Result<Sampler> {
        if batch > n {
            bail!("key `train.batch_size` is {batch} but the dataset has only {n} examples");
        }
        Ok(Sampler {
            n,
            batch,
            seed,
            cached: None,
        })
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.n / self.batch
    }

    pub fn epoch_of(&self, step: u64) -> u64 {
        step / self.steps_per_epoch()
    }

    /// The permutation of epoch `e`.
    pub fn epoch_order(&self, e: u64) -> Vec<i64> {
        let mut order: Vec<i64> = (0..self.n as i64).collect();
        Rng::for_stream(self.seed, &[stream::EPOCH_ORDER, e]).shuffle(&mut order);
        order
    }

    /// The example indices i_k of step `step`.
    pub fn batch(&mut self, step: u64) -> Vec<i64> {
        let e = self.epoch_of(step);
        if self.cached.as_ref().map(|c| c.0) != Some(e) {
            self.cached = Some((e, self.epoch_order(e)));
        }
        let pos = ((step % self.steps_per_epoch()) * self.batch) as usize;
        self.cached.as_ref().unwrap().1[pos..pos + self.batch as usize].to_vec()
    }
}

/// The j-th extra probe minibatch at snapshot `step`: `b` distinct examples
/// drawn uniformly, a pure function of (seed, step, j).
pub fn extra_batch(seed: u64, step: u64, j: u64, n: u64, b: u64) -> Vec<i64> {
    Rng::for_stream(seed, &[stream::EXTRA_BATCH, step, j]).sample_distinct(n, b)
}

/// The fixed subset standing in for the full data in the full-data probe.
pub fn full_subset(seed: u64, n: u64, m: u64) -> Vec<i64> {
    let mut v = Rng::for_stream(seed, &[stream::FULL_SUBSET]).sample_distinct(n, m.min(n));
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_rebuildable() {
        let mut s = Sampler::new(10, 3, 5).unwrap();
        assert_eq!(s.steps_per_epoch(), 3);
        let mut seen: Vec<i64> = (0..3).flat_map(|k| s.batch(k)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9); // one example skipped per epoch
        let b7 = s.batch(7);
        let mut fresh = Sampler::new(10, 3, 5).unwrap();
        assert_eq!(fresh.batch(7), b7);
        assert_ne!(s.batch(0), s.batch(3)); // a new epoch reshuffles
        let other = Sampler::new(10, 3, 6).unwrap().epoch_order(0);
        assert_ne!(other, s.epoch_order(0));
        assert!(Sampler::new(2, 3, 0).is_err());
    }

    #[test]
    fn extra_batches_are_distinct_and_seeded() {
        let a = extra_batch(1, 10, 0, 100, 20);
        let mut d = a.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 20);
        assert_eq!(a, extra_batch(1, 10, 0, 100, 20));
        assert_ne!(a, extra_batch(1, 10, 1, 100, 20));
        assert_ne!(a, extra_batch(1, 11, 0, 100, 20));
    }
}

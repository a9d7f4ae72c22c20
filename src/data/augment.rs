//! Data augmentation of training minibatches (`data.augment`), as a pure
//! function of (run seed, step k, example index i): the probe rebuilds exactly
//! the augmented minibatch i_k that step k trained on, on any device, without
//! replaying the run.
//!
//! `crop-flip` is the standard CIFAR augmentation (torchvision
//! `RandomCrop(32, padding=4)` + `RandomHorizontalFlip()`): the image is padded
//! by 4 pixels of value 0 in pixel space (black; after normalisation the fill
//! is −mean_c/std_c per channel, exactly what torchvision gives when it pads
//! before `Normalize`), a 32×32 window at offset (top, left) ∈ {0..8}² is cut
//! out, and it is mirrored left–right with probability ½. The three draws come,
//! in the order top, left, flip, from the portable generator
//! `Rng::for_stream(seed, [stream::AUGMENT, k, i])` (src/util/rng.rs), where i is the
//! example's index in the dataset (not its position in the minibatch).
//!
//! What the probe measures: rows `train` evaluate f_i on the augmented minibatch
//! of step k (so that steps.parquet's loss at step k equals the probe's loss_k
//! at x^k); rows `extra-*` and `full`, which no training step used, evaluate
//! the un-augmented images (f is the loss on the data set itself, not an
//! expectation over augmentations).

use crate::data::config::Augment;
use crate::util::rng::{stream, Rng};
use tch::Tensor;

pub const PAD: i64 = 4;

/// Which augmentation draw to apply: that of step `step` of the run seeded `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AugmentAt {
    pub seed: u64,
    pub step: u64,
}

/// The crop offset and flip of one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropFlip {
    pub top: i64,
    pub left: i64,
    pub flip: bool,
}

impl CropFlip {
    pub fn draw(at: AugmentAt, example: i64) -> CropFlip {
        let mut r = Rng::for_stream(at.seed, &[stream::AUGMENT, at.step, example as u64]);
        let top = r.below(2 * PAD as u64 + 1) as i64;
        let left = r.below(2 * PAD as u64 + 1) as i64;
        let flip = r.below(2) == 1;
        CropFlip { top, left, flip }
    }
}

pub struct Augmenter {
    pub kind: Augment,
    /// Padding value per channel, in the stored (normalised) units.
    pad_fill: Vec<f64>,
}

impl Augmenter {
    pub fn new(kind: Augment, pad_fill: Vec<f64>) -> Augmenter {
        Augmenter { kind, pad_fill }
    }

    /// The augmented images of examples `indices` (x: [B, C, H, W], row b is
    /// example indices[b]).
    pub fn apply(&self, x: &Tensor, indices: &[i64], at: AugmentAt) -> Tensor {
        match self.kind {
            Augment::CropFlip => tch::no_grad(|| self.crop_flip(x, indices, at)),
            // Applied while decoding the image files (src/data/imagefolder.rs).
            Augment::RandomResizedCrop => x.shallow_clone(),
        }
    }

    fn crop_flip(&self, x: &Tensor, indices: &[i64], at: AugmentAt) -> Tensor {
        let (b, c, h, w) = x.size4().expect("crop-flip needs images [B, C, H, W]");
        let fill = Tensor::from_slice(&self.pad_fill)
            .to_kind(x.kind())
            .to_device(x.device())
            .view([1, c, 1, 1]);
        let padded = fill
            .expand([b, c, h + 2 * PAD, w + 2 * PAD], false)
            .contiguous();
        padded.narrow(2, PAD, h).narrow(3, PAD, w).copy_(x);
        let crops: Vec<Tensor> = indices
            .iter()
            .enumerate()
            .map(|(row, &i)| {
                let d = CropFlip::draw(at, i);
                let crop = padded
                    .get(row as i64)
                    .narrow(1, d.top, h)
                    .narrow(2, d.left, w);
                if d.flip {
                    crop.flip([2])
                } else {
                    crop
                }
            })
            .collect();
        Tensor::stack(&crops, 0).to_kind(x.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn draws_are_pure_and_vary_with_step_and_example() {
        let at = AugmentAt { seed: 3, step: 10 };
        let d: Vec<CropFlip> = (0..64).map(|i| CropFlip::draw(at, i)).collect();
        assert_eq!(
            d,
            (0..64).map(|i| CropFlip::draw(at, i)).collect::<Vec<_>>()
        );
        let next: Vec<CropFlip> = (0..64)
            .map(|i| CropFlip::draw(AugmentAt { seed: 3, step: 11 }, i))
            .collect();
        assert_ne!(d, next);
        let other_seed: Vec<CropFlip> = (0..64)
            .map(|i| CropFlip::draw(AugmentAt { seed: 4, step: 10 }, i))
            .collect();
        assert_ne!(d, other_seed);
        // all offsets and both flips occur, nothing outside 0..=8
        assert!(d
            .iter()
            .all(|c| (0..=8).contains(&c.top) && (0..=8).contains(&c.left)));
        assert!(d.iter().any(|c| c.flip) && d.iter().any(|c| !c.flip));
        assert!(
            d.iter()
                .map(|c| c.top)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 5
        );
    }

    #[test]
    fn crop_flip_matches_a_direct_construction() {
        let fill = vec![-1.0, -2.0, -3.0];
        let aug = Augmenter::new(Augment::CropFlip, fill.clone());
        let x =
            Tensor::arange(2 * 3 * 32 * 32, (Kind::Double, tch::Device::Cpu)).view([2, 3, 32, 32]);
        let at = AugmentAt { seed: 1, step: 5 };
        let indices = [17i64, 4];
        let out = aug.apply(&x, &indices, at);
        assert_eq!(out.size(), vec![2, 3, 32, 32]);
        for (row, &i) in indices.iter().enumerate() {
            let d = CropFlip::draw(at, i);
            for ch in 0..3 {
                for r in 0..32i64 {
                    for col in 0..32i64 {
                        let src_c = if d.flip { 31 - col } else { col };
                        let (sr, sc) = (r + d.top - PAD, src_c + d.left - PAD);
                        let want = if (0..32).contains(&sr) && (0..32).contains(&sc) {
                            x.double_value(&[row as i64, ch, sr, sc])
                        } else {
                            fill[ch as usize]
                        };
                        assert_eq!(out.double_value(&[row as i64, ch, r, col]), want);
                    }
                }
            }
        }
        // The same example gets the same augmentation wherever it sits in the batch.
        let swapped = aug.apply(&x.flip([0]), &[4, 17], at);
        assert!(swapped.flip([0]).equal(&out));
    }
}

//! fastMRI single-coil knee volumes (`data.dataset: fastmri`): the HDF5 files of
//! the fastMRI release (`knee_singlecoil_train/*.h5`), one volume each, with
//! the datasets `kspace` (complex64 [slices, H, W]; h5py's compound {r, i}) and
//! `reconstruction_esc` (float32 [slices, h, w], the target), read with the
//! pure-Rust HDF5 reader of [`crate::util::hdf5`]. Example i is one slice.
//!
//! Each slice becomes (input, target) as AlgoPerf's input pipeline makes it:
//! 1. undersampling: the k-space columns are multiplied by a 0/1 mask: the
//!    ⌊0.08·W⌋ central columns (from (W − ⌊0.08·W⌋ + 1)/2) and each other
//!    column with probability (W/a − ⌊0.08·W⌋)/(W − ⌊0.08·W⌋), a =
//!    `data.acceleration` (AlgoPerf's 4; 1 keeps every column);
//! 2. the centred, orthonormal inverse 2-D FFT (ifftshift, ifft2, fftshift);
//! 3. the centre crop to the target's h × w (320 × 320), and the magnitude;
//! 4. normalisation by that image's mean and (population) standard deviation,
//!    then clipping to [−6, 6]; the target is normalised with the same mean
//!    and std and clipped too.
//!
//! Computed in f64 (AlgoPerf: f32), stored in the model dtype. The one
//! difference: AlgoPerf draws a new random mask each time a training slice is
//! read (TensorFlow's stateless generator), so its f_i changes between
//! epochs. Here each slice's mask is drawn once, from the portable generator
//! seeded by (`data.seed`, stream 11, the slice's number in file order), so
//! that f_i is one function: uniforms u_j = `next_f64` for the W columns in
//! order, column j random-kept when u_j < the probability above.
//!
//! `data.path` is a file or a directory of `.h5` files (in name order);
//! `data.examples` stops after that many slices.

use super::{Dataset, Targets};
use crate::data::config::{DatasetKind, FastmriData};
use crate::torch::dtype::Dtype;
use crate::util::rng::{stream, Rng};
use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

/// Most slices read without `data.examples` (819 kB each in f32).
const MAX_SLICES: u64 = 20_000;
/// AlgoPerf's fraction of always-kept central k-space columns.
pub const CENTER_FRACTION: f32 = 0.08;
/// AlgoPerf's clipping of normalised images.
const CLIP: f64 = 6.0;

/// The column mask of a slice of width `w` (1.0 kept, 0.0 dropped).
pub fn column_mask(w: usize, acceleration: f64, rng: &mut Rng) -> Vec<f64> {
    let num_low = ((w as f32) * CENTER_FRACTION) as usize;
    let pad = (w - num_low).div_ceil(2);
    let prob = (w as f64 / acceleration - num_low as f64) / (w as f64 - num_low as f64);
    (0..w)
        .map(|j| {
            let u = rng.next_f64();
            let centre = (pad..pad + num_low).contains(&j);
            if centre || (acceleration > 1.0 && u < prob) || acceleration <= 1.0 {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// (input, target) [h, w] in f64 of one slice: `kspace` [H, W, 2] (re, im)
/// f32, `target` [h, w] f32, `mask` [W].
pub fn slice_example(kspace: &Tensor, target: &Tensor, mask: &[f64]) -> (Tensor, Tensor) {
    let k = kspace.to_kind(Kind::Double).view_as_complex();
    let (big_h, big_w) = (k.size()[0], k.size()[1]);
    let m = Tensor::from_slice(mask).view([1, big_w]);
    let k = k * m;
    let img = k
        .fft_ifftshift([-2i64, -1].as_slice())
        .fft_ifft2(None::<&[i64]>, [-2i64, -1], "ortho")
        .fft_fftshift([-2i64, -1].as_slice());
    let (h, w) = (target.size()[0], target.size()[1]);
    let img = img
        .narrow(0, (big_h - h) / 2, h)
        .narrow(1, (big_w - w) / 2, w)
        .abs();
    let mean = img.mean(Kind::Double);
    let std = img.std(false);
    let x = ((&img - &mean) / &std).clamp(-CLIP, CLIP);
    let y = ((target.to_kind(Kind::Double) - &mean) / &std).clamp(-CLIP, CLIP);
    (x, y)
}

pub fn load(cfg: &FastmriData, seed: u64, dtype: Dtype) -> Result<Dataset> {
    let path = cfg
        .path
        .as_deref()
        .context("dataset `fastmri` needs key `data.path`")?;
    let limit = cfg.examples.unwrap_or(u64::MAX);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let mut shape: Option<(i64, i64)> = None;
    let mut n: u64 = 0;
    let files = super::data_files(
        path,
        |name| name.ends_with(".h5"),
        "no .h5 files (expected fastMRI volumes such as file1000001.h5)",
    )?;
    'files: for file in files {
        let vol = crate::util::hdf5::FastmriVolume::open(&file)?;
        for s in 0..vol.slices() {
            if n >= limit {
                break 'files;
            }
            if cfg.examples.is_none() && n >= MAX_SLICES {
                bail!(
                    "{}: more than {MAX_SLICES} slices; set `data.examples` to the number of slices to read",
                    path.display()
                );
            }
            let (kspace, target) = vol
                .slice(s)
                .with_context(|| format!("{}: slice {s}", file.display()))?;
            let (h, w) = (target.size()[0], target.size()[1]);
            let (big_h, big_w) = (kspace.size()[0], kspace.size()[1]);
            if big_h < h || big_w < w {
                bail!(
                    "{}: kspace is {big_h} × {big_w}, smaller than the {h} × {w} target: not a fastMRI single-coil volume",
                    file.display()
                );
            }
            match shape {
                None => shape = Some((h, w)),
                Some(sh) if sh != (h, w) => bail!(
                    "{}: reconstruction_esc is {h} × {w}, the volumes before it {} × {}: every target must have the same size",
                    file.display(),
                    sh.0,
                    sh.1
                ),
                _ => {}
            }
            let mut rng = Rng::for_stream(seed, &[stream::MRI_MASK, n]);
            let mask = column_mask(big_w as usize, cfg.acceleration, &mut rng);
            let (x, y) = slice_example(&kspace, &target, &mask);
            if !bool::try_from(x.isfinite().all()).unwrap_or(false) {
                bail!(
                    "{}: slice {s} gives a constant or non-finite image (its k-space is zero or holds NaN/inf)",
                    file.display()
                );
            }
            xs.push(x.to_kind(dtype.kind()));
            ys.push(y.to_kind(dtype.kind()));
            n += 1;
        }
    }
    let Some((h, w)) = shape.filter(|_| n > 0) else {
        bail!("{}: no slices", path.display());
    };
    Ok(Dataset {
        kind: DatasetKind::Fastmri,
        x: Tensor::stack(&xs, 0),
        y: Tensor::stack(&ys, 0),
        len: n,
        input_shape: vec![h, w],
        targets: Targets::Images {
            height: h,
            width: w,
        },
        source_index: (0..n as i64).collect(),
        source_dir: Some(path.to_path_buf()),
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AlgoPerf's centre for W = 368: 29 columns from 170.
    #[test]
    fn centre_columns() {
        let mut rng = Rng::for_stream(0, &[stream::MRI_MASK, 0]);
        let m = column_mask(368, 1e9, &mut rng);
        let kept: Vec<usize> = (0..368).filter(|&j| m[j] == 1.0).collect();
        assert_eq!(kept, (170..199).collect::<Vec<_>>());
        let mut rng = Rng::for_stream(0, &[stream::MRI_MASK, 0]);
        assert!(column_mask(368, 1.0, &mut rng).iter().all(|&v| v == 1.0));
        // Acceleration 4 keeps about a quarter of the columns.
        let mut rng = Rng::for_stream(0, &[stream::MRI_MASK, 0]);
        let kept = column_mask(368, 4.0, &mut rng).iter().sum::<f64>();
        assert!((60.0..130.0).contains(&kept), "{kept}");
    }
}

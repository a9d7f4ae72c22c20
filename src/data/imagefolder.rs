//! ImageFolder data (the ImageNet layout of torchvision/AlgoPerf): `root/<class>/<file>`,
//! JPEG or PNG files. Classes are the sub-directory names in sorted (byte) order,
//! labelled 0, 1, …; examples are all image files sorted by path, so example i
//! (the i of f_i) is the i-th path — the same order as `torchvision.datasets.ImageFolder`.
//!
//! Only the index → (path, label) table is built when the data are loaded; images
//! are decoded per minibatch (in parallel threads), so a 1.28M-image tree costs a
//! directory walk, not a decode, up front.
//!
//! Transforms, to a `[3, S, S]` tensor with S = `data.image_size`:
//! - evaluation (every probe row except `train`, and training without
//!   augmentation): resize the shorter side to round(S/0.875) (256 for S = 224),
//!   then a center crop S×S — torchvision's `Resize` + `CenterCrop` of AlgoPerf;
//! - `random-resized-crop` (training step k, and the probe's `train` row of step
//!   k): torchvision's `RandomResizedCrop(S)` (area scale U(0.08, 1), log-uniform
//!   aspect ratio in [3/4, 4/3], 10 tries, then the center fallback) and a
//!   horizontal flip with probability ½. The draws come from the portable rng
//!   stream (run seed, IMAGE_AUGMENT, step, example), so the augmented minibatch
//!   of any step is rebuilt exactly.
//!
//! Resizing is bilinear with the `image` crate's triangle filter (which widens
//! with the scale factor when shrinking, i.e. antialiased like PIL's bilinear);
//! it is close to, but not bit-identical with, torchvision's PIL path.
//! Pixels are normalised per channel with the ImageNet statistics
//! `(p/255 − mean)/std`, mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225),
//! the values AlgoPerf uses (there on the 0–255 scale).

use crate::util::rng::{stream, Rng};
use anyhow::{anyhow, bail, Context, Result};
use image::imageops::{self, FilterType};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// ImageNet channel means of pixels scaled to [0, 1].
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations of pixels scaled to [0, 1].
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];
/// Evaluation: the center crop keeps this fraction of the resized shorter side.
pub const CROP_FRACTION: f64 = 0.875;

const EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "JPEG"];

/// The index → path table of an ImageFolder tree and its transforms.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub root: PathBuf,
    /// Class names (directory names), label = position.
    pub classes: Vec<String>,
    /// Example i's file.
    pub files: Vec<PathBuf>,
    /// Example i's label.
    pub labels: Vec<i64>,
    /// Side S of the square output.
    pub size: u32,
    /// Training steps use random-resized-crop + flip.
    pub augment: bool,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The class names of an ImageFolder tree: its sub-directories, sorted (as
/// torchvision's `ImageFolder` numbers them).
pub fn class_names(root: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(root)
        .with_context(|| format!("reading the ImageFolder root {}", root.display()))?;
    let mut classes = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("listing {}", root.display()))?;
        if e.path().is_dir() {
            let name = e.file_name().into_string().map_err(|n| {
                anyhow!(
                    "{}: class directory name {n:?} is not UTF-8",
                    root.display()
                )
            })?;
            classes.push(name);
        }
    }
    classes.sort();
    if classes.is_empty() {
        bail!(
            "{} holds no class sub-directories: an ImageFolder tree is root/<class>/<image>.jpg",
            root.display()
        );
    }
    Ok(classes)
}

/// All image files below `dir` (recursively, as torchvision does), sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let p = e.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
}

impl ImageFolder {
    /// Scans `root` (one sub-directory per class). Fails on an empty tree or a
    /// class without images, naming it.
    pub fn scan(root: &Path, size: u32, augment: bool) -> Result<ImageFolder> {
        let classes = class_names(root)?;
        Self::scan_classes(root, size, augment, &classes, &classes)
    }

    /// Scans a held-out tree `root` labelled by the training set's `classes`
    /// (the position of each sub-directory's name there; ImageNet's val/ has
    /// all of them, a smaller tree some): a class the training set lacks is an
    /// error naming it.
    pub fn scan_held_out(root: &Path, size: u32, classes: &[String]) -> Result<ImageFolder> {
        let found = class_names(root)?;
        if let Some(c) = found.iter().find(|c| !classes.contains(c)) {
            bail!(
                "{}: class directory `{c}` is not a class of the training set ({} classes: {}…)",
                root.display(),
                classes.len(),
                classes
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Self::scan_classes(root, size, false, &found, classes)
    }

    /// Images of the `dirs` sub-directories of `root`, each labelled by its
    /// name's position in `classes`.
    fn scan_classes(
        root: &Path,
        size: u32,
        augment: bool,
        dirs: &[String],
        classes: &[String],
    ) -> Result<ImageFolder> {
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for class in dirs {
            let label = classes.iter().position(|c| c == class).unwrap();
            let mut found = Vec::new();
            walk(&root.join(class), &mut found)?;
            if found.is_empty() {
                bail!(
                    "class directory {} holds no .jpg/.jpeg/.png files",
                    root.join(class).display()
                );
            }
            found.sort();
            labels.extend(std::iter::repeat_n(label as i64, found.len()));
            files.extend(found);
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes: classes.to_vec(),
            files,
            labels,
            size,
            augment,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Keeps examples `keep` (in that order).
    pub fn select(&mut self, keep: &[i64]) {
        self.files = keep
            .iter()
            .map(|&i| self.files[i as usize].clone())
            .collect();
        self.labels = keep.iter().map(|&i| self.labels[i as usize]).collect();
    }

    /// Decodes and transforms examples `indices` into a `[B·3·S·S]` buffer of
    /// normalised pixels (channel-major per image). `augment_at` = (seed, step)
    /// selects the training augmentation of that step (when enabled), None the
    /// evaluation transform. Decoding runs on up to `available_parallelism` threads.
    pub fn pixels(&self, indices: &[i64], augment_at: Option<(u64, u64)>) -> Result<Vec<f32>> {
        let per = 3 * (self.size as usize).pow(2);
        let mut out = vec![0f32; per * indices.len()];
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(indices.len().max(1));
        let chunk = indices.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = out
                .chunks_mut(per * chunk)
                .zip(indices.chunks(chunk))
                .map(|(buf, idx)| {
                    scope.spawn(move || -> Result<()> {
                        for (dst, &i) in buf.chunks_mut(per).zip(idx) {
                            self.example(i, augment_at, dst)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow!("an image-decoding thread panicked"))??;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Example i transformed into `dst` ([3, S, S], normalised).
    fn example(&self, i: i64, augment_at: Option<(u64, u64)>, dst: &mut [f32]) -> Result<()> {
        let path = self
            .files
            .get(i as usize)
            .ok_or_else(|| anyhow!("example index {i} is outside 0..{}", self.len()))?;
        let img = decode(path)?;
        let out = match augment_at {
            Some((seed, step)) if self.augment => {
                let mut rng = Rng::for_stream(seed, &[stream::IMAGE_AUGMENT, step, i as u64]);
                random_resized_crop_flip(&img, self.size, &mut rng)
            }
            _ => eval_transform(&img, self.size),
        };
        normalise_into(&out, dst);
        Ok(())
    }
}

/// Decodes a JPEG/PNG file to 8-bit RGB (grey and alpha images converted).
pub fn decode(path: &Path) -> Result<RgbImage> {
    let reader = image::io::Reader::open(path)
        .with_context(|| format!("opening image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("reading image {}", path.display()))?;
    let img = reader.decode().with_context(|| {
        format!(
            "decoding image {} (expected a JPEG or PNG file)",
            path.display()
        )
    })?;
    Ok(img.to_rgb8())
}

/// Resize of the shorter side to round(S/0.875), then center crop S×S.
pub fn eval_transform(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let short = (size as f64 / CROP_FRACTION).round().max(size as f64) as u32;
    // torchvision's Resize(int): the longer side is truncated, not rounded.
    let (nw, nh) = if w <= h {
        (short, ((short as u64 * h as u64) / w as u64) as u32)
    } else {
        (((short as u64 * w as u64) / h as u64) as u32, short)
    };
    let resized = imageops::resize(img, nw, nh, FilterType::Triangle);
    let top = ((nh - size) as f64 / 2.0).round() as u32;
    let left = ((nw - size) as f64 / 2.0).round() as u32;
    imageops::crop_imm(&resized, left, top, size, size).to_image()
}

/// torchvision `RandomResizedCrop.get_params` with scale (0.08, 1) and ratio
/// (3/4, 4/3): the crop (top, left, height, width).
pub fn random_crop_box(w: u32, h: u32, rng: &mut Rng) -> (u32, u32, u32, u32) {
    let area = w as f64 * h as f64;
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * (0.08 + (1.0 - 0.08) * rng.next_f64());
        let aspect = (lo + (hi - lo) * rng.next_f64()).exp();
        let cw = (target * aspect).sqrt().round() as i64;
        let ch = (target / aspect).sqrt().round() as i64;
        if 0 < cw && cw <= w as i64 && 0 < ch && ch <= h as i64 {
            let top = rng.below((h as i64 - ch + 1) as u64) as u32;
            let left = rng.below((w as i64 - cw + 1) as u64) as u32;
            return (top, left, ch as u32, cw as u32);
        }
    }
    // Fallback: the whole image, cut to the nearest allowed aspect ratio.
    let ratio = w as f64 / h as f64;
    let (cw, ch) = if ratio < 3.0 / 4.0 {
        (w, ((w as f64) / (3.0 / 4.0)).round().min(h as f64) as u32)
    } else if ratio > 4.0 / 3.0 {
        (((h as f64) * (4.0 / 3.0)).round().min(w as f64) as u32, h)
    } else {
        (w, h)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// Random-resized-crop to S×S, then a horizontal flip with probability ½.
pub fn random_resized_crop_flip(img: &RgbImage, size: u32, rng: &mut Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let (top, left, ch, cw) = random_crop_box(w, h, rng);
    let crop = imageops::crop_imm(img, left, top, cw, ch).to_image();
    let out = imageops::resize(&crop, size, size, FilterType::Triangle);
    if rng.next_f64() < 0.5 {
        imageops::flip_horizontal(&out)
    } else {
        out
    }
}

/// `(p/255 − mean_c)/std_c` in [3, S, S] order.
pub fn normalise_into(img: &RgbImage, dst: &mut [f32]) {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    for (k, px) in img.pixels().enumerate() {
        for c in 0..3 {
            dst[c * plane + k] = ((px[c] as f64 / 255.0 - MEAN[c]) / STD[c]) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 100])
        })
    }

    #[test]
    fn constant_image_normalises_to_known_values() {
        let img = RgbImage::from_pixel(50, 40, Rgb([10, 128, 250]));
        for out in [
            eval_transform(&img, 16),
            random_resized_crop_flip(&img, 16, &mut Rng::new(3)),
        ] {
            assert_eq!(out.dimensions(), (16, 16));
            let mut buf = vec![0f32; 3 * 256];
            normalise_into(&out, &mut buf);
            for (c, v) in [10.0, 128.0, 250.0].iter().enumerate() {
                let want = ((v / 255.0 - MEAN[c]) / STD[c]) as f32;
                assert!(buf[c * 256..(c + 1) * 256].iter().all(|&x| x == want));
            }
        }
    }

    #[test]
    fn eval_transform_is_resize_then_center_crop() {
        // 64×32 → shorter side round(16/0.875) = 18 → 36×18 → crop 16×16 at (10, 1).
        let img = gradient(64, 32);
        let out = eval_transform(&img, 16);
        let resized = imageops::resize(&img, 36, 18, FilterType::Triangle);
        let want = imageops::crop_imm(&resized, 10, 1, 16, 16).to_image();
        assert_eq!(out, want);
    }

    #[test]
    fn crop_boxes_stay_inside_and_follow_the_bounds() {
        let mut rng = Rng::new(11);
        for _ in 0..2000 {
            let (t, l, h, w) = random_crop_box(120, 80, &mut rng);
            assert!(t + h <= 80 && l + w <= 120 && h > 0 && w > 0);
            let frac = (h * w) as f64 / (120.0 * 80.0);
            assert!(frac > 0.07 && frac <= 1.0, "{frac}");
        }
        // A 1×100 strip never fits an aspect ratio in [3/4, 4/3]: the fallback.
        assert_eq!(random_crop_box(100, 1, &mut rng), (0, 49, 1, 1));
    }
}

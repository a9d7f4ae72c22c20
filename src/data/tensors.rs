//! `data: {dataset: tensors, path: FILE}`: any data set, as a file of named
//! tensors whose first dimension is the example index (the i of f_i).
//! Minibatch i_k is `index_select(0, i_k)` on every tensor, and the tensors
//! are passed to the model (a TorchScript module) in their declared order.
//!
//! Files: safetensors (`.safetensors`), NumPy `.npz` (uncompressed or
//! compressed) and `.npy` (one tensor, named by the file's stem), read with
//! the readers of the `tch` crate (which uses Hugging Face's `safetensors`
//! crate and the `zip` crate); the `safetensors` crate is also used directly
//! for the file's metadata.
//!
//! The declared order, first that applies:
//! 1. `data.inputs: [name, …]` in the config (a subset of the file's tensors
//!    may be chosen);
//! 2. safetensors: the metadata entry `abcond.inputs` (comma-separated names;
//!    `abcond.save_tensors` in the Python companion writes it in the order of
//!    its keyword arguments);
//! 3. `.npz`: the order of the arrays in the archive (`numpy.savez` keeps the
//!    order of its keyword arguments); `.npy`: its one tensor.
//!
//! A safetensors file with several tensors and neither is an error (its
//! header is a JSON object, whose order is not a declaration).
//!
//! Floating-point tensors are converted to the model dtype (f32 or f64);
//! integer and boolean tensors (labels, token ids, masks) are kept as stored.

use super::config::TensorsData;
use super::{Dataset, DatasetKind, Targets};
use crate::torch::dtype::Dtype;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// Named tensors, as a file holds them.
type Named = Vec<(String, Tensor)>;

/// Checks the file's digest against the one recorded in the config (None:
/// nothing recorded); `got` is computed only when needed.
fn check_digest(
    path: &Path,
    want: Option<&str>,
    got: impl FnOnce() -> Result<String>,
) -> Result<()> {
    if let Some(want) = want {
        let got = got()?;
        if got != want {
            bail!(
                "{}: the tensor file changed since the config was read (digest {got}, recorded {want}); a run measures the data it was trained on: restore the file, or train a new run",
                path.display()
            );
        }
    }
    Ok(())
}

/// The tensors of `path` and the order its file declares (if any), after
/// checking the file against the digest `want`.
fn read_file(path: &Path, want: Option<&str>) -> Result<(Named, Option<Vec<String>>)> {
    let what = path.display();
    let meta = std::fs::metadata(path)
        .with_context(|| format!("key `data.path`: reading the tensor file {what}"))?;
    if !meta.is_file() {
        bail!("key `data.path`: {what} is not a regular file");
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {what}"))?;
            // Hashed from the bytes in memory: the file is read once.
            check_digest(path, want, || Ok(crate::util::bytes_digest(&bytes)))?;
            let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
                .map_err(|e| anyhow!("{what} is not a valid safetensors file: {e:?}"))?;
            let declared = header
                .metadata()
                .as_ref()
                .and_then(|m| m.get("abcond.inputs"))
                .map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>());
            let st = safetensors::SafeTensors::deserialize(&bytes)
                .map_err(|e| anyhow!("{what} is not a valid safetensors file: {e:?}"))?;
            let mut out = vec![];
            for (name, view) in st.tensors() {
                let dtype = view.dtype();
                let t = Tensor::try_from(view).map_err(|e| {
                    anyhow!("{what}: tensor `{name}` has dtype {dtype:?}, which libtorch cannot hold: {e}")
                })?;
                out.push((name, t));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok((out, declared))
        }
        "npz" => {
            check_digest(path, want, || crate::util::file_digest(path))?;
            // tch's reader unwraps a damaged archive entry: a panic here is
            // the file's fault, reported as such.
            let v = std::panic::catch_unwind(|| Tensor::read_npz(path))
                .map_err(|_| anyhow!("{what} is not a readable .npz file (a damaged archive)"))?
                .map_err(|e| anyhow!("{what} is not a readable .npz file: {e}"))?;
            let order = v.iter().map(|(n, _)| n.clone()).collect();
            Ok((v, Some(order)))
        }
        "npy" => {
            check_digest(path, want, || crate::util::file_digest(path))?;
            let t = Tensor::read_npy(path).map_err(|e| anyhow!("{what} is not a readable .npy file: {e}"))?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "x".into());
            Ok((vec![(name.clone(), t)], Some(vec![name])))
        }
        _ => bail!(
            "key `data.path`: {what}: unknown tensor file type `.{ext}`; expected .safetensors, .npz or .npy"
        ),
    }
}

/// Loads the data set of `cfg`; `dtype`: the model's.
pub fn load(cfg: &TensorsData, dtype: Dtype) -> Result<Dataset> {
    let path = cfg.path.as_deref().ok_or_else(|| {
        anyhow!("key `data.path` is required for dataset `tensors`: the file of named tensors")
    })?;
    let what = path.display().to_string();
    let (tensors, declared) = read_file(path, cfg.digest.as_deref())?;
    if tensors.is_empty() {
        bail!("{what} holds no tensors");
    }
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let order: Vec<String> = match (&cfg.inputs, declared) {
        (Some(o), _) => o.clone(),
        (None, Some(o)) => o,
        (None, None) if tensors.len() == 1 => vec![tensors[0].0.clone()],
        (None, None) => bail!(
            "{what} holds {} tensors ({}) and does not declare their order: list them in the order the model takes them, e.g. `data.inputs: [{}]` (abcond.save_tensors records the order itself)",
            tensors.len(),
            names.join(", "),
            names.join(", ")
        ),
    };
    let mut inputs = vec![];
    for name in &order {
        let Some((_, t)) = tensors.iter().find(|(n, _)| n == name) else {
            bail!(
                "{what} has no tensor `{name}` (named by {}); it holds {}",
                if cfg.inputs.is_some() {
                    "key `data.inputs`"
                } else {
                    "its declared order"
                },
                names.join(", ")
            );
        };
        if inputs.iter().any(|(n, _): &(String, Tensor)| n == name) {
            bail!("tensor `{name}` is listed twice in the order of {what}");
        }
        inputs.push((name.clone(), t.shallow_clone()));
    }
    let n = inputs[0].1.size().first().copied();
    for (name, t) in &inputs {
        let size = t.size();
        if size.is_empty() {
            bail!("{what}: tensor `{name}` is a scalar; every tensor needs a first dimension, the examples");
        }
        if Some(size[0]) != n {
            bail!(
                "{what}: the tensors disagree in length: `{}` has {} examples (shape {:?}) but `{name}` has {} (shape {size:?}); the first dimension is the example index",
                inputs[0].0,
                n.unwrap_or(0),
                inputs[0].1.size(),
                size[0]
            );
        }
    }
    let n = n.unwrap_or(0);
    if n < 1 {
        bail!("{what}: the tensors hold no examples");
    }
    let inputs: Vec<(String, Tensor)> = inputs
        .into_iter()
        .map(|(name, t)| {
            let t = if t.is_floating_point() {
                t.to_kind(dtype.kind())
            } else {
                t
            };
            (name, t.contiguous())
        })
        .collect();
    Ok(Dataset {
        kind: DatasetKind::Tensors,
        x: inputs[0].1.shallow_clone(),
        y: Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)),
        len: n as u64,
        input_shape: inputs[0].1.size()[1..].to_vec(),
        targets: Targets::Tensors,
        source_index: (0..n).collect(),
        source_dir: Some(path.to_path_buf()),
        augment: None,
        images: None,
        inputs,
        vocab: vec![],
        graphs: None,
    })
}

//! fastMRI volumes through the pure-Rust HDF5 decoder `hdf5-reader` (no system
//! libhdf5): the datasets `kspace` (complex64, which h5py stores as the
//! compound {r: f32, i: f32}) and `reconstruction_esc` (float32), read one
//! slice of the first axis at a time.

use anyhow::{anyhow, bail, Context, Result};
use hdf5_reader::{ByteOrder, CompoundField, Datatype, H5Type, Hdf5File, SliceInfo, SliceInfoElem};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// One complex64 value as h5py writes it: compound {r: f32 at 0, i: f32 at 4}.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct C32 {
    re: f32,
    im: f32,
}

impl H5Type for C32 {
    fn hdf5_type() -> Datatype {
        let f = Datatype::FloatingPoint {
            size: 4,
            byte_order: ByteOrder::LittleEndian,
        };
        Datatype::Compound {
            size: 8,
            fields: vec![
                CompoundField {
                    name: "r".into(),
                    byte_offset: 0,
                    datatype: f.clone(),
                },
                CompoundField {
                    name: "i".into(),
                    byte_offset: 4,
                    datatype: f,
                },
            ],
        }
    }

    fn from_bytes(bytes: &[u8], dtype: &Datatype) -> hdf5_reader::error::Result<Self> {
        use hdf5_reader::error::Error;
        let Datatype::Compound { fields, .. } = dtype else {
            return Err(Error::InvalidData(format!(
                "not a compound type: {dtype:?}"
            )));
        };
        let field = |name: &str| -> hdf5_reader::error::Result<f32> {
            let f = fields
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| Error::InvalidData(format!("compound has no field '{name}'")))?;
            let o = f.byte_offset as usize;
            let b = bytes
                .get(o..o.saturating_add(4))
                .ok_or_else(|| Error::InvalidData(format!("field '{name}' out of range")))?;
            f32::from_bytes(b, &f.datatype)
        };
        Ok(C32 {
            re: field("r")?,
            im: field("i")?,
        })
    }

    fn element_size(dtype: &Datatype) -> usize {
        match dtype {
            Datatype::Compound { size, .. } => *size as usize,
            _ => 8,
        }
    }
}

/// Whether `dtype` is h5py's complex64: {r, i} little-endian f32 at 0 and 4.
fn is_complex64(dtype: &Datatype) -> bool {
    let f32le = |d: &Datatype| {
        matches!(
            d,
            Datatype::FloatingPoint {
                size: 4,
                byte_order: ByteOrder::LittleEndian
            }
        )
    };
    matches!(dtype, Datatype::Compound { size: 8, fields } if fields.len() == 2
        && fields[0].name == "r" && fields[0].byte_offset == 0 && f32le(&fields[0].datatype)
        && fields[1].name == "i" && fields[1].byte_offset == 4 && f32le(&fields[1].datatype))
}

/// An open fastMRI single-coil volume.
pub struct FastmriVolume {
    path: PathBuf,
    file: Hdf5File,
    kspace: Vec<u64>,
    target: Vec<u64>,
}

impl FastmriVolume {
    pub fn open(path: &Path) -> Result<FastmriVolume> {
        let what = || format!("{}", path.display());
        let file = Hdf5File::open(path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("{}: not an HDF5 file", what()))?;
        // A truncated file: the superblock records where the file ends.
        let sb = file.superblock();
        let need = sb.base_address.saturating_add(sb.eof_address);
        let have = file.storage().len();
        if have < need {
            bail!(
                "{}: truncated HDF5 file ({have} bytes, its superblock says {need})",
                what()
            );
        }
        let shape = |name: &str| -> Result<(Vec<u64>, Datatype)> {
            let d = file.dataset(name).map_err(|e| {
                anyhow!(
                    "{}: no dataset `{name}` ({e}); a fastMRI single-coil volume has `kspace` and `reconstruction_esc`",
                    what()
                )
            })?;
            Ok((d.shape().to_vec(), d.dtype().clone()))
        };
        let (kspace, kt) = shape("kspace")?;
        let (target, tt) = shape("reconstruction_esc")?;
        if kspace.len() != 3 || !is_complex64(&kt) {
            bail!(
                "{}: `kspace` is {kt:?} of shape {kspace:?}, expected complex64 [slices, H, W] (single-coil)",
                what()
            );
        }
        let f32le = matches!(
            tt,
            Datatype::FloatingPoint {
                size: 4,
                byte_order: ByteOrder::LittleEndian
            }
        );
        if target.len() != 3 || !f32le || target[0] != kspace[0] {
            bail!(
                "{}: `reconstruction_esc` is {tt:?} of shape {target:?}, expected float32 [{}, h, w] (one target per k-space slice)",
                what(),
                kspace[0]
            );
        }
        if target[1] == 0 || target[2] == 0 || kspace[1] == 0 || kspace[2] == 0 {
            bail!(
                "{}: empty slices (kspace {kspace:?}, reconstruction_esc {target:?})",
                what()
            );
        }
        Ok(FastmriVolume {
            path: path.to_path_buf(),
            file,
            kspace,
            target,
        })
    }

    pub fn slices(&self) -> u64 {
        self.kspace[0]
    }

    fn select(s: u64) -> SliceInfo {
        let all = SliceInfoElem::Slice {
            start: 0,
            end: u64::MAX,
            step: 1,
        };
        SliceInfo {
            selections: vec![SliceInfoElem::Index(s), all.clone(), all],
        }
    }

    /// Slice `s`: k-space [H, W, 2] (re, im) and the target [h, w], f32.
    pub fn slice(&self, s: u64) -> Result<(Tensor, Tensor)> {
        let err = |name: &str, e: hdf5_reader::error::Error| {
            anyhow!("{}: reading `{name}`: {e}", self.path.display())
        };
        let k = self
            .file
            .dataset("kspace")
            .map_err(|e| err("kspace", e))?
            .read_slice::<C32>(&Self::select(s))
            .map_err(|e| err("kspace", e))?;
        let t = self
            .file
            .dataset("reconstruction_esc")
            .map_err(|e| err("reconstruction_esc", e))?
            .read_slice::<f32>(&Self::select(s))
            .map_err(|e| err("reconstruction_esc", e))?;
        let (h, w) = (self.kspace[1] as i64, self.kspace[2] as i64);
        let flat: Vec<f32> = k.iter().flat_map(|c| [c.re, c.im]).collect();
        let target: Vec<f32> = t.iter().copied().collect();
        if flat.len() as i64 != 2 * h * w || target.len() as u64 != self.target[1] * self.target[2]
        {
            bail!(
                "{}: slice {s} has the wrong number of values",
                self.path.display()
            );
        }
        Ok((
            Tensor::from_slice(&flat).view([h, w, 2]),
            Tensor::from_slice(&target).view([self.target[1] as i64, self.target[2] as i64]),
        ))
    }
}

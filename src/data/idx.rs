//! IDX files (MNIST, Fashion-MNIST), raw or gzipped: big-endian header
//! `0x00 0x00 <type> <ndim>`, ndim u32 sizes, then the values. Images use magic
//! 2051 (u8, 3 dims), labels 2049 (u8, 1 dim).

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// An IDX array of u8 values.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of u8 values, transparently gunzipping `.gz` content.
pub fn read_u8(path: &Path, expected_ndim: usize) -> Result<IdxArray> {
    let what = path.display();
    let raw = std::fs::read(path).with_context(|| format!("reading IDX file {what}"))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("{what}: gzip data is corrupt or truncated"))?;
        out
    } else {
        raw
    };
    parse_u8(&bytes, expected_ndim).with_context(|| format!("{what}: not a valid IDX file"))
}

/// Parses IDX bytes holding u8 values with `expected_ndim` dimensions.
pub fn parse_u8(bytes: &[u8], expected_ndim: usize) -> Result<IdxArray> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        bail!("expected the IDX magic 0x00 0x00 at the start of the file");
    }
    if bytes[2] != 0x08 {
        bail!(
            "value type code 0x{:02x}, expected 0x08 (unsigned byte)",
            bytes[2]
        );
    }
    let ndim = bytes[3] as usize;
    if ndim != expected_ndim {
        let magic = 0x800 + expected_ndim;
        bail!(
            "{ndim} dimensions (magic {}), expected {expected_ndim} (magic {magic})",
            0x800 + ndim
        );
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        bail!("file ends inside the header");
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let n: usize = dims.iter().product();
    if bytes.len() - header != n {
        bail!(
            "header promises {n} values (dims {dims:?}) but the file holds {}",
            bytes.len() - header
        );
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Builds IDX bytes (for tests and fixtures).
pub fn encode_u8(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let bytes = encode_u8(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let a = parse_u8(&bytes, 3).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data[11], 12);
        assert!(parse_u8(&bytes[..bytes.len() - 1], 3)
            .unwrap_err()
            .to_string()
            .contains("promises 12"));
        assert!(parse_u8(&bytes, 1)
            .unwrap_err()
            .to_string()
            .contains("expected 1"));
        assert!(parse_u8(b"PK\x03\x04", 1).is_err());
    }

    #[test]
    fn reads_gzip() {
        use std::io::Write;
        let bytes = encode_u8(&[3], &[7, 8, 9]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let path = std::env::temp_dir().join(format!("abcond-idx-{}.gz", std::process::id()));
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let a = read_u8(&path, 1).unwrap();
        assert_eq!(a.data, vec![7, 8, 9]);
        std::fs::remove_file(&path).unwrap();
    }
}

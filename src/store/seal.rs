//! Checksums of the text files abcond writes (run.yaml, summary.yaml,
//! report.md, the analysis `.manifest`, SVG figures, Slurm scripts) and the
//! check of its PNG figures.
//!
//! A sealed text file ends with one line that holds the XXH64 (seed 0) of all
//! the text before it, as a comment of the file's language, so that YAML
//! parsers, Markdown renderers, SVG viewers and bash ignore it:
//!
//! - `# checksum: xxh64:<16 hex digits>` (YAML, shell);
//! - `<!-- checksum: xxh64:<16 hex digits> -->` (Markdown, SVG).
//!
//! PNG files carry a CRC-32 in every chunk (the PNG specification's own
//! check); [`check_png`] verifies them and the chunk layout.

use anyhow::{bail, Context, Result};
use std::hash::Hasher;
use std::path::Path;

/// The comment syntax of a file's last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comment {
    /// `# …` (YAML, shell scripts).
    Hash,
    /// `<!-- … -->` (Markdown, SVG/XML).
    Markup,
}

impl Comment {
    /// The comment style of a file by its extension (None: not a sealed kind).
    pub fn for_path(path: &Path) -> Option<Comment> {
        if path.file_name()? == ".manifest" {
            return Some(Comment::Hash);
        }
        match path.extension()?.to_str()? {
            "yaml" | "yml" | "sh" | "sbatch" => Some(Comment::Hash),
            "md" | "svg" => Some(Comment::Markup),
            _ => None,
        }
    }
}

fn sum(body: &str) -> String {
    let mut h = twox_hash::XxHash64::with_seed(0);
    h.write(body.as_bytes());
    format!("xxh64:{:016x}", h.finish())
}

/// `body` (ended by a newline if it has none) followed by its checksum line.
pub fn seal(body: &str, comment: Comment) -> String {
    let mut body = body.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let s = sum(&body);
    match comment {
        Comment::Hash => format!("{body}# checksum: {s}\n"),
        Comment::Markup => format!("{body}<!-- checksum: {s} -->\n"),
    }
}

/// Checks a sealed text: returns the body without its checksum line, or None
/// when the text carries no checksum line (a file written before seals);
/// an error naming `path` when the sum differs.
pub fn unseal<'a>(path: &Path, text: &'a str) -> Result<Option<&'a str>> {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let start = trimmed.rfind('\n').map_or(0, |i| i + 1);
    let last = &trimmed[start..];
    let recorded = last.strip_prefix("# checksum: ").or_else(|| {
        last.strip_prefix("<!-- checksum: ")
            .and_then(|r| r.strip_suffix(" -->"))
    });
    let Some(recorded) = recorded else {
        return Ok(None);
    };
    let body = &text[..start];
    let got = sum(body);
    if recorded.trim() != got {
        bail!(
            "{}: checksum mismatch (last line {}, text {got}): the file was edited or damaged after abcond wrote it; write it again (`abcond analyze`, `abcond slurm`)",
            path.display(),
            recorded.trim()
        );
    }
    Ok(Some(body))
}

/// Writes `body` sealed, atomically.
pub fn write_sealed(path: &Path, body: &str, comment: Comment) -> Result<()> {
    crate::store::atomic::write_bytes(path, seal(body, comment).as_bytes())
}

/// Checks a file abcond wrote by its kind: a sealed text file against its
/// checksum line (`required`: it must have one), a PNG against its chunk
/// CRCs, a Parquet table against `abcond.checksum`. Other kinds are not
/// checked (Ok(false)).
pub fn check_file(path: &Path, required: bool) -> Result<bool> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => check_png(path).map(|()| true),
        Some("parquet") => crate::store::checksum::verify_parquet_file(path),
        _ => match Comment::for_path(path) {
            Some(_) => {
                let text = crate::util::read_text_file(path, "file", 256 << 20)?;
                match unseal(path, &text)? {
                    Some(_) => Ok(true),
                    None if required => bail!(
                        "{}: the checksum line that abcond ends this file with is missing: the file was edited or cut short",
                        path.display()
                    ),
                    None => Ok(false),
                }
            }
            None => Ok(false),
        },
    }
}

/// Checks a PNG file: the signature, every chunk's length and CRC-32, and
/// that it ends with IEND.
pub fn check_png(path: &Path) -> Result<()> {
    let what = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("reading {what}"))?;
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIG) {
        bail!("{what} is not a PNG file (no PNG signature)");
    }
    let mut at = SIG.len();
    loop {
        if at + 12 > bytes.len() {
            bail!("{what}: cut short at byte {at} (no IEND chunk)");
        }
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = at
            .checked_add(12)
            .and_then(|x| x.checked_add(len))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{what}: chunk at byte {at} runs past the end (cut short or damaged)"
                )
            })?;
        let kind = &bytes[at + 4..at + 8];
        let crc = u32::from_be_bytes(bytes[end - 4..end].try_into().unwrap());
        if crc32(&bytes[at + 4..end - 4]) != crc {
            bail!(
                "{what}: CRC mismatch in chunk {:?} at byte {at}: the file is damaged; write it again (`abcond analyze`)",
                String::from_utf8_lossy(kind)
            );
        }
        if kind == b"IEND" {
            if end != bytes.len() {
                bail!("{what}: {} bytes after the IEND chunk", bytes.len() - end);
            }
            return Ok(());
        }
        at = end;
    }
}

/// CRC-32 (ISO-HDLC, the one PNG uses: polynomial 0xEDB88320, reflected).
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_answer() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn sealed_text_round_trips_and_edits_are_caught() {
        let p = Path::new("x.yaml");
        for c in [Comment::Hash, Comment::Markup] {
            let s = seal("a: 1\nb: [2, 3]\n", c);
            assert_eq!(unseal(p, &s).unwrap(), Some("a: 1\nb: [2, 3]\n"));
            let edited = s.replacen("a: 1", "a: 2", 1);
            let e = unseal(p, &edited).unwrap_err();
            assert!(format!("{e}").contains("x.yaml"), "{e}");
            // Cut short: the last line is no longer a checksum line.
            let cut = &s[..s.len() / 2];
            assert_eq!(unseal(p, cut).unwrap(), None);
        }
        // Without a final newline the body gains one.
        let s = seal("x", Comment::Hash);
        assert!(s.starts_with("x\n# checksum: xxh64:"));
        assert_eq!(unseal(p, &s).unwrap(), Some("x\n"));
    }

    #[test]
    fn yaml_with_its_seal_still_parses() {
        let s = seal("a: 1\n", Comment::Hash);
        let v: serde_yaml::Value = serde_yaml::from_str(&s).unwrap();
        assert_eq!(v["a"].as_i64(), Some(1));
    }
}

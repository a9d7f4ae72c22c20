//! `PATH/analysis/` written as a unit. An analysis is built in a private
//! sibling directory (`PATH/.analysis.tmp-<pid>`) and swapped in with one
//! atomic `renameat2(RENAME_EXCHANGE)`, so that the directory is always wholly
//! the old or wholly the new analysis — after a kill, a full disk or an error
//! half way — never a mix of two settings.
//!
//! - `.manifest` in the directory lists what abcond wrote there. Anything else
//!   (a user's notes, a draft paper) is the user's: it is carried over into the
//!   new analysis as a hard link (same file, same name) and never deleted. A
//!   user file that has the name of a new output, or a user directory, is
//!   refused before anything is written. An analysis written before manifests
//!   existed counts its abcond output names (summary.yaml, report.md,
//!   ab_*.parquet, the figures, …) as abcond's.
//! - `PATH/.analysis.lock` keeps two analyses of one path apart: the second
//!   fails at once, naming the first.
//! - Leftovers of a killed analysis (`.analysis.tmp-*`, `.analysis.old-*`: the
//!   private names abcond uses only for this) are removed by the next one.
//!
//! Where the filesystem cannot exchange directories (it returns EINVAL or
//! ENOSYS; NFS before 4.x, some FUSE mounts), the old directory is renamed
//! aside and the new one renamed into place: a kill between the two renames
//! leaves no `analysis/` (and the old one as `.analysis.old-<pid>`), never a
//! mixed one.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = ".manifest";
const MANIFEST_FORMAT: &str = "abcond.analysis-manifest/1";
const TMP_PREFIX: &str = ".analysis.tmp-";
const OLD_PREFIX: &str = ".analysis.old-";

/// The file names of an analysis written before `.manifest` existed.
fn legacy_output(name: &str) -> bool {
    let stem_ext = name.rsplit_once('.');
    let Some((stem, ext)) = stem_ext else {
        return false;
    };
    match ext {
        "yaml" => stem == "summary",
        "md" => stem == "report",
        "parquet" => ["ab_region", "ab_grid", "aiming", "pl", "trends"].contains(&stem),
        "png" | "svg" => ["ab_heatmap", "pl", "aiming", "loss", "trends"]
            .iter()
            .any(|p| stem == *p || stem.starts_with(&format!("{p}-"))),
        _ => false,
    }
}

/// The names abcond wrote into `dir` by its manifest, or by the legacy rule
/// when it has none.
fn written_by_abcond(dir: &Path) -> Result<Option<BTreeSet<String>>> {
    let m = dir.join(MANIFEST);
    if !m.exists() {
        return Ok(None);
    }
    let text = crate::util::read_text_file(&m, "analysis manifest", 1 << 20)?;
    // Its checksum line (manifests written before seals have none).
    crate::store::seal::unseal(&m, &text).with_context(|| {
        format!(
            "the analysis manifest lists which files of {} abcond may replace; remove the directory's abcond files and the manifest by hand, then analyse again",
            dir.display()
        )
    })?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a valid analysis manifest", m.display()))?;
    if v["format"].as_str() != Some(MANIFEST_FORMAT) {
        bail!(
            "{}: format {:?}, expected {MANIFEST_FORMAT:?}",
            m.display(),
            v["format"]
        );
    }
    Ok(Some(
        v["files"]
            .as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

/// The entries of an existing `analysis/` that abcond did not write.
fn foreign_entries(dir: &Path) -> Result<Vec<(String, std::fs::FileType)>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let ours = written_by_abcond(dir)?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let mine = name == MANIFEST
            || match &ours {
                Some(set) => set.contains(&name),
                None => legacy_output(&name),
            }
            // A temporary of an atomic write that a kill left behind.
            || crate::store::atomic::is_temporary(&name);
        if !mine {
            out.push((name, e.file_type()?));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// An analysis being built; [`Staging::commit`] swaps it in.
pub struct Staging {
    /// Where the outputs are written now.
    pub dir: PathBuf,
    /// `PATH/analysis`.
    pub target: PathBuf,
    foreign: Vec<String>,
    _lock: crate::run::lock::RunLock,
}

/// Locks `path` against other analyses, removes what killed analyses left,
/// checks that the user's files in `path/analysis/` can be kept, and creates
/// the staging directory.
pub fn stage(path: &Path) -> Result<Staging> {
    let lock = crate::run::lock::acquire_file(
        &path.join(".analysis.lock"),
        path,
        "analyze",
        &crate::util::command_line(),
    )?;
    for e in std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with(TMP_PREFIX) || name.starts_with(OLD_PREFIX))
            && e.file_type().is_ok_and(|t| t.is_dir())
        {
            std::fs::remove_dir_all(e.path()).with_context(|| {
                format!(
                    "removing {} (left by an interrupted analysis)",
                    e.path().display()
                )
            })?;
        }
    }
    let target = path.join("analysis");
    if target.is_symlink() || (target.exists() && !target.is_dir()) {
        bail!(
            "{} is not a directory abcond wrote (a file or symbolic link): move it away, then analyse again",
            target.display()
        );
    }
    let foreign = foreign_entries(&target)?;
    if let Some((name, _)) = foreign.iter().find(|(_, t)| t.is_dir()) {
        bail!(
            "{} holds a directory abcond did not write ({name}); abcond keeps your files in analysis/ but cannot carry a directory over atomically: move it out of analysis/, then analyse again",
            target.display()
        );
    }
    let dir = path.join(format!("{TMP_PREFIX}{}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Staging {
        dir,
        target,
        foreign: foreign.into_iter().map(|(n, _)| n).collect(),
        _lock: lock,
    })
}

/// `renameat2(from, to, RENAME_EXCHANGE)`: swaps two existing paths atomically.
fn exchange(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(from.as_os_str().as_bytes())?;
    let b = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them
    // relative to the working directory like rename(2).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Staging {
    /// Carries the user's files over, writes the manifest of `written` (paths
    /// in the staging directory) and swaps the staging directory in. Returns
    /// the written paths as they are now (under `analysis/`).
    pub fn commit(self, written: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        for name in &self.foreign {
            if names.contains(name) {
                bail!(
                    "{} was not written by abcond but this analysis writes a file of that name: move it away, then analyse again",
                    self.target.join(name).display()
                );
            }
            let (from, to) = (self.target.join(name), self.dir.join(name));
            std::fs::hard_link(&from, &to).with_context(|| {
                format!(
                    "keeping your file {} in the new analysis (hard link into {})",
                    from.display(),
                    self.dir.display()
                )
            })?;
        }
        let manifest = format!(
            "# What abcond wrote into this analysis directory; any other file here is\n# yours and is kept by later analyses.\nformat: {MANIFEST_FORMAT}\nfiles:\n{}",
            names
                .iter()
                .map(|n| format!("- {}\n", crate::util::yaml_inline(&serde_yaml::Value::from(n.as_str()))))
                .collect::<String>()
        );
        crate::store::seal::write_sealed(
            &self.dir.join(MANIFEST),
            &manifest,
            crate::store::seal::Comment::Hash,
        )?;
        let parent = self.target.parent().unwrap_or(Path::new("."));
        if self.target.exists() {
            match exchange(&self.dir, &self.target) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                    let old = parent.join(format!("{OLD_PREFIX}{}", std::process::id()));
                    std::fs::rename(&self.target, &old).with_context(|| {
                        format!("moving the old {} aside", self.target.display())
                    })?;
                    std::fs::rename(&self.dir, &self.target).with_context(|| {
                        format!("moving the new analysis into {}", self.target.display())
                    })?;
                    std::fs::remove_dir_all(&old)
                        .with_context(|| format!("removing the old analysis {}", old.display()))?;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "swapping the new analysis {} into {}",
                            self.dir.display(),
                            self.target.display()
                        )
                    })
                }
            }
            // The old analysis is now at the staging path: abcond's files
            // and a second link of each of the user's files.
            std::fs::remove_dir_all(&self.dir).with_context(|| {
                format!("removing the old analysis (now {})", self.dir.display())
            })?;
        } else {
            std::fs::rename(&self.dir, &self.target)
                .with_context(|| format!("moving the analysis into {}", self.target.display()))?;
        }
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(written
            .iter()
            .map(|p| self.target.join(p.file_name().unwrap_or_default()))
            .collect())
    }
}

impl Drop for Staging {
    /// An analysis that failed leaves no staging directory behind (a kill
    /// does; the next analysis removes it).
    fn drop(&mut self) {
        if self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

//! Atomic file writes: write a hidden temporary next to the target, fsync it,
//! rename it over the target, fsync the directory. A crash at any point leaves
//! either the old file or the new one — never a file that looks valid but is not.
//! Files that are validated when read and recomputed when invalid may skip the
//! fsyncs ([`Durability::Cache`]).

use anyhow::{Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Prefix of temporary files; they are hidden so that globs like `*.parquet`
/// never pick them up, and `clean_temporaries` removes leftovers of a crash.
pub const TMP_PREFIX: &str = ".tmp-";

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!("{TMP_PREFIX}{name}.{}.{n}", std::process::id()))
}

/// Whether a file name is a temporary of an atomic write (one a crashed
/// writer may leave behind).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(TMP_PREFIX)
}

/// How far a write goes before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file before the rename and the directory after it: even
    /// after a power loss the file is the old one or the complete new one.
    Durable,
    /// The atomic rename only (no fsync, which costs milliseconds per file):
    /// a killed or crashed process still leaves the old file or the complete
    /// new one, but after a power loss or kernel crash the new file may be
    /// missing or empty. Only for files that are recomputed when invalid
    /// (probe parts: their settings fingerprint is in the Parquet footer, the
    /// last bytes written) or synced later, before anything relies on them
    /// (training snapshots: [`sync_under`] before the next checkpoint; a
    /// resume deletes the snapshots after the last checkpoint).
    Cache,
}

/// Writes `path` atomically with the bytes `write` produces into the file.
pub fn write_with<T>(path: &Path, write: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
    write_with_durability(path, Durability::Durable, write)
}

/// [`write_with`] with the given durability.
pub fn write_with_durability<T>(
    path: &Path,
    durability: Durability,
    write: impl FnOnce(&mut File) -> Result<T>,
) -> Result<T> {
    let durable = durability == Durability::Durable;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating directory {}", dir.display()))?;
    let tmp = temp_path(path);
    let result: Result<T> = (|| {
        let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let value = write(&mut file)?;
        if durable {
            file.sync_all()
                .with_context(|| format!("syncing {}", tmp.display()))?;
        }
        drop(file);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        if durable {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Makes files written with [`Durability::Cache`] durable after the fact:
/// fsyncs each file, then every directory from its parent up to `root`
/// (deepest first), so that the files and the directory entries leading to
/// them survive a power loss. One journal commit usually covers them all, so
/// syncing a batch costs about as much as syncing one file. Directory fsync
/// errors are ignored, as in [`write_with`] (some filesystems refuse them).
///
/// The files are reopened to be synced. Linux reports a failed write-back to
/// every descriptor open at the time and to later opens only while the inode
/// stays cached, so an I/O error between the write and this sync can in rare
/// cases go unseen (the limit PostgreSQL's fsync discussion made known);
/// keeping every snapshot's descriptor open until the checkpoint instead would
/// hold one per snapshot.
pub fn sync_under(root: &Path, files: &[PathBuf]) -> Result<()> {
    for f in files {
        File::open(f)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("syncing {}", f.display()))?;
    }
    for d in dirs_to_sync(root, files) {
        if let Ok(f) = File::open(&d) {
            let _ = f.sync_all();
        }
    }
    Ok(())
}

/// The directories [`sync_under`] syncs: each file's parent and its ancestors
/// up to and including `root`, once each, deepest first.
fn dirs_to_sync(root: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let mut d = f.parent();
        while let Some(p) = d.filter(|p| p.starts_with(root)) {
            if !dirs.insert(p.to_path_buf()) {
                break;
            }
            d = p.parent();
        }
    }
    let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |f| {
        use std::io::Write;
        f.write_all(bytes)?;
        Ok(())
    })
}

/// Removes temporaries left by a crashed writer anywhere under `dir`.
pub fn clean_temporaries(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    if !dir.is_dir() {
        return Ok(0);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            removed += clean_temporaries(&p)?;
        } else if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("abcond-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("x.txt");
        write_bytes(&target, b"old").unwrap();
        let err: Result<()> = write_with(&target, |f| {
            use std::io::Write;
            f.write_all(b"half")?;
            anyhow::bail!("crash while writing")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::write(dir.join(".tmp-y.parquet.1.2"), b"junk").unwrap();
        assert_eq!(clean_temporaries(&dir).unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cached_writes_are_synced_later_and_a_missing_one_is_named() {
        let dir = std::env::temp_dir().join(format!("abcond-sync-{}", std::process::id()));
        let files: Vec<PathBuf> = (0..3)
            .map(|k| dir.join(format!("iterates/step={k}/part-0.parquet")))
            .collect();
        for f in &files {
            write_with_durability(f, Durability::Cache, |file| {
                use std::io::Write;
                file.write_all(b"x")?;
                Ok(())
            })
            .unwrap();
        }
        sync_under(&dir, &files).unwrap();
        sync_under(&dir, &[]).unwrap();
        // The new step=K directories, iterates/ (their entries) and the root
        // (the entry of iterates/), deepest first; nothing above the root.
        let mut want: Vec<PathBuf> = files.iter().map(|f| f.parent().unwrap().into()).collect();
        want.extend([dir.join("iterates"), dir.clone()]);
        assert_eq!(dirs_to_sync(&dir, &files), want);
        assert_eq!(
            dirs_to_sync(Path::new("run"), &[PathBuf::from("run/a/b/f")]),
            ["run/a/b", "run/a", "run"].map(PathBuf::from)
        );
        let gone = dir.join("iterates/step=9/part-0.parquet");
        let msg = format!("{:#}", sync_under(&dir, &[gone]).unwrap_err());
        assert!(msg.contains("step=9/part-0.parquet"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The writer lock of a run directory: `<run>/.lock`.
//!
//! Every process that writes a run (`train` for its whole session, `probe`,
//! and `analyze` of one run) holds an exclusive advisory lock on `.lock`
//! (`flock(2)` through `std::fs::File::try_lock`). A second writer fails at
//! once with [`Locked`], which names the holder. The kernel drops the lock when
//! the holder's file descriptor closes, so a killed process (SIGKILL, OOM,
//! Slurm preemption) never leaves a stale lock behind.
//!
//! The file itself is never removed (removing a lock file that others may
//! have opened would let two processes lock different inodes); its content
//! names the last holder and is only meaningful while the file is locked.
//!
//! Limits: the lock is advisory (readers such as `inspect` and `analyze` of an
//! experiment do not take it). On NFSv4 and on Lustre/GPFS mounted with flock
//! support, flock works across nodes; where the filesystem cannot lock at all
//! (ENOLCK, ENOSYS, EOPNOTSUPP, e.g. Lustre with `noflock`), abcond warns and
//! writes unlocked, as before locks existed.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Who holds (or last held) the lock: the content of `.lock`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Holder {
    #[serde(default)]
    pub what: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub since: String,
}

/// Another process holds the run's lock.
#[derive(Debug)]
pub struct Locked {
    pub dir: PathBuf,
    /// The lock file.
    pub lock: PathBuf,
    pub holder: Option<Holder>,
    pub wanted: String,
}

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is locked by another abcond process",
            self.dir.display()
        )?;
        match &self.holder {
            Some(h) => write!(
                f,
                " ({} on host {}, pid {}, since {}: `{}`)",
                if h.what.is_empty() {
                    "writing"
                } else {
                    &h.what
                },
                h.host,
                h.pid,
                h.since,
                h.command
            )?,
            None => write!(
                f,
                " (holder unknown: {} is unreadable)",
                self.lock.display()
            )?,
        }
        write!(
            f,
            "; cannot {} it now. Wait for that process to finish (or stop it: the lock is released when it exits, also when it is killed), then run the command again; it resumes where the run stands",
            self.wanted
        )
    }
}

impl std::error::Error for Locked {}

/// A held run lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: Option<File>,
}

/// The lock file of the run directory `root`.
pub fn path(root: &Path) -> PathBuf {
    root.join(".lock")
}

/// Whether an I/O error means the filesystem cannot lock (not that someone
/// holds the lock).
fn unsupported(e: &std::io::Error) -> bool {
    // ENOLCK 37, ENOSYS 38 (and EOPNOTSUPP 95, mapped to Unsupported) on Linux.
    e.kind() == std::io::ErrorKind::Unsupported || matches!(e.raw_os_error(), Some(37 | 38 | 95))
}

/// Opens (or creates, mode 0644) the lock file `p`, refusing a symbolic
/// link, anything but a regular file, and a file of another user.
fn open_lock_file(p: &Path) -> Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        // O_NONBLOCK: a FIFO planted as `.lock` must not hang the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                anyhow::anyhow!(
                    "{} is a symbolic link: abcond will not write through it (a lock file is a regular file it creates itself); remove the link if this is your run directory",
                    p.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("opening the lock file {}", p.display()))
            }
        })?;
    let m = file
        .metadata()
        .with_context(|| format!("reading {}", p.display()))?;
    if !m.file_type().is_file() {
        anyhow::bail!(
            "{} is not a regular file: abcond will not use it as the run's lock",
            p.display()
        );
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        anyhow::bail!(
            "{} belongs to another user (uid {}, you are {me}): abcond will not write it; is this run directory yours?",
            p.display(),
            m.uid()
        );
    }
    Ok(file)
}

/// Reads the holder recorded in `.lock` (None when empty or unreadable).
pub fn holder(root: &Path) -> Option<Holder> {
    holder_at(&path(root))
}

/// Reads the holder recorded in the lock file `lock`.
pub fn holder_at(lock: &Path) -> Option<Holder> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Not through a link, not blocking on a FIFO, at most 64 KiB.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(lock)
        .ok()?;
    if !file.metadata().ok()?.file_type().is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(1 << 16).read_to_string(&mut text).ok()?;
    serde_yaml::from_str::<Holder>(&text)
        .ok()
        .filter(|h| h.pid != 0)
}

/// Takes the exclusive lock of the run directory `root` for `what` ("train",
/// "probe", "analyze"), recording this process as holder; fails with
/// [`Locked`] at once when another process holds it. `root` must exist unless
/// `create` (a new training run), so that a mistyped path is refused before
/// anything is written.
///
/// The lock file is opened without following a symbolic link (`O_NOFOLLOW`)
/// and must be a regular file owned by this user: run ids are predictable, so
/// on a shared scratch directory someone else could otherwise point `.lock`
/// at another user's file and have abcond overwrite it. It is created with
/// mode 0644.
pub fn acquire(root: &Path, what: &str, command: &str, create: bool) -> Result<RunLock> {
    if create {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating run directory {}", root.display()))?;
    } else if !root.is_dir() {
        anyhow::bail!(
            "{} is not a directory: cannot {what} it (is the path right? `abcond inspect` lists runs)",
            root.display()
        );
    }
    acquire_file(&path(root), root, what, command)
}

/// Takes the exclusive lock `lock` guarding the directory `dir` (see
/// [`acquire`]; `dir` exists).
pub fn acquire_file(lock: &Path, dir: &Path, what: &str, command: &str) -> Result<RunLock> {
    let root = dir;
    let p = lock.to_path_buf();
    let mut file = open_lock_file(&p)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Locked {
                dir: root.to_path_buf(),
                lock: p.clone(),
                holder: holder_at(&p),
                wanted: what.to_string(),
            }
            .into())
        }
        Err(TryLockError::Error(e)) if unsupported(&e) => {
            eprintln!(
                "warning: the filesystem of {} does not support file locks ({e}); writing without the run lock, so make sure no other abcond process writes this run",
                root.display()
            );
            return Ok(RunLock { _file: None });
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", p.display()))
        }
    }
    let me = Holder {
        what: what.to_string(),
        host: crate::util::hostname(),
        pid: std::process::id(),
        command: command.to_string(),
        since: crate::util::now_rfc3339(),
    };
    let text = serde_yaml::to_string(&me)?;
    let written: std::io::Result<()> = (|| {
        file.set_len(0)?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0))?;
        file.write_all(text.as_bytes())?;
        file.flush()
    })();
    written.with_context(|| format!("writing {}", p.display()))?;
    Ok(RunLock { _file: Some(file) })
}

/// The directories a new run is about to create (the run directory and its
/// missing ancestors). Unless [`Created::keep`] is called (the run wrote its
/// run.yaml), dropping it removes them again if they hold nothing but the
/// lock file: a command that fails before the run exists (a config that does
/// not fit the data) leaves no empty run directory behind.
pub struct Created {
    dirs: Vec<PathBuf>,
    keep: bool,
}

impl Created {
    /// Records which of `root` and its ancestors do not exist yet.
    pub fn before(root: &Path) -> Created {
        let mut dirs = Vec::new();
        let mut d = Some(root);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            dirs.push(p.to_path_buf());
            d = p.parent();
        }
        Created { dirs, keep: false }
    }

    /// The run exists now: nothing is removed.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Some(root) = self.dirs.first() {
            let only_lock = std::fs::read_dir(root).is_ok_and(|entries| {
                entries
                    .flatten()
                    .all(|e| e.file_name() == std::ffi::OsStr::new(".lock"))
            });
            if only_lock {
                let _ = std::fs::remove_file(path(root));
            }
        }
        // Deepest first; remove_dir fails (and stops nothing) where a
        // directory is not empty.
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_and_names_holder_then_succeeds_after_release() {
        let dir = std::env::temp_dir().join(format!("abcond-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = acquire(&dir, "train", "abcond train x.yaml", true).unwrap();
        // flock locks belong to the open file description: a second open in
        // the same process conflicts like another process would.
        let e = acquire(&dir, "probe", "abcond probe", false).unwrap_err();
        let locked = e.downcast_ref::<Locked>().expect("a Locked error");
        let h = locked.holder.as_ref().unwrap();
        assert_eq!(h.pid, std::process::id());
        assert_eq!(h.what, "train");
        let msg = e.to_string();
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains("train on host"), "{msg}");
        assert!(msg.contains("`abcond train x.yaml`"), "{msg}");
        assert!(msg.contains("cannot probe it now"), "{msg}");
        drop(first);
        let again = acquire(&dir, "probe", "abcond probe", false).unwrap();
        assert_eq!(holder(&dir).unwrap().what, "probe");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

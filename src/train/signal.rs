//! Signal checkpoints: while a session trains, SIGTERM and SIGUSR1 (what
//! Slurm sends before a time limit with `#SBATCH --signal=B:USR1@N`, and at
//! the limit or on `scancel`) do not kill abcond. The handler only stores the
//! signal number in an atomic (async-signal-safe); the step loop polls it once
//! per step, and on a signal finishes the current step, writes a resume
//! checkpoint at the next step and ends the session with [`Interrupted`]:
//! exit status [`EXIT_CODE`] (75) and a line on stderr saying so. Running the
//! same command again resumes from that checkpoint, bit-identically on CPU.
//!
//! A second signal while the checkpoint is written changes nothing (the flag
//! is already set; every file is written atomically). Outside the step loop
//! (setup before it, the final snapshot and merge after it, probe, analysis)
//! the default disposition is back: the signal kills abcond as before, and a
//! rerun resumes from the last periodic checkpoint (or probes the trained run,
//! the probe resumes from its finished snapshots).

use std::sync::atomic::{AtomicI32, Ordering};

/// The exit status of a session that a signal ended with a checkpoint
/// (EX_TEMPFAIL of sysexits.h: try again). The sbatch script of
/// `abcond slurm` requeues the task on it.
pub const EXIT_CODE: i32 = 75;

/// The signal received since [`Guard::install`], 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    RECEIVED.store(sig, Ordering::SeqCst);
}

/// The signals handled: SIGTERM and SIGUSR1.
const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGUSR1];

/// The handlers of the step loop; dropping it restores the previous
/// dispositions.
pub struct Guard {
    previous: Vec<(libc::c_int, libc::sigaction)>,
    /// The loop took a signal (and stopped with a checkpoint).
    taken: bool,
}

impl Guard {
    /// Installs the handler for SIGTERM and SIGUSR1 (clearing any signal seen
    /// before). A signal the process ignores (`nohup`, `trap '' TERM`) stays
    /// ignored.
    pub fn install() -> Guard {
        RECEIVED.store(0, Ordering::SeqCst);
        let mut previous = Vec::new();
        for sig in SIGNALS {
            // SAFETY: plain sigaction calls with zeroed, then filled structs;
            // the handler only stores into an atomic.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                    continue;
                }
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                if libc::sigaction(sig, &act, std::ptr::null_mut()) == 0 {
                    previous.push((sig, old));
                }
            }
        }
        Guard {
            previous,
            taken: false,
        }
    }

    /// The signal received since [`Guard::install`], if any; the loop then
    /// stops, and a later signal is not delivered again on drop.
    pub fn take(&mut self) -> Option<i32> {
        let s = self.received();
        self.taken |= s.is_some();
        s
    }

    /// The signal received since [`Guard::install`], if any.
    pub fn received(&self) -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (sig, old) in &self.previous {
            // SAFETY: restores the disposition read in install.
            unsafe {
                libc::sigaction(*sig, old, std::ptr::null_mut());
            }
        }
        // A signal that came after the loop's last poll (the final snapshot,
        // the merge): with the old disposition back, deliver it now.
        if let Some(sig) = self.received() {
            RECEIVED.store(0, Ordering::SeqCst);
            if !self.taken && !std::thread::panicking() {
                // SAFETY: raise is always safe to call.
                unsafe {
                    libc::raise(sig);
                }
            }
        }
    }
}

/// The name of a handled signal.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// A session that a signal ended after writing the checkpoint of `step`.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    pub step: u64,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received {} at step {}: checkpoint written, exiting; rerun the same command to resume",
            name(self.signal),
            self.step
        )
    }
}

impl std::error::Error for Interrupted {}

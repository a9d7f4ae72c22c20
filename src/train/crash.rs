//! The crash test hook: `ABCOND_CRASH_AT=<point>` aborts the process at that
//! point, as a crash or a kill would, so that tests can check that a resume
//! recovers. Only a binary built with the cargo feature `test-hooks` (what
//! `./dev test` builds for the tests) reads the variable; the shipped build
//! ignores it, so a stray export cannot abort a real run. Points:
//!
//! - `step:K`: before update K, with the writer's queue as it is (queued files
//!   are lost, as in a real crash);
//! - `step:K:written`: the same once the queued files are written, for tests
//!   that need to know which checkpoint exists;
//! - `before-complete`: the step rows are merged, run.yaml does not yet record
//!   the outcome;
//! - `before-cleanup`: run.yaml records the outcome, the steps parts and the
//!   checkpoint are still there.

use crate::store::writer::Writer;
use anyhow::Result;

/// Whether this build has the test hooks (cargo feature `test-hooks`).
pub const ENABLED: bool = cfg!(feature = "test-hooks");

/// The crash point of this process, read from `ABCOND_CRASH_AT`.
pub struct CrashHook {
    /// The whole value of `ABCOND_CRASH_AT`.
    point: Option<String>,
    /// `step:K` as (K, false), `step:K:written` as (K, true).
    step: Option<(u64, bool)>,
}

impl CrashHook {
    pub fn from_env() -> CrashHook {
        let point = if ENABLED {
            std::env::var("ABCOND_CRASH_AT").ok()
        } else {
            None
        };
        let step = point.as_deref().and_then(|v| {
            let rest = v.strip_prefix("step:")?;
            match rest.strip_suffix(":written") {
                Some(k) => Some((k.parse().ok()?, true)),
                None => Some((rest.parse().ok()?, false)),
            }
        });
        CrashHook { point, step }
    }

    /// Aborts if the crash point is `point` (`before-complete`, `before-cleanup`).
    pub fn at(&self, point: &str) {
        if self.point.as_deref() == Some(point) {
            std::process::abort();
        }
    }

    /// Aborts before update `k` if the crash point is `step:k` (at once) or
    /// `step:k:written` (once `writer` has written what it holds).
    pub fn before_step(&self, k: u64, writer: &mut Writer) -> Result<()> {
        if let Some((_, written)) = self.step.filter(|&(c, _)| c == k) {
            if written {
                std::mem::replace(writer, Writer::new(1)).finish()?;
            }
            std::process::abort();
        }
        Ok(())
    }
}

//! Progress on long work, on stderr. On a terminal: one line redrawn a few
//! times a second. In a batch log (not a terminal): a line at every 10 % and
//! nothing in between, so Slurm logs stay short.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    label: String,
    total: u64,
    start: Instant,
    last_draw: Option<Instant>,
    tty: bool,
    quiet: bool,
    next_decile: u64,
    drawn: bool,
    /// Work done before this process started (a resumed run): counted in
    /// `done/total`, not in the rate or the time left.
    base: u64,
}

impl Progress {
    pub fn new(label: &str, total: u64, quiet: bool) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            start: Instant::now(),
            last_draw: None,
            tty: std::io::stderr().is_terminal(),
            quiet,
            next_decile: 1,
            drawn: false,
            base: 0,
        }
    }

    /// Progress that resumes at `base` of `total`: the rate and the time left
    /// count only the work this process does, and batch lines start at the
    /// next 10 % mark.
    pub fn resumed_at(mut self, base: u64) -> Progress {
        self.base = base.min(self.total);
        if let Some(d) = (self.base * 10).checked_div(self.total) {
            self.next_decile = d + 1;
        }
        self
    }

    /// Reports `done` of `total`; `detail` is only evaluated when a line is drawn.
    pub fn update(&mut self, done: u64, detail: impl FnOnce() -> String) {
        if self.quiet || self.total == 0 {
            return;
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        let now = done.saturating_sub(self.base);
        let eta = if now > 0 {
            elapsed / now as f64 * (self.total.saturating_sub(done)) as f64
        } else {
            f64::NAN
        };
        let pct = 100.0 * done as f64 / self.total as f64;
        if self.tty {
            let due = self
                .last_draw
                .is_none_or(|t| t.elapsed().as_millis() >= 200);
            if due || done == self.total {
                self.last_draw = Some(Instant::now());
                let eta = if eta.is_finite() {
                    crate::util::human_duration(eta)
                } else {
                    "?".into()
                };
                eprint!(
                    "\r\x1b[K{} {done}/{} ({pct:.0}%) {} elapsed, ETA {eta} {}",
                    self.label,
                    self.total,
                    crate::util::human_duration(elapsed),
                    detail()
                );
                let _ = std::io::stderr().flush();
                self.drawn = true;
            }
        } else if done * 10 >= self.next_decile * self.total {
            while done * 10 >= self.next_decile * self.total {
                self.next_decile += 1;
            }
            eprintln!("{}", self.batch_line(done, elapsed, eta, &detail()));
        }
    }

    /// A batch-log line: done/total, elapsed, the rate and the time left.
    fn batch_line(&self, done: u64, elapsed: f64, eta: f64, detail: &str) -> String {
        let pct = 100.0 * done as f64 / self.total as f64;
        let now = done.saturating_sub(self.base);
        let rate = if elapsed > 0.0 && now > 0 {
            let r = now as f64 / elapsed;
            if r >= 10.0 {
                format!("{r:.0}/s")
            } else if r >= 0.1 {
                format!("{r:.2}/s")
            } else {
                format!("{:.1} s each", 1.0 / r)
            }
        } else {
            "-".into()
        };
        let left = if done >= self.total {
            "done".to_string()
        } else if eta.is_finite() {
            format!("ETA {}", crate::util::human_duration(eta))
        } else {
            "ETA ?".to_string()
        };
        format!(
            "{} {done}/{} ({pct:.0}%) after {}, {rate}, {left} {detail}",
            self.label,
            self.total,
            crate::util::human_duration(elapsed)
        )
        .trim_end()
        .to_string()
    }

    /// Ends the progress line (on a terminal) so that normal output follows.
    pub fn finish(&mut self) {
        if self.tty && self.drawn && !self.quiet {
            eprintln!();
            self.drawn = false;
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// A message for the user on stderr, unless quiet.
pub fn note(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines_say_rate_and_time_left() {
        let p = Progress::new("training", 1000, false);
        let line = p.batch_line(100, 20.0, 180.0, "loss 0.5");
        assert_eq!(
            line,
            "training 100/1000 (10%) after 20.0s, 5.00/s, ETA 3m00s loss 0.5"
        );
        let line = p.batch_line(1000, 100.0, 0.0, "");
        assert!(line.ends_with("10/s, done"), "{line}");
        // Resumed at 540 of 1000: 60 steps in 12 s is 5/s, 400 left.
        let resumed = Progress::new("train", 1000, false).resumed_at(540);
        assert_eq!(resumed.next_decile, 6);
        let line = resumed.batch_line(600, 12.0, 80.0, "");
        assert_eq!(line, "train 600/1000 (60%) after 12.0s, 5.00/s, ETA 1m20s");
        let slow = Progress::new("probe", 10, false);
        let line = slow.batch_line(1, 30.0, 270.0, "");
        assert!(line.contains("30.0 s each, ETA 4m30s"), "{line}");
    }
}

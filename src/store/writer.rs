//! A background file writer for the training and probe loops: they hand it
//! owned data (CPU copies of tensors, rows, serialised text) and go on
//! computing while it encodes the files and writes them, each atomically
//! (atomic.rs), with the durability the caller chose.
//!
//! Why: an fsync'd atomic write costs milliseconds however small the file
//! (~4 ms per file on the ext4 disk docs/benchmarks.md was measured on, more on
//! network filesystems), and a checkpoint at a snapshot step writes four files
//! (snapshot, step rows, checkpoint, run.yaml). Written in the loop, that alone
//! cost more than 100 MLP steps; in the background it overlaps the next steps.
//!
//! Guarantees kept: jobs run one at a time in the order they were submitted,
//! and a job returns only when its files are written (and, if durable,
//! synced), so a checkpoint never becomes visible before the snapshots (their
//! batch sync is queued first, src/train/) and step rows it relies on. A
//! crash loses at most the queued files; what is on disk is a consistent
//! prefix, from which training resumes as before. The queue is bounded
//! ([`Writer::new`]): when the disk is slower than the loop, the loop waits
//! (and memory stays bounded). The first failed job stops the writer; its
//! error is returned by the next [`Writer::submit`] or by [`Writer::finish`],
//! which every loop calls before it reads back what it wrote.

use crate::store::tensors::NamedTensor;
use anyhow::{anyhow, Result};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use tch::Device;

/// CPU copies of `tensors` (detached) that later updates of the originals
/// cannot change: what a job may encode while training goes on. On a GPU this
/// is the device-to-host copy the write needed anyway.
pub fn cpu_copies(tensors: Vec<NamedTensor>) -> Vec<NamedTensor> {
    tch::no_grad(|| {
        tensors
            .into_iter()
            .map(|t| {
                let d = t.tensor.detach();
                let tensor = if d.device() == Device::Cpu {
                    d.copy()
                } else {
                    d.to_device(Device::Cpu)
                };
                NamedTensor { tensor, ..t }
            })
            .collect()
    })
}

type Job = Box<dyn FnOnce() -> Result<()> + Send>;

pub struct Writer {
    queue: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Writer {
    /// A writer thread that holds at most `depth` submitted jobs besides the
    /// one it is running.
    pub fn new(depth: usize) -> Writer {
        let (queue, jobs) = sync_channel::<Job>(depth);
        let thread = std::thread::Builder::new()
            .name("abcond-writer".into())
            .spawn(move || {
                for job in jobs {
                    job()?;
                }
                Ok(())
            })
            .expect("starting the file-writer thread");
        Writer {
            queue: Some(queue),
            thread: Some(thread),
        }
    }

    /// Queues `job` (it writes one or more files); blocks while the queue is
    /// full. Fails with the error of an earlier job if one failed.
    pub fn submit(&mut self, job: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| anyhow!("the file writer was already finished"))?;
        if queue.send(Box::new(job)).is_err() {
            // The thread stopped: a job failed. Report that error.
            self.queue = None;
            return Err(self.join().err().unwrap_or_else(|| {
                anyhow!("the file-writer thread stopped without reporting an error")
            }));
        }
        Ok(())
    }

    /// Waits until every submitted file is written; the first error, if any.
    pub fn finish(mut self) -> Result<()> {
        self.queue = None;
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the file-writer thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    /// On an early return (an error elsewhere) the queued files are still
    /// written before the caller goes on; their own errors are dropped then,
    /// since the caller is already failing.
    fn drop(&mut self) {
        self.queue = None;
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn jobs_run_in_order_and_finish_waits_for_them() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut w = Writer::new(2);
        for i in 0..50 {
            let log = log.clone();
            w.submit(move || {
                std::thread::sleep(std::time::Duration::from_micros(100));
                log.lock().unwrap().push(i);
                Ok(())
            })
            .unwrap();
        }
        w.finish().unwrap();
        assert_eq!(*log.lock().unwrap(), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_is_reported_and_later_jobs_do_not_run() {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let mut w = Writer::new(1);
        let mut first_err = None;
        for i in 0..20 {
            let ran = ran.clone();
            let r = w.submit(move || {
                ran.lock().unwrap().push(i);
                if i == 3 {
                    anyhow::bail!("disk full writing job {i}");
                }
                Ok(())
            });
            if let Err(e) = r {
                first_err = Some(e);
                break;
            }
        }
        let err = match first_err {
            Some(e) => e,
            None => w.finish().unwrap_err(),
        };
        assert!(err.to_string().contains("disk full writing job 3"), "{err}");
        assert_eq!(*ran.lock().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn cpu_copies_do_not_follow_the_original() {
        use crate::store::tensors::Role;
        let mut t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let copies = cpu_copies(vec![NamedTensor {
            name: "w".into(),
            role: Role::Param,
            tensor: t.shallow_clone(),
        }]);
        let _ = t.fill_(7.0);
        assert_eq!(
            Vec::<f32>::try_from(&copies[0].tensor).unwrap(),
            vec![1.0, 2.0, 3.0]
        );
        assert_eq!(
            (copies[0].name.as_str(), copies[0].role),
            ("w", Role::Param)
        );
    }

    #[test]
    fn dropping_a_writer_still_writes_what_was_queued() {
        let log = Arc::new(Mutex::new(0));
        {
            let mut w = Writer::new(4);
            for _ in 0..5 {
                let log = log.clone();
                w.submit(move || {
                    *log.lock().unwrap() += 1;
                    Ok(())
                })
                .unwrap();
            }
        }
        assert_eq!(*log.lock().unwrap(), 5);
    }
}

//! Orchestration above single runs: one run through its stages and a
//! sweep's tasks in turn ([`driver`]), a config's `sweep` as a list of tasks
//! ([`sweep`]) and the Slurm job array that runs them ([`slurm`]).

pub mod driver;
pub mod slurm;
pub mod sweep;

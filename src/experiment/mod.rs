//! Orchestration above single runs: a config's `sweep` as a list of tasks
//! ([`sweep`]) and the Slurm job array that runs them ([`slurm`]).

pub mod slurm;
pub mod sweep;

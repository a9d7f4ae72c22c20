//! abcond: measure the loss landscape along neural-network training runs — the
//! quantities behind the alpha-beta condition (Islamov et al., NeurIPS 2024).
//!
//! The pipeline, one module each: [`config`] → [`data`] → [`model`] →
//! [`optim`] → [`train`] (steps and iterate snapshots, via [`store`] into a
//! [`run`] directory) → [`probe`] (landscape rows, Hessian eigenvalues,
//! known-answer references) → [`analysis`] (exact alpha-beta region,
//! PL/Aiming constants, figures, report). [`experiment`] runs many of them
//! (sweeps, Slurm arrays); [`cli`] is the command line. Every phase runs under
//! the reproducibility policy of [`torch::reproducibility`] (libtorch settings
//! through [`torch::ctx`]); [`util`] holds the portable random generator,
//! progress lines and small helpers.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod data;
pub mod experiment;
pub mod model;
pub mod optim;
pub mod probe;
pub mod run;
pub mod store;
pub mod torch;
pub mod train;
pub mod util;

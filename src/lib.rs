//! abcond: measure the loss landscape along neural-network training runs — the
//! quantities behind the alpha-beta condition (Islamov et al., NeurIPS 2024).
//!
//! The pipeline, one module each: [`config`] → [`data`] → [`model`] →
//! [`optim`] → [`train`] (steps and iterate snapshots, via [`store`] into a
//! [`run`] directory) → [`probe`] (landscape rows; [`curvature`]: Hessian
//! eigenvalues) → [`analysis`] (exact
//! alpha-beta region, PL/Aiming constants, figures, report). Every phase runs
//! under the determinism policy of [`reproducibility`] (libtorch settings
//! through [`torch_ctx`]).

pub mod analysis;
pub mod cli;
pub mod config;
pub mod curvature;
pub mod data;
pub mod device;
pub mod inspect;
pub mod model;
pub mod optim;
pub mod probe;
pub mod progress;
pub mod reduce;
pub mod reproducibility;
pub mod rng;
pub mod run;
pub mod slurm;
pub mod store;
pub mod sweep;
pub mod torch_ctx;
pub mod torch_ops;
pub mod train;
pub mod util;

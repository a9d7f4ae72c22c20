//! Parquet storage: atomic writes, tensor files (snapshots, checkpoints) and
//! row tables (steps, landscape, data).

pub mod atomic;
pub mod tables;
pub mod tensors;

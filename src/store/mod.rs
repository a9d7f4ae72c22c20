//! Parquet storage: atomic writes, tensor files (snapshots, checkpoints) and
//! row tables (steps, landscape, data), and the background writer of the
//! training and probe loops.

pub mod atomic;
pub mod label;
pub mod schema;
pub mod tables;
pub mod tensors;
pub mod writer;

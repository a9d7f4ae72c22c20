//! Parquet storage: atomic writes, tensor files (snapshots, checkpoints) and
//! row tables (one definition each: row.rs; steps, landscape, curvature, data), and the background writer of the
//! training and probe loops.

pub mod atomic;
pub mod checksum;
pub mod columns;
pub mod label;
pub mod row;
pub mod schema;
pub mod seal;
pub mod tables;
pub mod tensors;
pub mod writer;

//! The libtorch runtime, mirroring `csrc/`: the global settings tch does not
//! expose ([`ctx`]), hot-path operations and the CPU block cache ([`ops`]),
//! the floating-point types ([`dtype`]), the per-phase reproducibility policy ([`reproducibility`]), device choice
//! ([`device`]) and f64 reductions over parameter lists ([`reduce`]).

pub mod ctx;
pub mod device;
pub mod dtype;
pub mod ops;
pub mod reduce;
pub mod reproducibility;

//! Matrix factorisation (paper Example 4): f_ij(W, S) = ½ (X_ij − w_i·s_j)² with
//! `row_factors` W (k × rows) and `col_factors` S (k × cols); an example is the
//! entry (i, j), given as an int64 pair.

use super::net::{normal, Mode, Net};
use crate::data::Batch;
use tch::nn::Path;
use tch::Tensor;

use crate::config::validate::{at_least_one, positive, Settings};
use serde::{Deserialize, Serialize};

/// `model:` settings of matrix factorisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatFactConfig {
    /// Factorisation rank k.
    pub rank: i64,
    /// Standard deviation of the Gaussian initialisation of both factors.
    pub init_std: f64,
}

impl Default for MatFactConfig {
    fn default() -> Self {
        MatFactConfig {
            rank: 3,
            init_std: 0.3,
        }
    }
}

impl Settings for MatFactConfig {
    fn check(&self, _what: &str) -> anyhow::Result<()> {
        at_least_one("model.rank", self.rank)?;
        positive("model.init_std", self.init_std)
    }
}

pub struct MatrixFactorisation {
    rows: Tensor,
    cols: Tensor,
}

impl MatrixFactorisation {
    pub fn new(
        p: &Path,
        n_rows: i64,
        n_cols: i64,
        rank: i64,
        init_std: f64,
    ) -> MatrixFactorisation {
        let rows = normal(p, "row_factors", &[rank, n_rows], init_std);
        let cols = normal(p, "col_factors", &[rank, n_cols], init_std);
        MatrixFactorisation { rows, cols }
    }
}

impl Net for MatrixFactorisation {
    fn per_example_loss(&self, batch: &Batch, _mode: Mode) -> Tensor {
        let i = batch.x.select(1, 0);
        let j = batch.x.select(1, 1);
        let w = self.rows.index_select(1, &i); // k × B
        let s = self.cols.index_select(1, &j);
        let pred = (w * s).sum_dim_intlist(0, false, self.rows.kind());
        (&batch.y - pred).square() * 0.5
    }
}

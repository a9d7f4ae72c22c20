//! Matrix factorisation (paper Example 4): f_ij(W, S) = ½ (X_ij − w_i·s_j)² with
//! `row_factors` W (k × rows) and `col_factors` S (k × cols); an example is the
//! entry (i, j), given as an int64 pair.

use super::net::{normal, Mode, Net};
use crate::data::Batch;
use crate::model::net::BatchNormPolicy;
use tch::nn::Path;
use tch::Tensor;

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
    // The mode changes nothing in this net.
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        true
    }

    fn per_example_loss(&self, batch: &Batch, _mode: Mode) -> Tensor {
        let i = batch.x.select(1, 0);
        let j = batch.x.select(1, 1);
        let w = self.rows.index_select(1, &i); // k × B
        let s = self.cols.index_select(1, &j);
        let pred = (w * s).sum_dim_intlist(0, false, self.rows.kind());
        (&batch.y - pred).square() * 0.5
    }
}

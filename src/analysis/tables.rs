//! The Parquet tables of `analysis/`: ab_region, ab_grid, aiming, pl and
//! trends (column reference: docs/schemas.md). Each is a row struct declared
//! once with [`row_table!`]; the group's sweep keys (`model.width`, `optim`,
//! …) follow the `group` column, one column per key ([`write_grouped`]).

use super::inputs;
use super::result::Analysis;
use crate::store::atomic::Durability;
use crate::store::row::{row_table, RowTable};
use anyhow::Result;
use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde_yaml::Value;
use std::path::Path;
use std::sync::Arc;

pub const REGION_FORMAT: &str = "abcond.ab_region/1";
pub const GRID_FORMAT: &str = "abcond.ab_grid/1";
pub const AIMING_FORMAT: &str = "abcond.aiming/1";
pub const PL_FORMAT: &str = "abcond.pl/1";
pub const TRENDS_FORMAT: &str = "abcond.trends/1";

row_table! {
    /// The boundary of a group's feasible region, in order: the incoming
    /// direction, the vertices, the outgoing direction.
    pub struct RegionRow {
        pub group: String,
        pub order: i64,
        /// "vertex" or "direction".
        pub kind: String,
        pub alpha: f64,
        pub beta: f64,
    }
}

row_table! {
    /// One cell of a group's slack grid (the heat map).
    pub struct GridRow {
        pub group: String,
        pub alpha: f64,
        pub beta: f64,
        pub in_domain: bool,
        pub min_slack: f64,
        pub violations: i64,
        pub rows: i64,
        pub feasible: bool,
        pub binding_run_id: String,
        pub binding_step: i64,
        pub binding_probe: String,
    }
}

row_table! {
    /// One full-data probe of a run: the Aiming and QCvx quantities.
    pub struct AimingTableRow {
        pub group: String,
        pub run_id: String,
        pub seed: i64,
        pub step: i64,
        pub loss: f64,
        pub loss_ref: f64,
        pub gap: f64,
        pub inner: f64,
        pub grad_norm: f64,
        pub dist: f64,
        pub cos: f64,
        pub angle_deg: f64,
        pub aiming_coef: f64,
        pub qcvx_ratio: Option<f64>,
    }
}

row_table! {
    /// One point of a relaxed-PL curve.
    pub struct PlTableRow {
        pub group: String,
        pub run_id: String,
        pub seed: i64,
        pub step: i64,
        pub delta: f64,
        pub loss: f64,
        pub loss_ref: f64,
        pub grad_norm: f64,
        pub log_2mu: Option<f64>,
    }
}

row_table! {
    /// One group of a sweep: its landmarks and constants.
    #[allow(non_snake_case)]
    pub struct TrendsRow {
        pub group: String,
        pub runs: i64,
        pub rows: i64,
        pub region: String,
        pub alpha_min: Option<f64>,
        pub beta_at_alpha_min: Option<f64>,
        pub alpha_beta_minus_one: Option<f64>,
        pub alpha: Option<f64>,
        pub beta: Option<f64>,
        pub gap: Option<f64>,
        pub ratio: Option<f64>,
        pub ratio_attained: Option<bool>,
        pub sigma_int2: Option<f64>,
        pub beta_sigma_int2: Option<f64>,
        pub bound_term: Option<f64>,
        pub L: Option<f64>,
        pub L_full: Option<f64>,
        pub sgd_bound: Option<f64>,
        pub sgd_bound_applicable: bool,
        pub sgd_observed: Option<f64>,
    }
}

/// The key columns of rows whose groups are `labels`: one per grouping key
/// (the sweep axes), each row taking its group's value — int64 when every
/// group's value is an integer (as in runs.parquet and the landscape
/// columns), float64 when every one is a number, else the one-line YAML text.
/// A single group ("all") has no keys.
fn group_keys<'a>(a: &Analysis, labels: impl Iterator<Item = &'a str>) -> Vec<(Field, ArrayRef)> {
    let Some(first) = a.groups.first() else {
        return Vec::new();
    };
    let by_label: std::collections::HashMap<&str, usize> = a
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.group.label.as_str(), i))
        .collect();
    let index: Vec<usize> = labels.map(|l| by_label[l]).collect();
    let mut out = Vec::new();
    for (k, key) in first.group.values.iter().map(|v| v.0.clone()).enumerate() {
        let all: Vec<&Value> = a.groups.iter().map(|g| &g.group.values[k].1).collect();
        let val = |i: &usize| &a.groups[*i].group.values[k].1;
        let (ty, col): (DataType, ArrayRef) = if all.iter().all(|v| v.as_i64().is_some()) {
            (
                DataType::Int64,
                Arc::new(Int64Array::from_iter_values(
                    index.iter().map(|i| val(i).as_i64().unwrap()),
                )),
            )
        } else if all.iter().all(|v| v.as_f64().is_some()) {
            (
                DataType::Float64,
                Arc::new(Float64Array::from_iter_values(
                    index.iter().map(|i| val(i).as_f64().unwrap()),
                )),
            )
        } else {
            (
                DataType::Utf8,
                Arc::new(StringArray::from_iter_values(
                    index.iter().map(|i| inputs::show(val(i))),
                )),
            )
        };
        out.push((Field::new(key, ty, false), col));
    }
    out
}

/// Writes an analysis table atomically: `rows` (whose first column is
/// `group`, labelled by `label`), the group key columns after `group`,
/// `abcond.format` = `format` and `meta`.
pub fn write_grouped<T: RowTable>(
    path: &Path,
    a: &Analysis,
    rows: &[T],
    label: impl Fn(&T) -> &str,
    format: &str,
    meta: &[(&str, String)],
) -> Result<()> {
    let batch = T::batch(rows)?;
    let keys = group_keys(a, rows.iter().map(label));
    let schema = batch.schema();
    let mut fields: Vec<Field> = vec![schema.field(0).clone()];
    let mut columns: Vec<ArrayRef> = vec![batch.column(0).clone()];
    for (f, c) in keys {
        fields.push(f);
        columns.push(c);
    }
    for i in 1..batch.num_columns() {
        fields.push(schema.field(i).clone());
        columns.push(batch.column(i).clone());
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let mut m = vec![("abcond.format", format.to_string())];
    m.extend(meta.iter().cloned());
    crate::store::tables::write_batch_with(path, &batch, &m, Durability::Durable)
}

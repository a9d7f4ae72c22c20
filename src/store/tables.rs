//! Row tables of a run: `steps.parquet` (one row per training step) and
//! `landscape.parquet` (one row per probed snapshot and minibatch), written
//! atomically with typed columns; column reference: docs/schemas.md.

use crate::store::atomic::Durability;
use crate::store::label::{ProbeLabel, RowSource};
use crate::store::row::{read_rows, row_table, RowTable};
use anyhow::Result;
use arrow::array::{ArrayRef, Float64Array, Int64Array, ListArray, RecordBatch, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Version 4 adds `run_id`, `seed` and `wall_time_s`; version 3 carries a
/// content checksum (store/checksum.rs).
pub const STEPS_FORMAT: &str = "abcond.steps/4";
/// The format before `run_id`, `seed` and `wall_time_s` (read, with them null).
pub const STEPS_FORMAT_V3: &str = "abcond.steps/3";
/// The format before checksums (read without one).
const STEPS_FORMAT_V2: &str = "abcond.steps/2";
/// The format before `step_size` (read, with step_size null).
const STEPS_FORMAT_V1: &str = "abcond.steps/1";
/// Version 3 adds `source` (snapshot or replay rows); version 2 carries a
/// content checksum. Versions 1 and 2 are read, their rows as `snapshot`.
pub const LANDSCAPE_FORMAT: &str = "abcond.landscape/3";
const LANDSCAPE_FORMAT_V2: &str = "abcond.landscape/2";
const LANDSCAPE_FORMAT_V1: &str = "abcond.landscape/1";

row_table! {
/// One optimisation step k: the update x^k → x^{k+1} on minibatch i_k.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// The run's id (run.yaml); null only in rows read from files of
    /// formats before `abcond.steps/4`.
    pub run_id: Option<String>,
    /// The run's seed; null as `run_id`.
    pub seed: Option<i64>,
    pub step: i64,
    pub epoch: i64,
    /// Learning rate of the schedule at step k.
    pub lr: f64,
    /// The scalar step size gamma_k the update used: lr for SGD, the adaptive
    /// gamma_k of SPS_max/DecSPS/NGN/AdaGrad-norm-max, lr/||m_k|| for
    /// normalised SGD; None for Adam-type methods (per-coordinate steps) and for
    /// the step a run diverged at (no update).
    pub step_size: Option<f64>,
    /// f_{i_k}(x^k), the minibatch loss the update differentiated.
    pub loss: f64,
    /// ||∇f_{i_k}(x^k)||, accumulated in f64.
    pub grad_norm: f64,
    /// i_k; stored at least for snapshot steps.
    pub batch_indices: Option<Vec<i64>>,
    /// Seconds of training (step-loop) wall time at the end of step k's
    /// update; not part of the step's record (see [`WallTime`]).
    pub wall_time_s: WallTime,
}
}

/// The wall-clock time a step row was completed at, in seconds of training
/// time: from the start of the run's step loop, continued across resumed
/// sessions (a session resumed at checkpoint c starts from the value of step
/// c − 1), so it never decreases along a run and leaves out the time the run
/// was stopped and each session's setup. None in files of formats before
/// `abcond.steps/4` and for rows re-created by `train --repair` (the original
/// time is lost).
///
/// Wall time is a measurement of the machine, not a result: two runs of the
/// same config never agree on it. So it is no part of a step's record: any
/// two `WallTime`s compare equal, and comparing step rows (resume, repair,
/// replay, the pins) compares everything else bit for bit.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallTime(pub Option<f64>);

impl PartialEq for WallTime {
    fn eq(&self, _: &WallTime) -> bool {
        true
    }
}

impl crate::store::row::Cell for WallTime {
    fn data_type() -> DataType {
        DataType::Float64
    }
    fn nullable() -> bool {
        true
    }
    fn column(values: Vec<Self>) -> ArrayRef {
        Arc::new(Float64Array::from(
            values.into_iter().map(|w| w.0).collect::<Vec<_>>(),
        ))
    }
    fn get(col: &dyn arrow::array::Array, i: usize) -> std::result::Result<Self, String> {
        <Option<f64> as crate::store::row::Cell>::get(col, i).map(WallTime)
    }
    fn absent() -> Option<Self> {
        Some(WallTime(None))
    }
}

row_table! {
/// One probe measurement at snapshot x^k against the reference x^K.
#[derive(Debug, Clone, PartialEq)]
pub struct LandscapeRow {
    pub experiment: String,
    pub run_id: String,
    pub seed: i64,
    pub step: i64,
    /// "train" (the minibatch i_k of step k), "extra-<j>", or "full".
    pub probe: ProbeLabel,
    pub batch_size: i64,
    pub loss_k: f64,
    pub loss_ref: f64,
    pub inner: f64,
    pub grad_norm: f64,
    pub dist: f64,
    pub cos: f64,
    /// K, the step of the reference iterate.
    pub ref_step: i64,
    /// Example indices of the minibatch (null for "full").
    pub batch_indices: Option<Vec<i64>>,
    /// How x^k was obtained: read from its snapshot, or re-created by the
    /// replay probe (`abcond probe --replay`).
    pub source: RowSource,
}
}

fn f64s(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(v))
}
fn i64s(v: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(v))
}

/// Writes one record batch to `path` atomically with the given metadata.
pub fn write_batch(path: &Path, batch: &RecordBatch, meta: &[(&str, String)]) -> Result<()> {
    write_batch_with(path, batch, meta, Durability::Durable)
}

/// [`write_batch`] with the given durability (see [`Durability`]).
pub fn write_batch_with(
    path: &Path,
    batch: &RecordBatch,
    meta: &[(&str, String)],
    durability: Durability,
) -> Result<()> {
    let sum = crate::store::checksum::of_batch(batch, meta)?;
    let mut meta: Vec<(&str, String)> = meta.to_vec();
    meta.push((crate::store::checksum::KEY, sum));
    let kv = meta
        .iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
        .collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    // Each column's description and unit go into its field metadata
    // (store/columns.rs), by the table its format names.
    let format = meta
        .iter()
        .find(|(k, _)| *k == "abcond.format")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let table = crate::store::columns::table_of(format).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: metadata `abcond.format` is {format:?}, expected `abcond.<table>/<version>`",
            path.display()
        )
    })?;
    let described = crate::store::columns::with_descriptions(&batch.schema(), table)?;
    // The metadata goes into the Arrow schema too: pyarrow shows the embedded
    // Arrow schema's metadata (table.schema.metadata), not the Parquet footer's.
    let schema = Arc::new(
        described.with_metadata(
            meta.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    );
    let batch = batch.clone().with_schema(schema.clone())?;
    crate::store::atomic::write_with_durability(path, durability, |file| {
        let mut w = ArrowWriter::try_new(file, schema, Some(props))?;
        w.write(&batch)?;
        w.close()?;
        Ok(())
    })
}

pub fn write_steps(path: &Path, rows: &[StepRow], meta: &[(&str, String)]) -> Result<()> {
    write_rows(path, rows, STEPS_FORMAT, meta, Durability::Durable)
}

pub fn write_landscape(path: &Path, rows: &[LandscapeRow], meta: &[(&str, String)]) -> Result<()> {
    write_rows(path, rows, LANDSCAPE_FORMAT, meta, Durability::Durable)
}

/// Writes a row table atomically with `abcond.format` = `format` and `meta`.
pub fn write_rows<T: RowTable>(
    path: &Path,
    rows: &[T],
    format: &str,
    meta: &[(&str, String)],
    durability: Durability,
) -> Result<()> {
    let mut m = vec![("abcond.format", format.to_string())];
    m.extend(meta.iter().cloned());
    write_batch_with(path, &T::batch(rows)?, &m, durability)
}

/// A probe part (`probe-parts/step=<k>.parquet`): written like
/// [`write_landscape`] but without fsync ([`Durability::Cache`]). A part is a
/// resumable probe's cache: one that a power loss left empty or torn fails
/// the fingerprint check and the snapshot is measured again, and the gathered
/// landscape.parquet is written durably. Saves an fsync (milliseconds) per
/// snapshot.
pub fn write_probe_part(path: &Path, rows: &[LandscapeRow], meta: &[(&str, String)]) -> Result<()> {
    write_rows(path, rows, LANDSCAPE_FORMAT, meta, Durability::Cache)
}

// --- sweep columns ---

/// A typed column of YAML values, as the swept values are stored (runs.parquet,
/// the extra landscape columns): int64 when every value is an integer,
/// float64 when every value is a number, bool when every value is a boolean,
/// else utf8 (strings as they are, other values as flow YAML). Nulls (`~`)
/// stay null and do not decide the type; an all-null column is utf8.
pub fn value_column(values: &[serde_yaml::Value]) -> ArrayRef {
    typed_column(values, column_type(values))
}

/// The column type of a list of YAML values (nulls aside): `int64` when all are
/// integers, `float64` when all are numbers, `bool` when all are booleans, else
/// `utf8`.
pub fn column_type(values: &[serde_yaml::Value]) -> &'static str {
    let set: Vec<&serde_yaml::Value> = values.iter().filter(|v| !v.is_null()).collect();
    if set.is_empty() {
        "utf8"
    } else if set.iter().all(|v| v.as_i64().is_some()) {
        "int64"
    } else if set.iter().all(|v| v.as_f64().is_some()) {
        "float64"
    } else if set.iter().all(|v| v.as_bool().is_some()) {
        "bool"
    } else {
        "utf8"
    }
}

/// `values` as a column of type `ty` (see [`column_type`]); a value that does
/// not fit the type is null (e.g. `~`).
pub fn typed_column(values: &[serde_yaml::Value], ty: &str) -> ArrayRef {
    use serde_yaml::Value;
    if ty == "int64" {
        Arc::new(values.iter().map(Value::as_i64).collect::<Int64Array>())
    } else if ty == "float64" {
        Arc::new(values.iter().map(Value::as_f64).collect::<Float64Array>())
    } else if ty == "bool" {
        Arc::new(
            values
                .iter()
                .map(Value::as_bool)
                .collect::<arrow::array::BooleanArray>(),
        )
    } else {
        Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(crate::util::yaml_inline(other)),
                })
                .collect::<StringArray>(),
        )
    }
}

/// Appends constant columns (one value per name, repeated on every row) to a
/// batch; a name the batch has already (`seed`) is left as it is.
pub fn with_constant_columns(
    batch: RecordBatch,
    columns: &[(String, serde_yaml::Value)],
    types: &BTreeMap<String, String>,
) -> Result<RecordBatch> {
    if columns.is_empty() {
        return Ok(batch);
    }
    let n = batch.num_rows();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, value) in columns {
        // `seed` is a fixed landscape column already.
        if fields.iter().any(|f| f.name() == name) {
            continue;
        }
        let values = vec![value.clone(); n];
        let a = match types.get(name) {
            Some(ty) => typed_column(&values, ty),
            None => value_column(&values),
        };
        fields.push(Field::new(name, a.data_type().clone(), true));
        arrays.push(a);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// [`write_landscape`] plus the run's swept values as extra typed columns after
/// the fixed ones (named by the dotted key, e.g. `model.width`).
pub fn write_landscape_swept(
    path: &Path,
    rows: &[LandscapeRow],
    meta: &[(&str, String)],
    swept: &[(String, serde_yaml::Value)],
    types: &BTreeMap<String, String>,
) -> Result<()> {
    let mut m = vec![("abcond.format", LANDSCAPE_FORMAT.to_string())];
    m.extend(meta.iter().cloned());
    write_batch(
        path,
        &with_constant_columns(LandscapeRow::batch(rows)?, swept, types)?,
        &m,
    )
}

/// Reads steps.parquet (the current format, or an older one: abcond.steps/3
/// without `run_id`, `seed` and `wall_time_s`, /2 without a checksum, /1
/// without `step_size`; the columns a format lacks read as null).
pub fn read_steps(path: &Path) -> Result<(Vec<StepRow>, BTreeMap<String, String>)> {
    read_rows(
        path,
        &[
            STEPS_FORMAT,
            STEPS_FORMAT_V3,
            STEPS_FORMAT_V2,
            STEPS_FORMAT_V1,
        ],
    )
}

pub fn read_landscape(path: &Path) -> Result<(Vec<LandscapeRow>, BTreeMap<String, String>)> {
    read_rows(
        path,
        &[LANDSCAPE_FORMAT, LANDSCAPE_FORMAT_V2, LANDSCAPE_FORMAT_V1],
    )
}

pub const DATA_FORMAT: &str = "abcond.data/1";

/// Writes `data.parquet`: `index` (the example index used in batch_indices),
/// `source_index` (row in the source files), `label` (classes), `target`
/// (regression targets) and `features` (synthetic data only).
pub fn write_data_table(
    path: &Path,
    source_index: &[i64],
    labels: Option<&[i64]>,
    targets: Option<&[f64]>,
    features: Option<&[Vec<f64>]>,
    meta: &[(&str, String)],
) -> Result<()> {
    let n = source_index.len();
    let mut fields = vec![
        Field::new("index", DataType::Int64, false),
        Field::new("source_index", DataType::Int64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![i64s(0..n as i64), i64s(source_index.iter().copied())];
    if let Some(l) = labels {
        fields.push(Field::new("label", DataType::Int64, false));
        columns.push(i64s(l.iter().copied()));
    }
    if let Some(t) = targets {
        fields.push(Field::new("target", DataType::Float64, false));
        columns.push(f64s(t.iter().copied()));
    }
    if let Some(f) = features {
        let item = Arc::new(Field::new("item", DataType::Float64, false));
        fields.push(Field::new("features", DataType::List(item.clone()), false));
        columns.push(Arc::new(ListArray::new(
            item,
            OffsetBuffer::from_lengths(f.iter().map(Vec::len)),
            Arc::new(Float64Array::from_iter_values(f.iter().flatten().copied())),
            None,
        )));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let mut m = vec![("abcond.format", DATA_FORMAT.to_string())];
    m.extend(meta.iter().cloned());
    write_batch(path, &batch, &m)
}

pub const VOCAB_FORMAT: &str = "abcond.vocab/1";

/// Writes `vocab.parquet` of a `text` data set: `id` (the token id the
/// model sees), `token` (the word) and `count` (its occurrences in the
/// training text; `<unk>` counts the words it stands for).
pub fn write_vocab(path: &Path, vocab: &[(String, u64)]) -> Result<()> {
    let fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("token", DataType::Utf8, false),
        Field::new("count", DataType::Int64, false),
    ];
    let columns: Vec<ArrayRef> = vec![
        i64s(0..vocab.len() as i64),
        Arc::new(StringArray::from_iter_values(
            vocab.iter().map(|(w, _)| w.as_str()),
        )),
        i64s(vocab.iter().map(|(_, c)| *c as i64)),
    ];
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    write_batch(path, &batch, &[("abcond.format", VOCAB_FORMAT.to_string())])
}

pub const CLOUD_FORMAT: &str = "abcond.cloud/1";

/// Writes `cloud.parquet`: the probe's point cloud, `point` (the `step` of its
/// landscape rows), `x` and its projection `x_p` onto S.
pub fn write_cloud(
    path: &Path,
    xs: &[Vec<f64>],
    projections: &[Vec<f64>],
    meta: &[(&str, String)],
) -> Result<()> {
    let item = Arc::new(Field::new("item", DataType::Float64, false));
    let list = |v: &[Vec<f64>]| -> ArrayRef {
        Arc::new(ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths(v.iter().map(Vec::len)),
            Arc::new(Float64Array::from_iter_values(v.iter().flatten().copied())),
            None,
        ))
    };
    let fields = vec![
        Field::new("point", DataType::Int64, false),
        Field::new("x", DataType::List(item.clone()), false),
        Field::new("x_p", DataType::List(item.clone()), false),
    ];
    let columns = vec![i64s(0..xs.len() as i64), list(xs), list(projections)];
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let mut m = vec![("abcond.format", CLOUD_FORMAT.to_string())];
    m.extend(meta.iter().cloned());
    write_batch(path, &batch, &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_landscape_round_trip() {
        let dir = std::env::temp_dir().join(format!("abcond-tables-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let steps = vec![
            StepRow {
                run_id: Some("r".into()),
                seed: Some(7),
                step: 0,
                epoch: 0,
                lr: 0.1,
                step_size: Some(0.1),
                loss: 2.3,
                grad_norm: 1.5,
                batch_indices: Some(vec![3, 1, 2]),
                wall_time_s: WallTime(Some(0.25)),
            },
            StepRow {
                run_id: Some("r".into()),
                seed: Some(7),
                step: 1,
                epoch: 0,
                lr: 0.1,
                step_size: None,
                loss: f64::NAN,
                grad_norm: 1.0,
                batch_indices: None,
                wall_time_s: WallTime(None),
            },
        ];
        let p = dir.join("steps.parquet");
        write_steps(&p, &steps, &[("abcond.run_id", "r".into())]).unwrap();
        let (back, meta) = read_steps(&p).unwrap();
        assert_eq!(meta["abcond.run_id"], "r");
        assert_eq!(back[0], steps[0]);
        assert!(back[1].loss.is_nan() && back[1].batch_indices.is_none());
        assert_eq!(back[1].step_size, None);
        let row = LandscapeRow {
            experiment: "e".into(),
            run_id: "r".into(),
            seed: 3,
            step: 10,
            probe: ProbeLabel::Full,
            batch_size: 100,
            loss_k: 1.0,
            loss_ref: 0.5,
            inner: 0.25,
            grad_norm: 2.0,
            dist: 3.0,
            cos: 0.25 / 6.0,
            ref_step: 99,
            batch_indices: None,
            source: RowSource::Replay,
        };
        let p = dir.join("landscape.parquet");
        write_landscape(&p, std::slice::from_ref(&row), &[]).unwrap();
        assert_eq!(read_landscape(&p).unwrap().0, vec![row.clone()]);
        // a steps file is not a landscape file
        let err = read_landscape(&dir.join("steps.parquet"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("abcond.landscape/3"), "{err}");
        // format 2 (no `source` column) is still read: its rows are snapshot rows
        let batch = LandscapeRow::batch(std::slice::from_ref(&row)).unwrap();
        let keep: Vec<usize> = (0..batch.num_columns() - 1).collect();
        let v2 = dir.join("landscape-v2.parquet");
        write_batch(
            &v2,
            &batch.project(&keep).unwrap(),
            &[("abcond.format", LANDSCAPE_FORMAT_V2.to_string())],
        )
        .unwrap();
        let back = read_landscape(&v2).unwrap().0;
        assert_eq!(back[0].source, RowSource::Snapshot);
        assert_eq!(back[0].inner, row.inner);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Version 2 carries a content checksum.
pub const CURVATURE_FORMAT: &str = "abcond.curvature/2";
const CURVATURE_FORMAT_V1: &str = "abcond.curvature/1";

row_table! {
/// The Hessian's extreme eigenvalues for one probe loss at snapshot x^k
/// (src/probe/curvature.rs): a row of `curvature.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvatureRow {
    pub experiment: String,
    pub run_id: String,
    pub seed: i64,
    pub step: i64,
    /// "train", "extra-<j>" or "full", as in landscape.parquet.
    pub probe: ProbeLabel,
    pub batch_size: i64,
    /// The eigenvalue of largest magnitude, with its sign.
    pub eigenvalue: f64,
    pub iterations: i64,
    /// ||Hv − λv|| / |λ| at the last iterate v.
    pub residual: f64,
    pub converged: bool,
    /// The largest and smallest eigenvalue: one of them is `eigenvalue`, the
    /// other comes from the shifted iteration (null without `both_ends`).
    pub lambda_max: Option<f64>,
    pub lambda_min: Option<f64>,
    pub other_iterations: Option<i64>,
    pub other_residual: Option<f64>,
    pub other_converged: Option<bool>,
    /// Hessian-vector products spent on this row.
    pub hvps: i64,
    /// Example indices (null for "full" over all data).
    pub batch_indices: Option<Vec<i64>>,
}
}

/// `eval.parquet`: the held-out evaluation (`probe.eval`).
pub const EVAL_FORMAT: &str = "abcond.eval/1";

row_table! {
    /// The loss and accuracy of snapshot x^k on the data set's held-out test
    /// split (src/probe/eval.rs): a row of `eval.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct EvalRow {
        pub run_id: String,
        pub seed: i64,
        pub step: i64,
        pub split: String,
        pub examples: i64,
        pub loss: f64,
        pub accuracy: Option<f64>,
    }
}

pub fn write_eval(path: &Path, rows: &[EvalRow], meta: &[(&str, String)]) -> Result<()> {
    write_rows(path, rows, EVAL_FORMAT, meta, Durability::Durable)
}

pub fn read_eval(path: &Path) -> Result<(Vec<EvalRow>, BTreeMap<String, String>)> {
    read_rows(path, &[EVAL_FORMAT])
}

pub fn write_curvature(path: &Path, rows: &[CurvatureRow], meta: &[(&str, String)]) -> Result<()> {
    write_rows(path, rows, CURVATURE_FORMAT, meta, Durability::Durable)
}

pub fn read_curvature(path: &Path) -> Result<(Vec<CurvatureRow>, BTreeMap<String, String>)> {
    read_rows(path, &[CURVATURE_FORMAT, CURVATURE_FORMAT_V1])
}

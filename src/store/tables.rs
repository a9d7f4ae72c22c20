//! Row tables of a run: `steps.parquet` (one row per training step) and
//! `landscape.parquet` (one row per probed snapshot and minibatch), written
//! atomically with typed columns; see README.md, section Schemas, for the column reference.

use crate::store::atomic::Durability;
use crate::store::label::ProbeLabel;
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub const STEPS_FORMAT: &str = "abcond.steps/2";
/// The format before `step_size` (read, with step_size null).
const STEPS_FORMAT_V1: &str = "abcond.steps/1";
pub const LANDSCAPE_FORMAT: &str = "abcond.landscape/1";

/// One optimisation step k: the update x^k → x^{k+1} on minibatch i_k.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
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
}

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
}

fn list_i64_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int64, false))
}

fn list_i64(rows: impl Iterator<Item = Option<Vec<i64>>>) -> ListArray {
    let mut lengths = Vec::new();
    let mut valid = Vec::new();
    let mut values = Vec::new();
    for r in rows {
        match r {
            Some(v) => {
                lengths.push(v.len());
                valid.push(true);
                values.extend(v);
            }
            None => {
                lengths.push(0);
                valid.push(false);
            }
        }
    }
    let nulls = if valid.iter().all(|v| *v) {
        None
    } else {
        Some(NullBuffer::from(valid))
    };
    ListArray::new(
        list_i64_field(),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(Int64Array::from(values)),
        nulls,
    )
}

pub fn steps_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("step", DataType::Int64, false),
        Field::new("epoch", DataType::Int64, false),
        Field::new("lr", DataType::Float64, false),
        Field::new("step_size", DataType::Float64, true),
        Field::new("loss", DataType::Float64, false),
        Field::new("grad_norm", DataType::Float64, false),
        Field::new("batch_indices", DataType::List(list_i64_field()), true),
    ]))
}

pub fn landscape_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("experiment", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("seed", DataType::Int64, false),
        Field::new("step", DataType::Int64, false),
        Field::new("probe", DataType::Utf8, false),
        Field::new("batch_size", DataType::Int64, false),
        Field::new("loss_k", DataType::Float64, false),
        Field::new("loss_ref", DataType::Float64, false),
        Field::new("inner", DataType::Float64, false),
        Field::new("grad_norm", DataType::Float64, false),
        Field::new("dist", DataType::Float64, false),
        Field::new("cos", DataType::Float64, false),
        Field::new("ref_step", DataType::Int64, false),
        Field::new("batch_indices", DataType::List(list_i64_field()), true),
    ]))
}

fn f64s(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(v))
}
fn i64s(v: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(v))
}
fn strs<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

fn labels(v: impl Iterator<Item = ProbeLabel>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v.map(|l| l.to_string())))
}

/// A `probe` cell read back: one of the labels abcond writes.
fn label(path: &Path, cell: &str) -> Result<ProbeLabel> {
    cell.parse()
        .map_err(|e| anyhow::anyhow!("{}: column `probe`: {e}", path.display()))
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
    let kv = meta
        .iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
        .collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    // The metadata goes into the Arrow schema too: pyarrow shows the embedded
    // Arrow schema's metadata (table.schema.metadata), not the Parquet footer's.
    let schema = Arc::new(
        batch.schema().as_ref().clone().with_metadata(
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

pub fn steps_batch(rows: &[StepRow]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        steps_schema(),
        vec![
            i64s(rows.iter().map(|r| r.step)),
            i64s(rows.iter().map(|r| r.epoch)),
            f64s(rows.iter().map(|r| r.lr)),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.step_size))),
            f64s(rows.iter().map(|r| r.loss)),
            f64s(rows.iter().map(|r| r.grad_norm)),
            Arc::new(list_i64(rows.iter().map(|r| r.batch_indices.clone()))),
        ],
    )?)
}

pub fn write_steps(path: &Path, rows: &[StepRow], meta: &[(&str, String)]) -> Result<()> {
    let mut m = vec![("abcond.format", STEPS_FORMAT.to_string())];
    m.extend(meta.iter().cloned());
    write_batch(path, &steps_batch(rows)?, &m)
}

pub fn landscape_batch(rows: &[LandscapeRow]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        landscape_schema(),
        vec![
            strs(rows.iter().map(|r| r.experiment.as_str())),
            strs(rows.iter().map(|r| r.run_id.as_str())),
            i64s(rows.iter().map(|r| r.seed)),
            i64s(rows.iter().map(|r| r.step)),
            labels(rows.iter().map(|r| r.probe)),
            i64s(rows.iter().map(|r| r.batch_size)),
            f64s(rows.iter().map(|r| r.loss_k)),
            f64s(rows.iter().map(|r| r.loss_ref)),
            f64s(rows.iter().map(|r| r.inner)),
            f64s(rows.iter().map(|r| r.grad_norm)),
            f64s(rows.iter().map(|r| r.dist)),
            f64s(rows.iter().map(|r| r.cos)),
            i64s(rows.iter().map(|r| r.ref_step)),
            Arc::new(list_i64(rows.iter().map(|r| r.batch_indices.clone()))),
        ],
    )?)
}

pub fn write_landscape(path: &Path, rows: &[LandscapeRow], meta: &[(&str, String)]) -> Result<()> {
    let mut m = vec![("abcond.format", LANDSCAPE_FORMAT.to_string())];
    m.extend(meta.iter().cloned());
    write_batch(path, &landscape_batch(rows)?, &m)
}

/// A probe part (`probe-parts/step=<k>.parquet`): written like
/// [`write_landscape`] but without fsync ([`Durability::Cache`]). A part is a
/// resumable probe's cache: one that a power loss left empty or torn fails
/// the fingerprint check and the snapshot is measured again, and the gathered
/// landscape.parquet is written durably. Saves an fsync (milliseconds) per
/// snapshot.
pub fn write_probe_part(path: &Path, rows: &[LandscapeRow], meta: &[(&str, String)]) -> Result<()> {
    let mut m = vec![("abcond.format", LANDSCAPE_FORMAT.to_string())];
    m.extend(meta.iter().cloned());
    write_batch_with(path, &landscape_batch(rows)?, &m, Durability::Cache)
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
        &with_constant_columns(landscape_batch(rows)?, swept, types)?,
        &m,
    )
}

/// A table read back: its batches (schema checked) and abcond metadata.
pub struct Table {
    pub batches: Vec<RecordBatch>,
    pub meta: BTreeMap<String, String>,
}

/// Reads a table, checking its format tag and that it has `schema`'s columns.
pub fn read_table(path: &Path, format: &str, schema: &Schema) -> Result<Table> {
    read_table_of(path, &[format], schema)
}

/// Like [`read_table`], accepting any of `formats`.
fn read_table_of(path: &Path, formats: &[&str], schema: &Schema) -> Result<Table> {
    let format = formats[0];
    let what = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("opening {what}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        anyhow!("{what} is not a readable Parquet file (truncated or corrupt?): {e}")
    })?;
    let meta =
        crate::store::schema::kv_map(builder.metadata().file_metadata().key_value_metadata());
    match meta.get("abcond.format") {
        Some(f) if formats.contains(&f.as_str()) => {}
        other => bail!(
            "{what}: metadata `abcond.format` is {other:?}, expected {format:?} (is this the right file?)"
        ),
    }
    crate::store::schema::check_columns(path, builder.schema(), schema)?;
    let batches = builder
        .build()?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{what}: reading rows failed (truncated or corrupt?): {e}"))?;
    Ok(Table { batches, meta })
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .expect("schema checked")
}

fn list_row(l: &ListArray, i: usize) -> Option<Vec<i64>> {
    if l.is_null(i) {
        None
    } else {
        Some(
            l.value(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("schema checked")
                .values()
                .to_vec(),
        )
    }
}

pub fn read_steps(path: &Path) -> Result<(Vec<StepRow>, BTreeMap<String, String>)> {
    let v1 = Schema::new(
        steps_schema()
            .fields()
            .iter()
            .filter(|f| f.name() != "step_size")
            .cloned()
            .collect::<Vec<_>>(),
    );
    let t = read_table_of(path, &[STEPS_FORMAT, STEPS_FORMAT_V1], &v1)?;
    let current = t.meta.get("abcond.format").map(String::as_str) == Some(STEPS_FORMAT);
    let mut rows = Vec::new();
    for b in &t.batches {
        let step = col::<Int64Array>(b, "step");
        let epoch = col::<Int64Array>(b, "epoch");
        let lr = col::<Float64Array>(b, "lr");
        let step_size = b
            .column_by_name("step_size")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>());
        if current && step_size.is_none() {
            bail!(
                "{}: column `step_size` (Float64) is missing",
                path.display()
            );
        }
        let loss = col::<Float64Array>(b, "loss");
        let gn = col::<Float64Array>(b, "grad_norm");
        let bi = col::<ListArray>(b, "batch_indices");
        for i in 0..b.num_rows() {
            rows.push(StepRow {
                step: step.value(i),
                epoch: epoch.value(i),
                lr: lr.value(i),
                step_size: step_size.and_then(|c| (!c.is_null(i)).then(|| c.value(i))),
                loss: loss.value(i),
                grad_norm: gn.value(i),
                batch_indices: list_row(bi, i),
            });
        }
    }
    Ok((rows, t.meta))
}

pub fn read_landscape(path: &Path) -> Result<(Vec<LandscapeRow>, BTreeMap<String, String>)> {
    let t = read_table(path, LANDSCAPE_FORMAT, &landscape_schema())?;
    let mut rows = Vec::new();
    for b in &t.batches {
        let s = |n| col::<StringArray>(b, n);
        let i = |n| col::<Int64Array>(b, n);
        let f = |n| col::<Float64Array>(b, n);
        let bi = col::<ListArray>(b, "batch_indices");
        for r in 0..b.num_rows() {
            rows.push(LandscapeRow {
                experiment: s("experiment").value(r).to_string(),
                run_id: s("run_id").value(r).to_string(),
                seed: i("seed").value(r),
                step: i("step").value(r),
                probe: label(path, s("probe").value(r))?,
                batch_size: i("batch_size").value(r),
                loss_k: f("loss_k").value(r),
                loss_ref: f("loss_ref").value(r),
                inner: f("inner").value(r),
                grad_norm: f("grad_norm").value(r),
                dist: f("dist").value(r),
                cos: f("cos").value(r),
                ref_step: i("ref_step").value(r),
                batch_indices: list_row(bi, r),
            });
        }
    }
    Ok((rows, t.meta))
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
                step: 0,
                epoch: 0,
                lr: 0.1,
                step_size: Some(0.1),
                loss: 2.3,
                grad_norm: 1.5,
                batch_indices: Some(vec![3, 1, 2]),
            },
            StepRow {
                step: 1,
                epoch: 0,
                lr: 0.1,
                step_size: None,
                loss: f64::NAN,
                grad_norm: 1.0,
                batch_indices: None,
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
        };
        let p = dir.join("landscape.parquet");
        write_landscape(&p, std::slice::from_ref(&row), &[]).unwrap();
        assert_eq!(read_landscape(&p).unwrap().0, vec![row]);
        // a steps file is not a landscape file
        let err = read_landscape(&dir.join("steps.parquet"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("abcond.landscape/1"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

pub const CURVATURE_FORMAT: &str = "abcond.curvature/1";

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

pub fn curvature_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("experiment", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("seed", DataType::Int64, false),
        Field::new("step", DataType::Int64, false),
        Field::new("probe", DataType::Utf8, false),
        Field::new("batch_size", DataType::Int64, false),
        Field::new("eigenvalue", DataType::Float64, false),
        Field::new("iterations", DataType::Int64, false),
        Field::new("residual", DataType::Float64, false),
        Field::new("converged", DataType::Boolean, false),
        Field::new("lambda_max", DataType::Float64, true),
        Field::new("lambda_min", DataType::Float64, true),
        Field::new("other_iterations", DataType::Int64, true),
        Field::new("other_residual", DataType::Float64, true),
        Field::new("other_converged", DataType::Boolean, true),
        Field::new("hvps", DataType::Int64, false),
        Field::new("batch_indices", DataType::List(list_i64_field()), true),
    ]))
}

pub fn write_curvature(path: &Path, rows: &[CurvatureRow], meta: &[(&str, String)]) -> Result<()> {
    use arrow::array::BooleanArray;
    let batch = RecordBatch::try_new(
        curvature_schema(),
        vec![
            strs(rows.iter().map(|r| r.experiment.as_str())),
            strs(rows.iter().map(|r| r.run_id.as_str())),
            i64s(rows.iter().map(|r| r.seed)),
            i64s(rows.iter().map(|r| r.step)),
            labels(rows.iter().map(|r| r.probe)),
            i64s(rows.iter().map(|r| r.batch_size)),
            f64s(rows.iter().map(|r| r.eigenvalue)),
            i64s(rows.iter().map(|r| r.iterations)),
            f64s(rows.iter().map(|r| r.residual)),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.converged).collect::<Vec<_>>(),
            )),
            Arc::new(rows.iter().map(|r| r.lambda_max).collect::<Float64Array>()),
            Arc::new(rows.iter().map(|r| r.lambda_min).collect::<Float64Array>()),
            Arc::new(
                rows.iter()
                    .map(|r| r.other_iterations)
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| r.other_residual)
                    .collect::<Float64Array>(),
            ),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.other_converged).collect::<Vec<_>>(),
            )),
            i64s(rows.iter().map(|r| r.hvps)),
            Arc::new(list_i64(rows.iter().map(|r| r.batch_indices.clone()))),
        ],
    )?;
    let mut m = vec![("abcond.format", CURVATURE_FORMAT.to_string())];
    m.extend(meta.iter().cloned());
    write_batch(path, &batch, &m)
}

pub fn read_curvature(path: &Path) -> Result<(Vec<CurvatureRow>, BTreeMap<String, String>)> {
    use arrow::array::BooleanArray;
    let t = read_table(path, CURVATURE_FORMAT, &curvature_schema())?;
    let mut rows = Vec::new();
    for b in &t.batches {
        let s = |n| col::<StringArray>(b, n);
        let i = |n| col::<Int64Array>(b, n);
        let f = |n| col::<Float64Array>(b, n);
        let bo = |n| col::<BooleanArray>(b, n);
        let fo = |n, r| (!f(n).is_null(r)).then(|| f(n).value(r));
        let bi = col::<ListArray>(b, "batch_indices");
        for r in 0..b.num_rows() {
            rows.push(CurvatureRow {
                experiment: s("experiment").value(r).to_string(),
                run_id: s("run_id").value(r).to_string(),
                seed: i("seed").value(r),
                step: i("step").value(r),
                probe: label(path, s("probe").value(r))?,
                batch_size: i("batch_size").value(r),
                eigenvalue: f("eigenvalue").value(r),
                iterations: i("iterations").value(r),
                residual: f("residual").value(r),
                converged: bo("converged").value(r),
                lambda_max: fo("lambda_max", r),
                lambda_min: fo("lambda_min", r),
                other_iterations: (!i("other_iterations").is_null(r))
                    .then(|| i("other_iterations").value(r)),
                other_residual: fo("other_residual", r),
                other_converged: (!bo("other_converged").is_null(r))
                    .then(|| bo("other_converged").value(r)),
                hvps: i("hvps").value(r),
                batch_indices: list_row(bi, r),
            });
        }
    }
    Ok((rows, t.meta))
}

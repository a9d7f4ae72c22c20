//! Tensor files: iterate snapshots x^k (`iterates/step=<k>/part-0.parquet`) and
//! resume checkpoints, as Parquet that pandas, Polars and DuckDB read directly.
//!
//! One row per tensor chunk: `name` (utf8), `kind` (param | buffer | optim),
//! `shape` (list<int64>), `numel` (int64), `chunk` (int32, 0-based), `offset`
//! (int64, first element of the chunk in the flattened tensor) and `values`
//! (list<float32>, or list<float64> for f64 models). A tensor larger than the
//! chunk size (default 2^20 values) is split into ordered chunk rows, so a
//! 537M-value embedding never becomes one giant list value. Rows are sorted by
//! name, then chunk. Key-value metadata: `abcond.format`, `abcond.content`,
//! `abcond.run_id`, `abcond.step`, `abcond.dtype`, plus content-specific keys.

use crate::config::Dtype;
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, Float32Array, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Tensor};

pub const FORMAT: &str = "abcond.tensors/1";
/// Values per chunk row: 4 MiB of f32.
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// What a stored tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A trainable parameter (part of x).
    Param,
    /// A non-trainable model buffer (e.g. BatchNorm running statistics).
    Buffer,
    /// Optimiser state (checkpoints only).
    Optim,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Param => "param",
            Role::Buffer => "buffer",
            Role::Optim => "optim",
        }
    }
    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "param" => Role::Param,
            "buffer" => Role::Buffer,
            "optim" => Role::Optim,
            _ => return None,
        })
    }
}

pub struct NamedTensor {
    pub name: String,
    pub role: Role,
    pub tensor: Tensor,
}

/// A tensor file read back.
pub struct TensorFile {
    pub tensors: Vec<NamedTensor>,
    pub meta: BTreeMap<String, String>,
    pub dtype: Dtype,
}

impl TensorFile {
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

fn schema(dtype: Dtype) -> Arc<Schema> {
    let item = match dtype {
        Dtype::F32 => DataType::Float32,
        Dtype::F64 => DataType::Float64,
    };
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new(
            "shape",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, false))),
            false,
        ),
        Field::new("numel", DataType::Int64, false),
        Field::new("chunk", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "values",
            DataType::List(Arc::new(Field::new("item", item, false))),
            false,
        ),
    ]))
}

/// Rows waiting to become one record batch.
struct Pending {
    dtype: Dtype,
    names: Vec<String>,
    kinds: Vec<&'static str>,
    shapes: Vec<Vec<i64>>,
    numels: Vec<i64>,
    chunks: Vec<i32>,
    offsets: Vec<i64>,
    lengths: Vec<usize>,
    f32s: Vec<f32>,
    f64s: Vec<f64>,
}

impl Pending {
    fn new(dtype: Dtype) -> Pending {
        Pending {
            dtype,
            names: vec![],
            kinds: vec![],
            shapes: vec![],
            numels: vec![],
            chunks: vec![],
            offsets: vec![],
            lengths: vec![],
            f32s: vec![],
            f64s: vec![],
        }
    }
    fn values_len(&self) -> usize {
        self.f32s.len() + self.f64s.len()
    }
    fn take_batch(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch> {
        let shape_lengths: Vec<usize> = self.shapes.iter().map(Vec::len).collect();
        let shape_values: Vec<i64> = self.shapes.drain(..).flatten().collect();
        let shape_field = Arc::new(Field::new("item", DataType::Int64, false));
        let shape = ListArray::new(
            shape_field,
            OffsetBuffer::from_lengths(shape_lengths),
            Arc::new(Int64Array::from(shape_values)),
            None,
        );
        let (item_type, values): (DataType, ArrayRef) = match self.dtype {
            Dtype::F32 => (
                DataType::Float32,
                Arc::new(Float32Array::from(std::mem::take(&mut self.f32s))),
            ),
            Dtype::F64 => (
                DataType::Float64,
                Arc::new(Float64Array::from(std::mem::take(&mut self.f64s))),
            ),
        };
        let values = ListArray::new(
            Arc::new(Field::new("item", item_type, false)),
            OffsetBuffer::from_lengths(self.lengths.drain(..)),
            values,
            None,
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(std::mem::take(&mut self.names))),
            Arc::new(StringArray::from(std::mem::take(&mut self.kinds))),
            Arc::new(shape),
            Arc::new(Int64Array::from(std::mem::take(&mut self.numels))),
            Arc::new(Int32Array::from(std::mem::take(&mut self.chunks))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.offsets))),
            Arc::new(values),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// Writes `tensors` to `path` atomically; returns the file size in bytes.
/// Every tensor is converted to `dtype` (the model's dtype).
pub fn write(
    path: &Path,
    tensors: &[NamedTensor],
    dtype: Dtype,
    meta: &[(&str, String)],
    chunk: usize,
) -> Result<u64> {
    assert!(chunk > 0);
    let mut kv = vec![
        KeyValue::new("abcond.format".to_string(), FORMAT.to_string()),
        KeyValue::new("abcond.dtype".to_string(), dtype.name().to_string()),
        KeyValue::new("abcond.chunk_size".to_string(), chunk.to_string()),
    ];
    kv.extend(
        meta.iter()
            .map(|(k, v)| KeyValue::new(k.to_string(), v.clone())),
    );
    // Also in the Arrow schema, where pyarrow looks (table.schema.metadata).
    let schema_meta: std::collections::HashMap<String, String> = kv
        .iter()
        .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    let schema = Arc::new(schema(dtype).as_ref().clone().with_metadata(schema_meta));
    let props = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_bytes(Some(128 << 20))
        .set_key_value_metadata(Some(kv))
        .build();
    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for w in sorted.windows(2) {
        if w[0].name == w[1].name {
            bail!("two tensors named `{}`", w[0].name);
        }
    }
    crate::store::atomic::write_with(path, |file| {
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
        let mut pending = Pending::new(dtype);
        for nt in sorted {
            let t = nt
                .tensor
                .detach()
                .to_device(Device::Cpu)
                .to_kind(dtype.kind())
                .contiguous()
                .view([-1]);
            let numel = t.numel();
            let shape = nt.tensor.size();
            let n_chunks = numel.div_ceil(chunk).max(1);
            for c in 0..n_chunks {
                let start = c * chunk;
                let len = chunk.min(numel - start);
                let part = t.narrow(0, start as i64, len as i64);
                match dtype {
                    Dtype::F32 => {
                        let at = pending.f32s.len();
                        pending.f32s.resize(at + len, 0.0);
                        part.copy_data(&mut pending.f32s[at..], len);
                    }
                    Dtype::F64 => {
                        let at = pending.f64s.len();
                        pending.f64s.resize(at + len, 0.0);
                        part.copy_data(&mut pending.f64s[at..], len);
                    }
                }
                pending.names.push(nt.name.clone());
                pending.kinds.push(nt.role.name());
                pending.shapes.push(shape.clone());
                pending.numels.push(numel as i64);
                pending.chunks.push(c as i32);
                pending.offsets.push(start as i64);
                pending.lengths.push(len);
                if pending.values_len() >= chunk {
                    writer.write(&pending.take_batch(&schema)?)?;
                }
            }
        }
        if !pending.names.is_empty() {
            writer.write(&pending.take_batch(&schema)?)?;
        }
        writer.close()?;
        Ok(())
    })?;
    Ok(std::fs::metadata(path)?.len())
}

/// Reads only the key-value metadata of a Parquet file.
pub fn read_meta(path: &Path) -> Result<BTreeMap<String, String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        anyhow!(
            "{} is not a readable Parquet file (truncated or corrupt?): {e}",
            path.display()
        )
    })?;
    Ok(kv_map(
        builder.metadata().file_metadata().key_value_metadata(),
    ))
}

pub fn kv_map(kv: Option<&Vec<KeyValue>>) -> BTreeMap<String, String> {
    kv.map(|kv| {
        kv.iter()
            .filter(|e| e.key.starts_with("abcond."))
            .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    })
    .unwrap_or_default()
}

struct Assembling {
    name: String,
    role: Role,
    shape: Vec<i64>,
    numel: usize,
    next_chunk: i32,
    f32s: Vec<f32>,
    f64s: Vec<f64>,
}

/// Reads a tensor file written by [`write`] and places the tensors on `device`.
/// Any deviation from the format is an error naming the file and what was expected.
pub fn read(path: &Path, device: Device) -> Result<TensorFile> {
    let what = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("opening tensor file {what}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        anyhow!("{what} is not a readable Parquet file (truncated or corrupt?): {e}")
    })?;
    let meta = kv_map(builder.metadata().file_metadata().key_value_metadata());
    match meta.get("abcond.format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) if other.starts_with("abcond.tensors/") => bail!(
            "{what}: tensor format {other:?} is not supported by this abcond (it reads {FORMAT:?}); was it written by a newer version?"
        ),
        Some(other) => bail!(
            "{what} is not an abcond tensor file: its metadata `abcond.format` is {other:?}, expected {FORMAT:?} (a snapshot or checkpoint)"
        ),
        None => {
            let cols: Vec<String> = builder
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            bail!(
                "{what} is not an abcond tensor file: key-value metadata `abcond.format` is missing (expected {FORMAT:?}); it has columns [{}] instead of [name, kind, shape, numel, chunk, offset, values]",
                cols.join(", ")
            )
        }
    }
    let dtype = match meta.get("abcond.dtype").map(String::as_str) {
        Some("f32") => Dtype::F32,
        Some("f64") => Dtype::F64,
        other => bail!("{what}: metadata `abcond.dtype` is {other:?}, expected \"f32\" or \"f64\""),
    };
    crate::store::tables::check_columns(path, builder.schema(), &schema(dtype))?;
    let reader = builder
        .with_batch_size(8)
        .build()
        .with_context(|| format!("reading {what}"))?;
    let mut done: Vec<Assembling> = Vec::new();
    let mut current: Option<Assembling> = None;
    let finish = |a: Assembling, done: &mut Vec<Assembling>| -> Result<()> {
        let have = a.f32s.len() + a.f64s.len();
        if have != a.numel {
            bail!(
                "{what}: tensor `{}` has {have} values after chunk {}, expected {} (shape {:?}); the file is incomplete",
                a.name,
                a.next_chunk - 1,
                a.numel,
                a.shape
            );
        }
        if done.iter().any(|d| d.name == a.name) {
            bail!("{what}: tensor `{}` appears twice", a.name);
        }
        done.push(a);
        Ok(())
    };
    for batch in reader {
        let batch = batch
            .map_err(|e| anyhow!("{what}: reading rows failed (truncated or corrupt?): {e}"))?;
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let names = col("name");
        let names = names.as_any().downcast_ref::<StringArray>().unwrap();
        let kinds = col("kind");
        let kinds = kinds.as_any().downcast_ref::<StringArray>().unwrap();
        let shapes = col("shape");
        let shapes = shapes.as_any().downcast_ref::<ListArray>().unwrap();
        let numels = col("numel");
        let numels = numels.as_any().downcast_ref::<Int64Array>().unwrap();
        let chunks = col("chunk");
        let chunks = chunks.as_any().downcast_ref::<Int32Array>().unwrap();
        let offsets = col("offset");
        let offsets = offsets.as_any().downcast_ref::<Int64Array>().unwrap();
        let values = col("values");
        let values = values.as_any().downcast_ref::<ListArray>().unwrap();
        for row in 0..batch.num_rows() {
            if names.is_null(row) || values.is_null(row) || shapes.is_null(row) {
                bail!("{what}: row {row} has a null name, shape or values");
            }
            let name = names.value(row);
            let chunk = chunks.value(row);
            let same = current.as_ref().is_some_and(|a| a.name == name);
            if !same {
                if let Some(a) = current.take() {
                    finish(a, &mut done)?;
                }
                let shape: Vec<i64> = shapes
                    .value(row)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec();
                let numel = numels.value(row);
                let prod: i64 = shape.iter().product();
                if shape.iter().any(|d| *d < 0) || prod != numel {
                    bail!("{what}: tensor `{name}` has shape {shape:?} but numel {numel}");
                }
                let role = Role::parse(kinds.value(row)).ok_or_else(|| {
                    anyhow!(
                        "{what}: tensor `{name}` has kind {:?}, expected param, buffer or optim",
                        kinds.value(row)
                    )
                })?;
                current = Some(Assembling {
                    name: name.to_string(),
                    role,
                    shape,
                    numel: numel as usize,
                    next_chunk: 0,
                    f32s: Vec::new(),
                    f64s: Vec::new(),
                });
            }
            let a = current.as_mut().unwrap();
            let have = a.f32s.len() + a.f64s.len();
            if chunk != a.next_chunk || offsets.value(row) != have as i64 {
                bail!(
                    "{what}: tensor `{name}`: found chunk {chunk} at offset {}, expected chunk {} at offset {have} (chunks must be complete and in order)",
                    offsets.value(row),
                    a.next_chunk
                );
            }
            a.next_chunk += 1;
            let v = values.value(row);
            match dtype {
                Dtype::F32 => {
                    let v = v.as_any().downcast_ref::<Float32Array>().unwrap();
                    if a.f32s.is_empty() {
                        a.f32s.reserve_exact(a.numel);
                    }
                    a.f32s.extend_from_slice(v.values());
                }
                Dtype::F64 => {
                    let v = v.as_any().downcast_ref::<Float64Array>().unwrap();
                    if a.f64s.is_empty() {
                        a.f64s.reserve_exact(a.numel);
                    }
                    a.f64s.extend_from_slice(v.values());
                }
            }
            if a.f32s.len() + a.f64s.len() > a.numel {
                bail!(
                    "{what}: tensor `{name}` has more values than its shape {:?} holds",
                    a.shape
                );
            }
        }
    }
    if let Some(a) = current.take() {
        finish(a, &mut done)?;
    }
    let tensors = done
        .into_iter()
        .map(|a| {
            let t = match dtype {
                Dtype::F32 => Tensor::from_slice(&a.f32s),
                Dtype::F64 => Tensor::from_slice(&a.f64s),
            };
            NamedTensor {
                name: a.name,
                role: a.role,
                tensor: t.view(a.shape.as_slice()).to_device(device),
            }
        })
        .collect();
    Ok(TensorFile {
        tensors,
        meta,
        dtype,
    })
}

/// Checks that a tensor file is what its place in the run directory says:
/// its `abcond.content`, `abcond.run_id` and (when given) `abcond.step`.
pub fn check_identity(
    file: &TensorFile,
    path: &Path,
    content: &str,
    run_id: &str,
    step: Option<u64>,
) -> Result<()> {
    let what = path.display();
    let get = |k: &str| file.meta.get(k).map(String::as_str);
    if get("abcond.content") != Some(content) {
        bail!(
            "{what} holds {:?}, expected {content:?}",
            get("abcond.content").unwrap_or("no abcond.content metadata")
        );
    }
    if get("abcond.run_id") != Some(run_id) {
        bail!(
            "{what} belongs to run {:?}, not to this run {run_id:?} (copied from another run?)",
            get("abcond.run_id").unwrap_or("(none)")
        );
    }
    if let Some(k) = step {
        let got = get("abcond.step");
        if got != Some(k.to_string().as_str()) {
            bail!(
                "{what} holds the iterate of step {}, expected step {k} (misplaced file?)",
                got.unwrap_or("(none)")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("abcond-tensors-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn round_trip(dtype: Dtype, chunk: usize, sizes: &[&[i64]]) {
        let dir = tmpdir(&format!("{}-{chunk}", dtype.name()));
        let path = dir.join("part-0.parquet");
        let tensors: Vec<NamedTensor> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| NamedTensor {
                name: format!("layer{i}.weight"),
                role: if i % 2 == 0 {
                    Role::Param
                } else {
                    Role::Buffer
                },
                tensor: Tensor::randn(*s, (dtype.kind(), Device::Cpu)),
            })
            .collect();
        write(
            &path,
            &tensors,
            dtype,
            &[("abcond.step", "7".into())],
            chunk,
        )
        .unwrap();
        let back = read(&path, Device::Cpu).unwrap();
        assert_eq!(back.meta["abcond.step"], "7");
        assert_eq!(back.tensors.len(), tensors.len());
        for t in &tensors {
            let b = back.get(&t.name).unwrap();
            assert_eq!(b.role, t.role);
            assert_eq!(b.tensor.size(), t.tensor.size());
            assert_eq!(b.tensor.kind(), dtype.kind());
            // bit-exact
            assert!(b.tensor.equal(&t.tensor), "{}", t.name);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trip_small_chunks_split_tensors() {
        // 2500 values with chunk 1000 → 3 ordered chunk rows.
        round_trip(
            Dtype::F32,
            1000,
            &[&[50, 50], &[7], &[0], &[2500], &[3, 1, 2]],
        );
        round_trip(Dtype::F64, 333, &[&[10, 100], &[1]]);
    }

    #[test]
    fn round_trip_tensor_above_default_chunk() {
        round_trip(
            Dtype::F32,
            DEFAULT_CHUNK,
            &[&[3, DEFAULT_CHUNK as i64 / 2 + 17], &[5]],
        );
    }
}

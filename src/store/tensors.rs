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

use crate::store::atomic::Durability;
use crate::torch::dtype::Dtype;
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{Array, Int32Array, Int64Array, ListArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter, ProjectionMask};
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::{SerializedFileReader, SerializedPageReader};
use parquet::file::writer::SerializedFileWriter;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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

/// Largest row group, in bytes of values: readers that load a row group at a
/// time (pyarrow, DuckDB) never need more than this at once.
const MAX_ROW_GROUP_BYTES: usize = 128 << 20;

/// One chunk row of the file: `len` values of tensor `tensor` from `offset`.
#[derive(Debug, Clone, Copy)]
struct Row {
    tensor: usize,
    chunk: i32,
    offset: usize,
    len: usize,
}

/// How long a write took and what it wrote (examples/snapshot_io.rs reports
/// it for bench/snapshot_io.py).
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Size of the file.
    pub bytes: u64,
    /// Wall-clock seconds of the whole write, fsync and rename included.
    pub seconds: f64,
    /// Seconds until the bytes were handed to the operating system (encoding
    /// and `write` calls), i.e. without the fsync that makes the file durable.
    pub seconds_before_sync: f64,
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
    Ok(write_timed(path, tensors, dtype, meta, chunk, Durability::Durable)?.bytes)
}

/// [`write`] with the given durability, also reporting how long it took. The
/// training loop writes its snapshots with [`Durability::Cache`] and syncs
/// them in one batch before the checkpoint that relies on them (src/train.rs).
///
/// Written with Parquet's column writers directly, not through Arrow record
/// batches: the values of a CPU tensor of the file's dtype go from the
/// tensor's memory into the page encoder without an intermediate copy, and
/// pages stream to the file as they fill, so the writer holds one page, never
/// a row group or a whole tensor. The bytes are the same Parquet an Arrow
/// writer makes for [`schema`] (PLAIN values, RLE levels, uncompressed).
pub fn write_timed(
    path: &Path,
    tensors: &[NamedTensor],
    dtype: Dtype,
    meta: &[(&str, String)],
    chunk: usize,
    durability: Durability,
) -> Result<Written> {
    assert!(chunk > 0);
    let t0 = Instant::now();
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
    let arrow_schema = schema(dtype).as_ref().clone().with_metadata(schema_meta);
    let parquet_schema = ArrowSchemaConverter::new().convert(&arrow_schema)?;
    let mut props = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_key_value_metadata(Some(kv))
        .build();
    add_encoded_arrow_schema_to_metadata(&arrow_schema, &mut props);
    let props = Arc::new(props);

    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for w in sorted.windows(2) {
        if w[0].name == w[1].name {
            bail!("two tensors named `{}`", w[0].name);
        }
    }
    let shapes: Vec<Vec<i64>> = sorted.iter().map(|t| t.tensor.size()).collect();
    let numels: Vec<usize> = sorted.iter().map(|t| t.tensor.numel()).collect();
    let rows = plan_rows(&numels, chunk);
    let groups = row_groups(
        &rows,
        MAX_ROW_GROUP_BYTES / dtype.kind().elt_size_in_bytes(),
    );

    let mut before_sync = 0.0;
    crate::store::atomic::write_with_durability(path, durability, |file| {
        let mut writer =
            SerializedFileWriter::new(file, parquet_schema.root_schema_ptr(), props.clone())?;
        // Levels of a non-empty chunk list: repetition 0 then 1s, definition 1s.
        let longest = rows.iter().map(|r| r.len).max().unwrap_or(0);
        let mut rep = vec![1i16; longest.max(1)];
        rep[0] = 0;
        let def = vec![1i16; longest.max(1)];
        // The tensor whose chunks are being written, on the CPU in the file's
        // dtype (a no-op view for CPU tensors of that dtype).
        let mut host: Option<(usize, Tensor)> = None;
        for group in &groups {
            let rows = &rows[group.clone()];
            let mut rg = writer.next_row_group()?;
            let mut col = 0;
            while let Some(mut c) = rg.next_column()? {
                match col {
                    0 | 1 => {
                        let v: Vec<ByteArray> = rows
                            .iter()
                            .map(|r| {
                                let t = sorted[r.tensor];
                                ByteArray::from(if col == 0 {
                                    t.name.as_str()
                                } else {
                                    t.role.name()
                                })
                            })
                            .collect();
                        c.typed::<ByteArrayType>().write_batch(&v, None, None)?;
                    }
                    2 => {
                        let (mut v, mut d, mut r) = (Vec::new(), Vec::new(), Vec::new());
                        for row in rows {
                            let s = &shapes[row.tensor];
                            if s.is_empty() {
                                d.push(0); // a scalar: the empty list
                                r.push(0);
                            }
                            for (i, &dim) in s.iter().enumerate() {
                                v.push(dim);
                                d.push(1);
                                r.push(i16::from(i > 0));
                            }
                        }
                        c.typed::<Int64Type>().write_batch(&v, Some(&d), Some(&r))?;
                    }
                    3 | 5 => {
                        let v: Vec<i64> = rows
                            .iter()
                            .map(|r| {
                                if col == 3 {
                                    numels[r.tensor] as i64
                                } else {
                                    r.offset as i64
                                }
                            })
                            .collect();
                        c.typed::<Int64Type>().write_batch(&v, None, None)?;
                    }
                    4 => {
                        let v: Vec<i32> = rows.iter().map(|r| r.chunk).collect();
                        c.typed::<Int32Type>().write_batch(&v, None, None)?;
                    }
                    6 => {
                        for row in rows {
                            if host.as_ref().is_none_or(|(i, _)| *i != row.tensor) {
                                let t = sorted[row.tensor]
                                    .tensor
                                    .detach()
                                    .to_device(Device::Cpu)
                                    .to_kind(dtype.kind())
                                    .contiguous();
                                host = Some((row.tensor, t));
                            }
                            let t = &host.as_ref().unwrap().1;
                            let (d, r) = if row.len == 0 {
                                (&[0i16][..], &[0i16][..])
                            } else {
                                (&def[..row.len], &rep[..row.len])
                            };
                            match dtype {
                                Dtype::F32 => c.typed::<FloatType>().write_batch(
                                    &host_values::<f32>(t)[row.offset..row.offset + row.len],
                                    Some(d),
                                    Some(r),
                                )?,
                                Dtype::F64 => c.typed::<DoubleType>().write_batch(
                                    &host_values::<f64>(t)[row.offset..row.offset + row.len],
                                    Some(d),
                                    Some(r),
                                )?,
                            };
                        }
                    }
                    _ => unreachable!("the schema has 7 columns"),
                }
                c.close()?;
                col += 1;
            }
            rg.close()?;
        }
        writer.close()?;
        before_sync = t0.elapsed().as_secs_f64();
        Ok(())
    })?;
    let bytes = std::fs::metadata(path)?.len();
    Ok(Written {
        bytes,
        seconds: t0.elapsed().as_secs_f64(),
        seconds_before_sync: before_sync,
    })
}

/// The chunk rows of tensors with `numels` values, in file order: each tensor
/// split into ceil(numel/chunk) rows (one empty row for an empty tensor).
fn plan_rows(numels: &[usize], chunk: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for (tensor, &numel) in numels.iter().enumerate() {
        for c in 0..numel.div_ceil(chunk).max(1) {
            let offset = c * chunk;
            rows.push(Row {
                tensor,
                chunk: c as i32,
                offset,
                len: chunk.min(numel - offset),
            });
        }
    }
    rows
}

/// Consecutive ranges of `rows` holding at most `max_values` values each (a
/// single larger row gets a group of its own).
fn row_groups(rows: &[Row], max_values: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut values) = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        if i > start && values + r.len > max_values {
            groups.push(start..i);
            (start, values) = (i, 0);
        }
        values += r.len;
    }
    if start < rows.len() {
        groups.push(start..rows.len());
    }
    groups
}

/// The values of a contiguous CPU tensor of element type `T`, borrowed.
fn host_values<T: tch::kind::Element>(t: &Tensor) -> &[T] {
    assert!(t.device() == Device::Cpu && t.kind() == T::KIND && t.is_contiguous());
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    // SAFETY: a contiguous CPU tensor of kind T holds n values of T at
    // data_ptr, alive as long as `t` is borrowed.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, n) }
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
    Ok(crate::store::schema::kv_map(
        builder.metadata().file_metadata().key_value_metadata(),
    ))
}

/// A tensor as a file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub name: String,
    pub role: Role,
    pub shape: Vec<i64>,
    pub numel: usize,
}

/// Consecutive values of one tensor, borrowed from a Parquet page (or the
/// decoder's buffer) as little-endian bytes of the file's dtype; valid during
/// one [`TensorReader::for_each_chunk`] callback.
pub struct Chunk<'a> {
    bytes: &'a [u8],
    kind: Kind,
}

impl Chunk<'_> {
    pub fn len(&self) -> usize {
        self.bytes.len() / self.kind.elt_size_in_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Copies the values into `dst`, a 1-D tensor of the same length on any
    /// device and of any kind (converted). Into a contiguous CPU tensor of the
    /// file's kind this is one memcpy from the page — beside autograd, which
    /// does not see the write: `dst` must not be saved by a live graph (loads
    /// happen between passes); otherwise the values pass through an aligned
    /// host buffer first.
    pub fn copy_into(&self, dst: &Tensor) {
        let n = self.len();
        assert_eq!(dst.size(), [n as i64], "chunk of {n} values");
        if n == 0 {
            return;
        }
        if dst.device() == Device::Cpu && dst.kind() == self.kind && dst.is_contiguous() {
            // SAFETY: dst holds n contiguous values of this kind, i.e.
            // exactly self.bytes.len() bytes, and does not overlap the page.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.bytes.as_ptr(),
                    dst.data_ptr() as *mut u8,
                    self.bytes.len(),
                )
            };
            return;
        }
        // Page bytes need not be aligned for the dtype: copy them into an
        // aligned buffer (u64 words) before viewing them as a tensor.
        let mut aligned = vec![0u64; self.bytes.len().div_ceil(8)];
        // SAFETY: `aligned` has at least self.bytes.len() bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.bytes.as_ptr(),
                aligned.as_mut_ptr() as *mut u8,
                self.bytes.len(),
            )
        };
        // SAFETY: `aligned` holds n values of `kind`, outlives `src` (dropped
        // at the end of this call), and copy_ reads them synchronously (a
        // host-to-device copy from pageable memory completes before it returns).
        let src = unsafe {
            Tensor::from_blob(
                aligned.as_ptr() as *const u8,
                &[n as i64],
                &[1],
                self.kind,
                Device::Cpu,
            )
        };
        let mut dst = dst.shallow_clone();
        tch::no_grad(|| dst.copy_(&src));
    }
}

/// As bytes (the values of a decoded buffer, for [`Chunk`]).
fn value_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain numbers; the byte view covers exactly the slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// An open tensor file whose table of contents — names, kinds, shapes and the
/// chunk rows of every tensor — is read and checked, and whose values are not:
/// [`TensorReader::for_each_chunk`] streams them a page at a time, so a
/// snapshot can go straight into a model's parameters ([`Model::load_from`])
/// without a second copy of the model in memory.
///
/// [`Model::load_from`]: crate::model::Model::load_from
pub struct TensorReader {
    path: PathBuf,
    pub meta: BTreeMap<String, String>,
    pub dtype: Dtype,
    /// In file order (sorted by name).
    pub tensors: Vec<Header>,
    rows: Vec<Row>,
}

impl TensorReader {
    /// Opens a tensor file written by [`write`]. Any deviation from the format
    /// is an error naming the file and what was expected.
    pub fn open(path: &Path) -> Result<TensorReader> {
        let what = path.display();
        let file =
            std::fs::File::open(path).with_context(|| format!("opening tensor file {what}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            anyhow!("{what} is not a readable Parquet file (truncated or corrupt?): {e}")
        })?;
        let meta =
            crate::store::schema::kv_map(builder.metadata().file_metadata().key_value_metadata());
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
            other => {
                bail!("{what}: metadata `abcond.dtype` is {other:?}, expected \"f32\" or \"f64\"")
            }
        };
        crate::store::schema::check_columns(path, builder.schema(), &schema(dtype))?;
        // The table of contents: every column but `values`.
        let mask = ProjectionMask::roots(builder.parquet_schema(), 0..6);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(4096)
            .build()
            .with_context(|| format!("reading {what}"))?;
        let mut tensors: Vec<Header> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        // Per tensor: (first row, chunks so far).
        let mut seen = std::collections::HashSet::new();
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
            for row in 0..batch.num_rows() {
                if names.is_null(row) || shapes.is_null(row) {
                    bail!("{what}: row {} has a null name or shape", rows.len());
                }
                let name = names.value(row);
                let chunk = chunks.value(row);
                let offset = offsets.value(row);
                let same = tensors.last().is_some_and(|t| t.name == name);
                if !same {
                    if let Some(t) = tensors.last() {
                        finish_tensor(&what, t, &mut rows)?;
                    }
                    if !seen.insert(name.to_string()) {
                        bail!("{what}: tensor `{name}` appears twice");
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
                    tensors.push(Header {
                        name: name.to_string(),
                        role,
                        shape,
                        numel: numel as usize,
                    });
                }
                let t = tensors.len() - 1;
                let (next_chunk, have) = match rows.last() {
                    Some(r) if r.tensor == t => (r.chunk + 1, r.offset as i64 + 1),
                    _ => (0, 0),
                };
                // A later chunk must start past the previous one; its length
                // is known once the next chunk (or the end) is seen.
                let in_order = if chunk == 0 {
                    offset == 0
                } else {
                    offset >= have && offset <= tensors[t].numel as i64
                };
                if chunk != next_chunk || !in_order {
                    bail!(
                        "{what}: tensor `{name}`: found chunk {chunk} at offset {offset}, expected chunk {next_chunk} (chunks must be complete and in order)"
                    );
                }
                if let Some(prev) = rows.last_mut().filter(|r| r.tensor == t) {
                    prev.len = offset as usize - prev.offset;
                }
                rows.push(Row {
                    tensor: t,
                    chunk,
                    offset: offset as usize,
                    len: 0,
                });
            }
        }
        if let Some(t) = tensors.last() {
            finish_tensor(&what, t, &mut rows)?;
        }
        // With the chunk size the writer recorded, a missing chunk row shows
        // here, before any value is read (a model loading the file is then
        // left untouched).
        if let Some(size) = meta.get("abcond.chunk_size") {
            let size: usize = size.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                anyhow!(
                    "{what}: metadata `abcond.chunk_size` is {size:?}, expected a whole number ≥ 1"
                )
            })?;
            for (i, r) in rows.iter().enumerate() {
                let last = rows.get(i + 1).is_none_or(|n| n.tensor != r.tensor);
                if (!last && r.len != size) || r.len > size {
                    let t = &tensors[r.tensor];
                    bail!(
                        "{what}: tensor `{}` chunk {} spans {} values, but the file's chunks hold {size} (shape {:?}); the file is incomplete or corrupt",
                        t.name,
                        r.chunk,
                        r.len,
                        t.shape
                    );
                }
            }
        }
        Ok(TensorReader {
            path: path.to_path_buf(),
            meta,
            dtype,
            tensors,
            rows,
        })
    }

    /// Checks the file's identity (see [`check_identity`]).
    pub fn check_identity(&self, content: &str, run_id: &str, step: Option<u64>) -> Result<()> {
        check_meta_identity(&self.meta, &self.path, content, run_id, step)
    }

    /// Streams the values: calls `sink(tensor, offset, chunk)` for consecutive
    /// runs of values in file order (a chunk row, or the part of one that a
    /// page holds), `tensor` indexing [`TensorReader::tensors`] and `offset`
    /// the run's first element in the flattened tensor. Runs of tensors for
    /// which `wanted(tensor)` is false are not passed on. Each chunk row must
    /// hold exactly the values its table of contents says.
    pub fn for_each_chunk(
        &self,
        wanted: impl Fn(usize) -> bool,
        sink: impl FnMut(usize, usize, &Chunk) -> Result<()>,
    ) -> Result<()> {
        self.stream(wanted, sink, false)
    }

    /// [`TensorReader::for_each_chunk`]; `decoded` forces Parquet's record
    /// decoder where the page path would apply (tests compare the two).
    fn stream(
        &self,
        wanted: impl Fn(usize) -> bool,
        mut sink: impl FnMut(usize, usize, &Chunk) -> Result<()>,
        decoded: bool,
    ) -> Result<()> {
        let what = self.path.display();
        let corrupt = |e: parquet::errors::ParquetError| {
            anyhow!("{what}: reading values failed (truncated or corrupt?): {e}")
        };
        let file = std::fs::File::open(&self.path)
            .with_context(|| format!("opening tensor file {what}"))?;
        let pages_from = Arc::new(file.try_clone()?);
        let reader = SerializedFileReader::new(file).map_err(corrupt)?;
        let mut next = 0;
        for g in 0..reader.num_row_groups() {
            let group = reader.get_row_group(g).map_err(corrupt)?;
            let n = group.metadata().num_rows() as usize;
            let rows = self.rows.get(next..next + n).ok_or_else(|| {
                anyhow!(
                    "{what}: row group {g} holds rows past the {} listed",
                    self.rows.len()
                )
            })?;
            next += n;
            let chunk_meta = group.metadata().column(6);
            if !decoded && pages_apply(chunk_meta) {
                let pages = SerializedPageReader::new(pages_from.clone(), chunk_meta, n, None)
                    .map_err(corrupt)?;
                self.stream_pages(pages, rows, g, &wanted, &mut sink)?;
                continue;
            }
            let column = group.get_column_reader(6).map_err(corrupt)?;
            match (self.dtype, column) {
                (Dtype::F32, ColumnReader::FloatColumnReader(mut c)) => {
                    self.decode_rows(&mut c, rows, Kind::Float, &wanted, &mut sink, &corrupt)?
                }
                (Dtype::F64, ColumnReader::DoubleColumnReader(mut c)) => {
                    self.decode_rows(&mut c, rows, Kind::Double, &wanted, &mut sink, &corrupt)?
                }
                _ => bail!(
                    "{what}: column `values` of row group {g} does not hold {} values",
                    self.dtype.name()
                ),
            }
        }
        if next != self.rows.len() {
            bail!(
                "{what}: the row groups hold {next} rows, the table of contents {}",
                self.rows.len()
            );
        }
        Ok(())
    }

    /// The values of one row group's chunk rows `rows` through Parquet's record
    /// decoder (layouts the page path does not take): one record per chunk row,
    /// rows that are not `wanted` skipped.
    fn decode_rows<T: parquet::data_type::DataType>(
        &self,
        column: &mut parquet::column::reader::ColumnReaderImpl<T>,
        rows: &[Row],
        kind: Kind,
        wanted: &impl Fn(usize) -> bool,
        sink: &mut impl FnMut(usize, usize, &Chunk) -> Result<()>,
        corrupt: &impl Fn(parquet::errors::ParquetError) -> anyhow::Error,
    ) -> Result<()>
    where
        T::T: Copy,
    {
        let (mut def, mut rep, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            if !wanted(row.tensor) {
                column.skip_records(1).map_err(corrupt)?;
                continue;
            }
            def.clear();
            rep.clear();
            values.clear();
            column
                .read_records(1, Some(&mut def), Some(&mut rep), &mut values)
                .map_err(corrupt)?;
            self.check_len(row, values.len())?;
            let chunk = Chunk {
                bytes: value_bytes(&values),
                kind,
            };
            sink(row.tensor, row.offset, &chunk)?;
        }
        Ok(())
    }

    /// The values of row group `g` (its chunk rows `rows`) straight from the
    /// pages: a PLAIN page's value bytes are the values themselves, so each run
    /// of them is handed to `sink` without decoding (one copy, from the page
    /// into the destination). The repetition and definition levels are walked
    /// run by run to find where each chunk row starts and how many values it
    /// holds, which must be what the table of contents says.
    fn stream_pages(
        &self,
        mut pages: SerializedPageReader<std::fs::File>,
        rows: &[Row],
        g: usize,
        wanted: &impl Fn(usize) -> bool,
        sink: &mut impl FnMut(usize, usize, &Chunk) -> Result<()>,
    ) -> Result<()> {
        let what = self.path.display();
        let kind = self.dtype.kind();
        let elt = kind.elt_size_in_bytes();
        // The open row (index into `rows`) and its values so far.
        let mut open: Option<usize> = None;
        let mut filled = 0usize;
        let mut opened = 0usize;
        let close = |open: Option<usize>, filled: usize| -> Result<()> {
            match open {
                Some(r) => self.check_len(&rows[r], filled),
                None => Ok(()),
            }
        };
        while let Some(page) = pages
            .get_next_page()
            .map_err(|e| anyhow!("{what}: reading values failed (truncated or corrupt?): {e}"))?
        {
            let (levels, rep, def, values) = match &page {
                Page::DataPage {
                    buf,
                    num_values,
                    encoding: Encoding::PLAIN,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    ..
                } => {
                    let (rep, rest) = length_prefixed(buf, &what)?;
                    let (def, values) = length_prefixed(rest, &what)?;
                    (*num_values as usize, rep, def, values)
                }
                Page::DataPageV2 {
                    buf,
                    num_values,
                    encoding: Encoding::PLAIN,
                    def_levels_byte_len,
                    rep_levels_byte_len,
                    ..
                } => {
                    let (r, d) = (*rep_levels_byte_len as usize, *def_levels_byte_len as usize);
                    if r + d > buf.len() {
                        bail!("{what}: a page of `values` is shorter than its levels");
                    }
                    (*num_values as usize, &buf[..r], &buf[r..r + d], &buf[r + d..])
                }
                other => bail!(
                    "{what}: row group {g}: column `values` has a {:?} page, expected PLAIN data pages",
                    other.page_type()
                ),
            };
            let mut at = 0usize; // values of this page consumed
            walk_levels(rep, def, levels, |event| {
                match event {
                    Level::Start => {
                        close(open, filled)?;
                        if opened == rows.len() {
                            bail!("{what}: row group {g} holds more chunk rows than its {} listed", rows.len());
                        }
                        open = Some(opened);
                        opened += 1;
                        filled = 0;
                    }
                    Level::Values(n) => {
                        let r = open.ok_or_else(|| anyhow!("{what}: a page of `values` starts inside a row"))?;
                        let row = &rows[r];
                        let end = (at + n) * elt;
                        if filled + n > row.len || end > values.len() {
                            let t = &self.tensors[row.tensor];
                            bail!(
                                "{what}: tensor `{}` chunk {} holds more than the {} values it should (shape {:?}); the file is corrupt",
                                t.name, row.chunk, row.len, t.shape
                            );
                        }
                        if wanted(row.tensor) {
                            let chunk = Chunk { bytes: &values[at * elt..end], kind };
                            sink(row.tensor, row.offset + filled, &chunk)?;
                        }
                        filled += n;
                        at += n;
                    }
                }
                Ok(())
            })
            .with_context(|| format!("{what}: row group {g}: column `values`"))?;
            if at * elt != values.len() {
                bail!(
                    "{what}: row group {g}: a page of `values` has {} bytes of values for {at} values",
                    values.len()
                );
            }
        }
        close(open, filled)?;
        if opened != rows.len() {
            bail!(
                "{what}: row group {g} holds {opened} chunk rows, the table of contents {}",
                rows.len()
            );
        }
        Ok(())
    }

    fn check_len(&self, row: &Row, got: usize) -> Result<()> {
        if got != row.len {
            let t = &self.tensors[row.tensor];
            bail!(
                "{}: tensor `{}` chunk {} holds {got} values, expected {} (shape {:?}); the file is incomplete or corrupt",
                self.path.display(),
                t.name,
                row.chunk,
                row.len,
                t.shape
            );
        }
        Ok(())
    }

    /// Reads every tensor onto `device`, each value copied once from the
    /// decoder into its tensor.
    pub fn read_all(self, device: Device) -> Result<TensorFile> {
        let kind = self.dtype.kind();
        let flat: Vec<Tensor> = self
            .tensors
            .iter()
            .map(|h| Tensor::empty([h.numel as i64], (kind, device)))
            .collect();
        self.for_each_chunk(
            |_| true,
            |t, offset, chunk| {
                chunk.copy_into(&flat[t].narrow(0, offset as i64, chunk.len() as i64));
                Ok(())
            },
        )?;
        let tensors = self
            .tensors
            .into_iter()
            .zip(flat)
            .map(|(h, t)| NamedTensor {
                tensor: t.view(h.shape.as_slice()),
                name: h.name,
                role: h.role,
            })
            .collect();
        Ok(TensorFile {
            tensors,
            meta: self.meta,
            dtype: self.dtype,
        })
    }
}

/// Whether the values of a column chunk can be read page by page: the layout
/// [`write`] produces (uncompressed, PLAIN values, RLE levels, no dictionary),
/// for `values` as [`schema`] declares it (levels of at most 1). Anything else
/// goes through Parquet's record decoder.
fn pages_apply(c: &parquet::file::metadata::ColumnChunkMetaData) -> bool {
    let d = c.column_descr();
    c.compression() == parquet::basic::Compression::UNCOMPRESSED
        && c.dictionary_page_offset().is_none()
        && c.encodings()
            .all(|e| matches!(e, Encoding::PLAIN | Encoding::RLE))
        && d.max_def_level() == 1
        && d.max_rep_level() == 1
}

/// Splits a v1 level section (4-byte little-endian length, then the bytes).
fn length_prefixed<'a>(
    buf: &'a [u8],
    what: &impl std::fmt::Display,
) -> Result<(&'a [u8], &'a [u8])> {
    let len = buf
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
        .filter(|&l| 4 + l <= buf.len())
        .ok_or_else(|| anyhow!("{what}: a page of `values` is shorter than its levels"))?;
    Ok((&buf[4..4 + len], &buf[4 + len..]))
}

/// What the levels of a `list<item>` column say, in order.
#[derive(Debug, PartialEq)]
enum Level {
    /// A new row (list) starts.
    Start,
    /// The current row has `n` more values.
    Values(usize),
}

/// Walks `n` repetition and definition levels (bit width 1, RLE/bit-packed
/// hybrid encoding) run by run: repetition 0 starts a row, definition 1 is a
/// value (0: the row is an empty list). Long runs cost O(1).
fn walk_levels(
    rep: &[u8],
    def: &[u8],
    n: usize,
    mut f: impl FnMut(Level) -> Result<()>,
) -> Result<()> {
    let (mut rep, mut def) = (Runs::new(rep), Runs::new(def));
    let mut left = n;
    // The open row is an empty list (its only level has definition 0).
    let mut empty = false;
    while left > 0 {
        let (r, rn) = rep.peek()?;
        let (d, dn) = def.peek()?;
        let k = rn.min(dn).min(left);
        match (r, d) {
            (0, 0 | 1) => {
                // k rows start, each with one value or none.
                for _ in 0..k {
                    f(Level::Start)?;
                    if d == 1 {
                        f(Level::Values(1))?;
                    }
                }
                empty = d == 0;
            }
            (1, 1) if empty => bail!("an empty row continues with values"),
            (1, 1) => f(Level::Values(k))?,
            (1, _) => bail!("a continued row has an empty (undefined) value"),
            _ => bail!("a level above 1 in a column of levels 0 and 1"),
        }
        rep.take(k);
        def.take(k);
        left -= k;
    }
    Ok(())
}

/// Runs of an RLE/bit-packed hybrid stream of bit width 1: RLE runs whole,
/// bit-packed groups one value at a time.
struct Runs<'a> {
    buf: &'a [u8],
    /// (value, count) of the current RLE run, or of one bit-packed value.
    run: (u8, usize),
    /// Bits of the current bit-packed run not yet taken.
    packed: &'a [u8],
    bit: usize,
    packed_left: usize,
}

impl<'a> Runs<'a> {
    fn new(buf: &'a [u8]) -> Runs<'a> {
        Runs {
            buf,
            run: (0, 0),
            packed: &[],
            bit: 0,
            packed_left: 0,
        }
    }

    /// The current run: its value and how many levels it has left.
    fn peek(&mut self) -> Result<(u8, usize)> {
        while self.run.1 == 0 {
            if self.packed_left > 0 {
                let byte = self.packed[self.bit / 8];
                self.run = ((byte >> (self.bit % 8)) & 1, 1);
                self.bit += 1;
                self.packed_left -= 1;
                break;
            }
            let mut header = 0usize;
            let mut shift = 0;
            loop {
                let (&b, rest) = self
                    .buf
                    .split_first()
                    .ok_or_else(|| anyhow!("the levels end early"))?;
                self.buf = rest;
                header |= ((b & 0x7f) as usize) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
                if shift > 56 {
                    bail!("a level run header is too long");
                }
            }
            if header & 1 == 1 {
                // (header >> 1) groups of 8 values, one byte per group.
                let groups = header >> 1;
                if groups > self.buf.len() {
                    bail!("a bit-packed level run is cut off");
                }
                (self.packed, self.buf) = self.buf.split_at(groups);
                self.bit = 0;
                self.packed_left = groups * 8;
            } else {
                let (&v, rest) = self
                    .buf
                    .split_first()
                    .ok_or_else(|| anyhow!("an RLE level run is cut off"))?;
                self.buf = rest;
                self.run = (v, header >> 1);
            }
        }
        Ok(self.run)
    }

    fn take(&mut self, k: usize) {
        self.run.1 -= k;
    }
}

/// Sets the length of the last chunk row of tensor `t` (the rows before it got
/// theirs from the offset of their successor) and checks that it ends the tensor.
fn finish_tensor(what: &impl std::fmt::Display, t: &Header, rows: &mut [Row]) -> Result<()> {
    let last = rows.last_mut().expect("a tensor has a row");
    if last.offset > t.numel || (last.offset == t.numel && t.numel > 0) {
        bail!(
            "{what}: tensor `{}` has a chunk at offset {} past its {} values (shape {:?}); the file is incomplete",
            t.name,
            last.offset,
            t.numel,
            t.shape
        );
    }
    last.len = t.numel - last.offset;
    Ok(())
}

/// Reads a tensor file written by [`write`] and places the tensors on `device`.
/// Any deviation from the format is an error naming the file and what was expected.
pub fn read(path: &Path, device: Device) -> Result<TensorFile> {
    TensorReader::open(path)?.read_all(device)
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
    check_meta_identity(&file.meta, path, content, run_id, step)
}

fn check_meta_identity(
    meta: &BTreeMap<String, String>,
    path: &Path,
    content: &str,
    run_id: &str,
    step: Option<u64>,
) -> Result<()> {
    let what = path.display();
    let get = |k: &str| meta.get(k).map(String::as_str);
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

    /// Every tensor of the file, flat, read with Parquet's record decoder.
    fn decoded_values(path: &Path) -> BTreeMap<String, Tensor> {
        let r = TensorReader::open(path).unwrap();
        let flat: Vec<Tensor> = r
            .tensors
            .iter()
            .map(|h| Tensor::full([h.numel as i64], f64::NAN, (r.dtype.kind(), Device::Cpu)))
            .collect();
        r.stream(
            |_| true,
            |t, offset, chunk| {
                chunk.copy_into(&flat[t].narrow(0, offset as i64, chunk.len() as i64));
                Ok(())
            },
            true,
        )
        .unwrap();
        r.tensors.iter().map(|h| h.name.clone()).zip(flat).collect()
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
        // The page path (used above) and Parquet's record decoder agree.
        let decoded = decoded_values(&path);
        for t in &back.tensors {
            assert!(
                t.tensor.reshape([-1]).equal(&decoded[&t.name]),
                "{}",
                t.name
            );
        }
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
            &[&[50, 50], &[7], &[0], &[2500], &[3, 1, 2], &[]],
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
    /// Row groups are cut at the byte budget, never inside a row, and a file
    /// spanning several row groups reads back bit-exactly.
    #[test]
    fn row_groups_and_a_file_of_several() {
        let rows = plan_rows(&[2500, 0, 10], 1000);
        let lens: Vec<usize> = rows.iter().map(|r| r.len).collect();
        assert_eq!(lens, [1000, 1000, 500, 0, 10]);
        assert_eq!(row_groups(&rows, 1500), [0..1, 1..4, 4..5]);
        assert_eq!(row_groups(&rows, 10_000), vec![0..rows.len()]);
        assert_eq!(row_groups(&rows, 10), [0..1, 1..2, 2..3, 3..5]);
        // 2^25 f32 values per row group: 40M values make two.
        let dir = tmpdir("groups");
        let path = dir.join("big.parquet");
        let t = Tensor::randn([40 << 20], (Kind::Float, Device::Cpu));
        let named = [NamedTensor {
            name: "w".into(),
            role: Role::Param,
            tensor: t.shallow_clone(),
        }];
        write(&path, &named, Dtype::F32, &[], DEFAULT_CHUNK).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let groups = SerializedFileReader::new(file).unwrap().num_row_groups();
        assert_eq!(groups, 2);
        assert!(read(&path, Device::Cpu).unwrap().tensors[0]
            .tensor
            .equal(&t));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Writes chunk rows (name, numel, offset, values) with the Arrow writer,
    /// as another program might, to test what the reader accepts.
    fn write_rows(
        path: &Path,
        rows: &[(&str, i64, i32, i64, Vec<f32>)],
        chunk_size: Option<usize>,
    ) {
        write_rows_with(path, rows, chunk_size, WriterProperties::builder())
    }

    fn write_rows_with(
        path: &Path,
        rows: &[(&str, i64, i32, i64, Vec<f32>)],
        chunk_size: Option<usize>,
        props: parquet::file::properties::WriterPropertiesBuilder,
    ) {
        use arrow::array::{Float32Array, RecordBatch};
        use arrow::buffer::OffsetBuffer;
        use parquet::arrow::ArrowWriter;
        let mut meta = std::collections::HashMap::from([
            ("abcond.format".to_string(), FORMAT.to_string()),
            ("abcond.dtype".to_string(), "f32".to_string()),
        ]);
        if let Some(c) = chunk_size {
            meta.insert("abcond.chunk_size".to_string(), c.to_string());
        }
        let kv = meta
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let props = props.set_key_value_metadata(Some(kv)).build();
        let schema = Arc::new(schema(Dtype::F32).as_ref().clone().with_metadata(meta));
        let item = |t: DataType| Arc::new(Field::new("item", t, false));
        let shape = ListArray::new(
            item(DataType::Int64),
            OffsetBuffer::from_lengths(rows.iter().map(|_| 1)),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            None,
        );
        let values = ListArray::new(
            item(DataType::Float32),
            OffsetBuffer::from_lengths(rows.iter().map(|r| r.4.len())),
            Arc::new(Float32Array::from_iter_values(
                rows.iter().flat_map(|r| r.4.clone()),
            )),
            None,
        );
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "param"))),
                Arc::new(shape),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(values),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn read_err(path: &Path) -> String {
        match read(path, Device::Cpu) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => format!("{e:#}"),
        }
    }

    /// A file of the Arrow writer reads like our own; missing, reordered or
    /// overfull chunk rows are errors that name the tensor and the chunk.
    #[test]
    fn foreign_writer_and_damaged_chunk_rows() {
        let dir = tmpdir("damaged");
        let path = dir.join("t.parquet");
        let v = |n: usize, base: f32| (0..n).map(|i| base + i as f32).collect::<Vec<f32>>();
        let good = vec![
            ("a", 5, 0, 0, v(2, 0.0)),
            ("a", 5, 1, 2, v(2, 2.0)),
            ("a", 5, 2, 4, v(1, 4.0)),
            ("b", 1, 0, 0, v(1, 9.0)),
        ];
        write_rows(&path, &good, Some(2));
        let check = |path: &Path| {
            let f = read(path, Device::Cpu).unwrap();
            let a = Vec::<f32>::try_from(&f.get("a").unwrap().tensor).unwrap();
            assert_eq!(a, [0.0, 1.0, 2.0, 3.0, 4.0]);
            let b = Vec::<f32>::try_from(&f.get("b").unwrap().tensor).unwrap();
            assert_eq!(b, [9.0]);
        };
        // Dictionary-encoded (the Arrow writer's default): the record decoder.
        let values_chunk = |p: &Path| {
            let f = SerializedFileReader::new(std::fs::File::open(p).unwrap()).unwrap();
            pages_apply(f.metadata().row_group(0).column(6))
        };
        assert!(!values_chunk(&path));
        check(&path);
        // Without a dictionary the page path applies: tiny pages (rows cut
        // across pages), v1 and v2 data pages.
        for version in [
            parquet::file::properties::WriterVersion::PARQUET_1_0,
            parquet::file::properties::WriterVersion::PARQUET_2_0,
        ] {
            let props = WriterProperties::builder()
                .set_dictionary_enabled(false)
                .set_writer_version(version)
                .set_data_page_size_limit(4)
                .set_write_batch_size(1);
            write_rows_with(&path, &good, Some(2), props);
            assert!(values_chunk(&path), "{version:?}");
            check(&path);
        }

        // Damaged files, through the record decoder (dictionary) and the page path.
        for dictionary in [true, false] {
            let w = |rows: &[(&str, i64, i32, i64, Vec<f32>)], chunk_size| {
                let props = WriterProperties::builder().set_dictionary_enabled(dictionary);
                write_rows_with(&path, rows, chunk_size, props);
                assert_eq!(values_chunk(&path), !dictionary);
                read_err(&path)
            };
            // The last chunk of `a` missing: caught from the table of contents
            // with the chunk size, from the values without it.
            let missing: Vec<_> = good[..2].iter().chain(&good[3..]).cloned().collect();
            let e = w(&missing, Some(2));
            assert!(
                e.contains("tensor `a` chunk 1 spans 3 values, but the file's chunks hold 2"),
                "{e}"
            );
            let e = w(&missing, None);
            assert!(
                e.contains("tensor `a` chunk 1 holds 2 values, expected 3"),
                "{e}"
            );
            // Chunks out of order, and a chunk with more values than it should hold.
            let swapped = [&good[1], &good[0], &good[2], &good[3]].map(Clone::clone);
            let e = w(&swapped, Some(2));
            assert!(
                e.contains("tensor `a`: found chunk 1 at offset 2, expected chunk 0"),
                "{e}"
            );
            let mut overfull = good.clone();
            overfull[2].4 = v(3, 4.0);
            let e = w(&overfull, None);
            let want = if dictionary {
                "tensor `a` chunk 2 holds 3 values, expected 1"
            } else {
                "tensor `a` chunk 2 holds more than the 1 values it should"
            };
            assert!(e.contains(want), "{e}");
            // A tensor listed twice.
            let twice = [&good[3], &good[0], &good[1], &good[2], &good[3]].map(Clone::clone);
            let e = w(&twice, None);
            assert!(e.contains("tensor `b` appears twice"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Hand-encoded level streams: bit-packed groups, RLE runs, empty rows,
    /// rows across runs; and damaged streams are errors.
    #[test]
    fn level_runs() {
        let events = |rep: &[u8], def: &[u8], n: usize| {
            let mut out = Vec::new();
            walk_levels(rep, def, n, |e| {
                out.push(e);
                Ok(())
            })
            .map(|()| out)
        };
        // Rows of 3, 1, 0 and 6 values. rep: one bit-packed group
        // [0,1,1,0,0,0,1,1] (LSB first: 0b1100_0110), then an RLE run of three
        // 1s; def: RLE 1 × 4, RLE 0 × 1 (the empty row), RLE 1 × 6.
        let rep = [0b11, 0b1100_0110, 3 << 1, 1];
        let def = [4 << 1, 1, 1 << 1, 0, 6 << 1, 1];
        use Level::*;
        let got = events(&rep, &def, 11).unwrap();
        let (mut rows, mut row) = (Vec::new(), None);
        for e in &got {
            match e {
                Start => rows.extend(row.replace(0)),
                Values(n) => *row.as_mut().unwrap() += n,
            }
        }
        rows.extend(row);
        assert_eq!(rows, [3, 1, 0, 6], "{got:?}");
        // The RLE part arrives as one run.
        assert_eq!(got.last(), Some(&Values(3)));
        // Levels that end early, a level of 2, a value continuing an empty
        // row, and an undefined value continuing a row.
        assert!(events(&[4 << 1, 0], &[4 << 1, 1], 5).is_err());
        assert!(events(&[2 << 1, 2], &[2 << 1, 1], 2).is_err());
        assert!(events(&[1 << 1, 0, 1 << 1, 1], &[1 << 1, 0, 1 << 1, 1], 2).is_err());
        assert!(events(&[1 << 1, 0, 1 << 1, 1], &[1 << 1, 1, 1 << 1, 0], 2).is_err());
    }
}

//! Writing tensor files: chunk rows, row groups sized for readers, atomic
//! and (optionally) durable.

use super::{plan_rows, schema, toc_checksum, NamedTensor, Row, FORMAT, VALUE_SUMS_KEY};
use crate::store::atomic::Durability;
use crate::torch::dtype::Dtype;
use anyhow::{bail, Result};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Tensor};

/// Largest row group, in bytes of values: readers that load a row group at a
/// time (pyarrow, DuckDB) never need more than this at once.
const MAX_ROW_GROUP_BYTES: usize = 128 << 20;

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
/// them in one batch before the checkpoint that relies on them (src/train/).
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
    let kv_all: Vec<(String, String)> = kv
        .iter()
        .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    // Also in the Arrow schema, where pyarrow looks (table.schema.metadata).
    let schema_meta: std::collections::HashMap<String, String> = kv
        .iter()
        .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    // Each column's description in its field metadata (store/columns.rs).
    let arrow_schema = crate::store::columns::with_descriptions(&schema(dtype), "tensors")?
        .with_metadata(schema_meta);
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
        // XXH64 of each tensor's value bytes, in file order.
        let mut sums: Vec<twox_hash::XxHash64> = sorted
            .iter()
            .map(|_| twox_hash::XxHash64::with_seed(0))
            .collect();
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
                            use std::hash::Hasher;
                            let range = row.offset..row.offset + row.len;
                            match dtype {
                                Dtype::F32 => {
                                    let v = &host_values::<f32>(t)[range];
                                    sums[row.tensor].write(as_bytes(v));
                                    c.typed::<FloatType>().write_batch(v, Some(d), Some(r))?
                                }
                                Dtype::F64 => {
                                    let v = &host_values::<f64>(t)[range];
                                    sums[row.tensor].write(as_bytes(v));
                                    c.typed::<DoubleType>().write_batch(v, Some(d), Some(r))?
                                }
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
        use std::hash::Hasher;
        let value_sums = sums
            .iter()
            .map(|h| format!("{:016x}", h.finish()))
            .collect::<Vec<_>>()
            .join(",");
        let toc = toc_checksum(
            sorted
                .iter()
                .zip(&shapes)
                .zip(&numels)
                .map(|((t, s), &n)| (t.name.as_str(), t.role.name(), s.as_slice(), n)),
            &value_sums,
            kv_all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        writer.append_key_value_metadata(KeyValue::new(VALUE_SUMS_KEY.to_string(), value_sums));
        writer
            .append_key_value_metadata(KeyValue::new(crate::store::checksum::KEY.to_string(), toc));
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

/// Consecutive ranges of `rows` holding at most `max_values` values each (a
/// single larger row gets a group of its own).
pub(super) fn row_groups(rows: &[Row], max_values: usize) -> Vec<std::ops::Range<usize>> {
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

/// Plain numbers as their (little-endian) bytes.
fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain numbers; the byte view covers exactly the slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
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

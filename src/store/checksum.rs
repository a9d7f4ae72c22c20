//! Content checksums of the Parquet files abcond writes.
//!
//! Parquet checks its own structure but not the values: one flipped byte in a
//! data page of steps.parquet decodes to another number (a step of
//! −2.4e18) and is read without complaint. So every table abcond writes
//! carries `abcond.checksum` in its key-value metadata: `xxh64:<16 hex
//! digits>`, the XXH64 (seed 0) of the table's values in a canonical
//! encoding that does not depend on how Parquet laid them out:
//!
//! for each column in schema order: its name's UTF-8 bytes and a 0 byte; then
//! for each row: a 0 byte for null, else a 1 byte and the value — int32/int64
//! and float32/float64 as little-endian bytes (floats by their bit pattern),
//! booleans as one byte, strings as their length (u64 LE) and UTF-8 bytes,
//! lists as their length (u64 LE) and their items the same way. The column
//! sums (XXH64 each) are combined in order with the sum of the file's other
//! `abcond.*` metadata entries (sorted by key: key bytes, 0, value bytes, 0),
//! so that the run id or step a file claims is covered too.
//!
//! Readers recompute it from the decoded values and refuse a file whose sum
//! differs, naming the file. A file of a current format without the key is
//! refused too; files of older formats (written before checksums) are read
//! without one.

use anyhow::{bail, Result};
use arrow::array::{
    Array, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray,
};
use arrow::datatypes::DataType;
use std::hash::Hasher;
use std::path::Path;
use twox_hash::XxHash64;

pub const KEY: &str = "abcond.checksum";

/// A running checksum over record batches (see the module docs).
pub struct Checksum {
    /// One hasher per column: batches of one file are hashed column by
    /// column, each column's rows in order across batches.
    columns: Vec<XxHash64>,
}

impl Checksum {
    pub fn new(names: &[&str]) -> Checksum {
        Checksum {
            columns: names
                .iter()
                .map(|n| {
                    let mut h = XxHash64::with_seed(0);
                    h.write(n.as_bytes());
                    h.write_u8(0);
                    h
                })
                .collect(),
        }
    }

    pub fn for_batch(b: &RecordBatch) -> Checksum {
        let schema = b.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Checksum::new(&names)
    }

    /// Adds the rows of a batch (same columns as the first).
    pub fn update(&mut self, b: &RecordBatch) -> Result<()> {
        if b.num_columns() != self.columns.len() {
            bail!(
                "a batch has {} columns, expected {}",
                b.num_columns(),
                self.columns.len()
            );
        }
        for (h, c) in self.columns.iter_mut().zip(b.columns()) {
            hash_array(h, c.as_ref())?;
        }
        Ok(())
    }

    /// `xxh64:<hex>` of the whole table: the column sums combined in order,
    /// then the sum of the `abcond.*` metadata `meta` (the checksum's own
    /// entry and other keys left out).
    pub fn value<'a>(&self, meta: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let mut all = XxHash64::with_seed(0);
        for h in &self.columns {
            all.write_u64(h.finish());
        }
        let mut entries: Vec<(&str, &str)> = meta
            .into_iter()
            .filter(|(k, _)| k.starts_with("abcond.") && *k != KEY)
            .collect();
        entries.sort();
        let mut m = XxHash64::with_seed(0);
        for (k, v) in entries {
            m.write(k.as_bytes());
            m.write_u8(0);
            m.write(v.as_bytes());
            m.write_u8(0);
        }
        all.write_u64(m.finish());
        format!("xxh64:{:016x}", all.finish())
    }
}

fn hash_array(h: &mut XxHash64, a: &dyn Array) -> Result<()> {
    macro_rules! each {
        ($t:ty, |$v:ident| $body:expr) => {{
            let arr = a.as_any().downcast_ref::<$t>().expect("type matches");
            for i in 0..arr.len() {
                if arr.is_null(i) {
                    h.write_u8(0);
                } else {
                    h.write_u8(1);
                    let $v = arr.value(i);
                    $body;
                }
            }
        }};
    }
    match a.data_type() {
        DataType::Int64 => each!(Int64Array, |v| h.write(&v.to_le_bytes())),
        DataType::Int32 => each!(Int32Array, |v| h.write(&v.to_le_bytes())),
        DataType::Float64 => each!(Float64Array, |v| h.write(&v.to_bits().to_le_bytes())),
        DataType::Float32 => each!(Float32Array, |v| h.write(&v.to_bits().to_le_bytes())),
        DataType::Boolean => each!(BooleanArray, |v| h.write_u8(v as u8)),
        DataType::Utf8 => each!(StringArray, |v| {
            h.write(&(v.len() as u64).to_le_bytes());
            h.write(v.as_bytes());
        }),
        DataType::List(_) => each!(ListArray, |v| {
            h.write(&(v.len() as u64).to_le_bytes());
            hash_array(h, v.as_ref())?;
        }),
        other => bail!("no canonical checksum encoding for column type {other}"),
    }
    Ok(())
}

/// The checksum of one batch and its metadata.
pub fn of_batch(b: &RecordBatch, meta: &[(&str, String)]) -> Result<String> {
    let mut c = Checksum::for_batch(b);
    c.update(b)?;
    Ok(c.value(meta.iter().map(|(k, v)| (*k, v.as_str()))))
}

/// Compares the recorded checksum `want` of `path` (None: the file has none)
/// with the one computed from its values; `required`: the file's format
/// carries checksums.
pub fn verify(path: &Path, want: Option<&str>, got: &str, required: bool) -> Result<()> {
    match want {
        Some(w) if w == got => Ok(()),
        Some(w) => bail!(
            "{}: checksum mismatch (metadata `{KEY}` {w}, values {got}): the file is corrupt (a bad disk, an interrupted copy or an edit); restore it from a copy, or delete it and recompute (`abcond verify RUN_DIR` says what that costs)",
            path.display()
        ),
        None if required => bail!(
            "{}: metadata `{KEY}` is missing, which every file of its format carries: the file is corrupt or was not written by abcond",
            path.display()
        ),
        None => Ok(()),
    }
}

/// Checks any Parquet table abcond wrote against its `abcond.checksum`,
/// reading every value once. Returns whether the file carries one (tables
/// written before checksums do not; they are read as they are).
pub fn verify_parquet_file(path: &Path) -> Result<bool> {
    use anyhow::{anyhow, Context};
    let what = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("opening {what}"))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| {
            anyhow!("{what} is not a readable Parquet file (truncated or corrupt?): {e}")
        })?;
    let meta =
        crate::store::schema::kv_map(builder.metadata().file_metadata().key_value_metadata());
    let got = sum_batches(path, builder, &meta, |_| {})?;
    let want = meta.get(KEY).map(String::as_str);
    verify(path, want, &got, false)?;
    Ok(want.is_some())
}

/// Reads every record batch of the Parquet file `path` (opened as `builder`,
/// with `abcond.*` metadata `meta`), hands each to `sink` and returns the
/// checksum of the values and metadata, to compare with the recorded one.
pub fn sum_batches(
    path: &Path,
    builder: parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<std::fs::File>,
    meta: &std::collections::BTreeMap<String, String>,
    mut sink: impl FnMut(RecordBatch),
) -> Result<String> {
    use anyhow::anyhow;
    let what = path.display();
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut sum = Checksum::new(&names.iter().map(String::as_str).collect::<Vec<_>>());
    for b in builder.build()? {
        let b =
            b.map_err(|e| anyhow!("{what}: reading rows failed (truncated or corrupt?): {e}"))?;
        sum.update(&b).map_err(|e| anyhow!("{what}: {e}"))?;
        sink(b);
    }
    Ok(sum.value(meta.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(v: Vec<Option<f64>>, names: Vec<&str>) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("x", DataType::Float64, true),
                Field::new("s", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Float64Array::from(v)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn checksum_sees_every_value_and_its_position_but_not_the_batching() {
        let whole = batch(vec![Some(1.0), None, Some(-0.0)], vec!["a", "b", "c"]);
        let sum = of_batch(&whole, &[]).unwrap();
        assert!(sum.starts_with("xxh64:") && sum.len() == 22, "{sum}");
        // The same rows in two batches: the same sum.
        let mut c = Checksum::for_batch(&whole);
        c.update(&whole.slice(0, 1)).unwrap();
        c.update(&whole.slice(1, 2)).unwrap();
        assert_eq!(c.value([]), sum);
        // The abcond metadata counts, other metadata does not.
        let m = |k: &'static str| vec![(k, "7".to_string())];
        assert_ne!(of_batch(&whole, &m("abcond.step")).unwrap(), sum);
        assert_eq!(of_batch(&whole, &m("pandas")).unwrap(), sum);
        // Any change of a value, a null, the sign of zero or the order: another sum.
        for other in [
            batch(vec![Some(1.0), None, Some(0.0)], vec!["a", "b", "c"]),
            batch(vec![Some(1.0), Some(0.0), Some(-0.0)], vec!["a", "b", "c"]),
            batch(vec![Some(1.0), None, Some(-0.0)], vec!["a", "c", "b"]),
            batch(vec![Some(1.0), None, Some(-0.0)], vec!["a", "b", "cc"]),
        ] {
            assert_ne!(of_batch(&other, &[]).unwrap(), sum);
        }
    }
}

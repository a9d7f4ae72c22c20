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

mod read;
mod write;

pub use read::{check_identity, read, read_meta, Chunk, Header, TensorReader};
pub use write::{write, write_timed, Written};

use crate::torch::dtype::Dtype;
use arrow::datatypes::{DataType, Field, Schema};
use std::collections::BTreeMap;
use std::sync::Arc;
use tch::Tensor;

/// Version 2 carries checksums: `abcond.value_checksums` (the XXH64 of each
/// tensor's values as little-endian bytes of the file's dtype, 16 hex digits
/// each, comma-separated in file order) and `abcond.checksum` (of the table
/// of contents, those value sums and the other `abcond.*` metadata; see
/// [`toc_checksum`]). Both are in the Parquet footer's key-value metadata.
pub const FORMAT: &str = "abcond.tensors/2";
/// The format before checksums (read without them).
pub const FORMAT_V1: &str = "abcond.tensors/1";
pub const VALUE_SUMS_KEY: &str = "abcond.value_checksums";

/// `xxh64:<hex>` of a tensor file's table of contents (per tensor: name, kind,
/// shape and numel), its value sums and its other `abcond.*` metadata
/// (sorted; the two checksum keys left out).
pub fn toc_checksum<'a>(
    tensors: impl Iterator<Item = (&'a str, &'a str, &'a [i64], usize)>,
    value_sums: &str,
    meta: impl Iterator<Item = (&'a str, &'a str)>,
) -> String {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash64::with_seed(0);
    for (name, role, shape, numel) in tensors {
        h.write(name.as_bytes());
        h.write_u8(0);
        h.write(role.as_bytes());
        h.write_u8(0);
        h.write(&(shape.len() as u64).to_le_bytes());
        for d in shape {
            h.write(&d.to_le_bytes());
        }
        h.write(&(numel as u64).to_le_bytes());
    }
    h.write(value_sums.as_bytes());
    h.write_u8(0);
    let mut entries: Vec<(&str, &str)> = meta
        .filter(|(k, _)| {
            k.starts_with("abcond.") && *k != crate::store::checksum::KEY && *k != VALUE_SUMS_KEY
        })
        .collect();
    entries.sort();
    for (k, v) in entries {
        h.write(k.as_bytes());
        h.write_u8(0);
        h.write(v.as_bytes());
        h.write_u8(0);
    }
    format!("xxh64:{:016x}", h.finish())
}

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

pub(crate) fn schema(dtype: Dtype) -> Arc<Schema> {
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

/// One chunk row of the file: `len` values of tensor `tensor` from `offset`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    tensor: usize,
    chunk: i32,
    offset: usize,
    len: usize,
}

/// The chunk rows of tensors with `numels` values, in file order: each tensor
/// split into ceil(numel/chunk) rows (one empty row for an empty tensor).
pub(crate) fn plan_rows(numels: &[usize], chunk: usize) -> Vec<Row> {
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

#[cfg(test)]
mod tests {
    use super::read::{pages_apply, walk_levels, Level};
    use super::write::row_groups;
    use super::*;

    use crate::torch::dtype::Dtype;

    use arrow::array::{Int32Array, Int64Array, ListArray, StringArray};
    use arrow::datatypes::{DataType, Field};

    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::SerializedFileReader;

    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use tch::{Device, Kind, Tensor};

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
            // Hand-made files without checksums: the format before them.
            ("abcond.format".to_string(), FORMAT_V1.to_string()),
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

//! Reading tensor files: a streaming reader that decodes chunk rows straight
//! into tensors (pages of one column at a time), with every deviation from the
//! format an error naming the file.

use super::{
    schema, toc_checksum, NamedTensor, Role, Row, TensorFile, FORMAT, FORMAT_V1, VALUE_SUMS_KEY,
};
use crate::torch::dtype::Dtype;
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{Array, Int32Array, Int64Array, ListArray, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::column::reader::ColumnReader;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::{SerializedFileReader, SerializedPageReader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

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
    /// The XXH64 of each tensor's values (None: a file from before checksums).
    value_sums: Option<Vec<u64>>,
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
            Some(FORMAT | FORMAT_V1) => {}
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
        // The table of contents and metadata against their checksum (required
        // from format 2 on), and the recorded sum of each tensor's values,
        // checked as they stream (TensorReader::stream).
        let current = meta.get("abcond.format").map(String::as_str) == Some(FORMAT);
        let recorded = meta.get(VALUE_SUMS_KEY);
        let value_sums = match (meta.get(crate::store::checksum::KEY), recorded) {
            (None, None) if !current => None,
            (want, Some(sums)) => {
                let got = toc_checksum(
                    tensors
                        .iter()
                        .map(|t| (t.name.as_str(), t.role.name(), t.shape.as_slice(), t.numel)),
                    sums,
                    meta.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                crate::store::checksum::verify(path, want.map(String::as_str), &got, true)?;
                let parsed: Option<Vec<u64>> = sums
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(|x| u64::from_str_radix(x, 16).ok())
                    .collect();
                match parsed {
                    Some(v) if v.len() == tensors.len() => Some(v),
                    _ => bail!(
                        "{what}: metadata `{VALUE_SUMS_KEY}` does not hold one sum per tensor ({} tensors)",
                        tensors.len()
                    ),
                }
            }
            (_, None) => bail!(
                "{what}: metadata `{VALUE_SUMS_KEY}` is missing, which every file of format {FORMAT:?} carries: the file is corrupt or was not written by abcond"
            ),
        };
        Ok(TensorReader {
            path: path.to_path_buf(),
            meta,
            dtype,
            tensors,
            rows,
            value_sums,
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
    pub(super) fn stream(
        &self,
        wanted: impl Fn(usize) -> bool,
        mut sink: impl FnMut(usize, usize, &Chunk) -> Result<()>,
        decoded: bool,
    ) -> Result<()> {
        let what = self.path.display();
        // Each wanted tensor's values are hashed as they pass; once all have,
        // the sum must be the recorded one (an error then fails the whole
        // read, so a caller never keeps values from a corrupt file).
        let mut hashed: Vec<(twox_hash::XxHash64, usize)> = self
            .tensors
            .iter()
            .map(|_| (twox_hash::XxHash64::with_seed(0), 0))
            .collect();
        let sums = self.value_sums.as_deref();
        let tensors = &self.tensors;
        let mut sink = |t: usize, offset: usize, chunk: &Chunk| -> Result<()> {
            if let Some(sums) = sums {
                use std::hash::Hasher;
                let (h, n) = &mut hashed[t];
                h.write(chunk.bytes);
                *n += chunk.len();
                if *n == tensors[t].numel && h.finish() != sums[t] {
                    bail!(
                        "{what}: tensor `{}`: checksum mismatch (recorded {:016x}, values {:016x}): the file is corrupt (a bad disk, an interrupted copy or an edit); restore it from a copy or recompute it",
                        tensors[t].name,
                        sums[t],
                        h.finish()
                    );
                }
            }
            sink(t, offset, chunk)
        };
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
pub(super) fn pages_apply(c: &parquet::file::metadata::ColumnChunkMetaData) -> bool {
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
pub(super) enum Level {
    /// A new row (list) starts.
    Start,
    /// The current row has `n` more values.
    Values(usize),
}

/// Walks `n` repetition and definition levels (bit width 1, RLE/bit-packed
/// hybrid encoding) run by run: repetition 0 starts a row, definition 1 is a
/// value (0: the row is an empty list). Long runs cost O(1).
pub(super) fn walk_levels(
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

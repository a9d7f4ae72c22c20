//! One definition per row table. [`row_table!`] declares a row struct and,
//! from the same field list, its Arrow schema (column name = field name,
//! type and nullability from the field's Rust type, see [`Cell`]), its
//! column writer and its checked reader. Adding a column is one line.
//!
//! Rust type → column: `i64` int64, `f64` float64, `bool` boolean, `String`
//! and [`ProbeLabel`] utf8, `Vec<i64>` list<int64>; `Option<T>` is the same
//! column, nullable. A nullable column missing from a file reads as null (how
//! older formats without it are read); any other missing column, a column of
//! another type, or a null in a non-null column is an error naming the file
//! and the column.

use crate::store::label::{ProbeLabel, RowSource};
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A Rust value stored in one cell of a typed column.
pub trait Cell: Sized + Clone {
    fn data_type() -> DataType;
    fn nullable() -> bool;
    /// One column of these values.
    fn column(values: Vec<Self>) -> ArrayRef;
    /// The value of row `i` of `col` (whose type was checked); Err names the
    /// problem (a null in a non-null column, a label abcond does not write).
    fn get(col: &dyn Array, i: usize) -> std::result::Result<Self, String>;
    /// The value of a column the file does not have: null for nullable
    /// columns, none (an error) for the others.
    fn absent() -> Option<Self> {
        None
    }
    fn field(name: &str) -> Field {
        Field::new(name, Self::data_type(), Self::nullable())
    }
}

/// A non-null cell type; `T` and `Option<T>` are cells.
pub trait Base: Sized + Clone {
    type Array: Array + 'static;
    fn data_type() -> DataType;
    fn array(values: Vec<Option<Self>>) -> ArrayRef;
    fn value(a: &Self::Array, i: usize) -> std::result::Result<Self, String>;
}

fn downcast<T: Base>(col: &dyn Array) -> &T::Array {
    col.as_any()
        .downcast_ref::<T::Array>()
        .expect("column type checked before reading")
}

macro_rules! cells {
    ($($t:ty),* $(,)?) => {$(
        impl Cell for $t {
            fn data_type() -> DataType {
                <$t as Base>::data_type()
            }
            fn nullable() -> bool {
                false
            }
            fn column(values: Vec<Self>) -> ArrayRef {
                <$t as Base>::array(values.into_iter().map(Some).collect())
            }
            fn get(col: &dyn Array, i: usize) -> std::result::Result<Self, String> {
                if col.is_null(i) {
                    return Err("null in a column that has no nulls".into());
                }
                <$t as Base>::value(downcast::<$t>(col), i)
            }
        }
        impl Cell for Option<$t> {
            fn data_type() -> DataType {
                <$t as Base>::data_type()
            }
            fn nullable() -> bool {
                true
            }
            fn column(values: Vec<Self>) -> ArrayRef {
                <$t as Base>::array(values)
            }
            fn get(col: &dyn Array, i: usize) -> std::result::Result<Self, String> {
                if col.is_null(i) {
                    Ok(None)
                } else {
                    <$t as Base>::value(downcast::<$t>(col), i).map(Some)
                }
            }
            fn absent() -> Option<Self> {
                Some(None)
            }
        }
    )*};
}
cells!(i64, f64, bool, String, ProbeLabel, Vec<i64>);

impl Base for i64 {
    type Array = Int64Array;
    fn data_type() -> DataType {
        DataType::Int64
    }
    fn array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(Int64Array::from(values))
    }
    fn value(a: &Int64Array, i: usize) -> std::result::Result<Self, String> {
        Ok(a.value(i))
    }
}

impl Base for f64 {
    type Array = Float64Array;
    fn data_type() -> DataType {
        DataType::Float64
    }
    fn array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(Float64Array::from(values))
    }
    fn value(a: &Float64Array, i: usize) -> std::result::Result<Self, String> {
        Ok(a.value(i))
    }
}

impl Base for bool {
    type Array = BooleanArray;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(BooleanArray::from(values))
    }
    fn value(a: &BooleanArray, i: usize) -> std::result::Result<Self, String> {
        Ok(a.value(i))
    }
}

impl Base for String {
    type Array = StringArray;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(StringArray::from(values))
    }
    fn value(a: &StringArray, i: usize) -> std::result::Result<Self, String> {
        Ok(a.value(i).to_string())
    }
}

impl Base for ProbeLabel {
    type Array = StringArray;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(StringArray::from(
            values
                .into_iter()
                .map(|l| l.map(|l| l.to_string()))
                .collect::<Vec<_>>(),
        ))
    }
    fn value(a: &StringArray, i: usize) -> std::result::Result<Self, String> {
        a.value(i).parse::<ProbeLabel>().map_err(|e| e.to_string())
    }
}

impl Base for RowSource {
    type Array = StringArray;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(StringArray::from(
            values
                .into_iter()
                .map(|l| l.map(|l| l.name()))
                .collect::<Vec<_>>(),
        ))
    }
    fn value(a: &StringArray, i: usize) -> std::result::Result<Self, String> {
        a.value(i).parse::<RowSource>().map_err(|e| e.to_string())
    }
}

/// A non-null column that files of older formats lack: their rows all came
/// from snapshots.
impl Cell for RowSource {
    fn data_type() -> DataType {
        <RowSource as Base>::data_type()
    }
    fn nullable() -> bool {
        false
    }
    fn column(values: Vec<Self>) -> ArrayRef {
        <RowSource as Base>::array(values.into_iter().map(Some).collect())
    }
    fn get(col: &dyn Array, i: usize) -> std::result::Result<Self, String> {
        if col.is_null(i) {
            return Err("null in a column that has no nulls".into());
        }
        <RowSource as Base>::value(downcast::<RowSource>(col), i)
    }
    fn absent() -> Option<Self> {
        Some(RowSource::Snapshot)
    }
}

fn list_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int64, false))
}

impl Base for Vec<i64> {
    type Array = ListArray;
    fn data_type() -> DataType {
        DataType::List(list_item())
    }
    fn array(values: Vec<Option<Self>>) -> ArrayRef {
        let lengths = values.iter().map(|v| v.as_ref().map_or(0, Vec::len));
        let offsets = OffsetBuffer::from_lengths(lengths);
        let nulls = values
            .iter()
            .any(Option::is_none)
            .then(|| NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>()));
        let items = Int64Array::from_iter_values(values.into_iter().flatten().flatten());
        Arc::new(ListArray::new(list_item(), offsets, Arc::new(items), nulls))
    }
    fn value(a: &ListArray, i: usize) -> std::result::Result<Self, String> {
        a.value(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|v| v.values().to_vec())
            .ok_or_else(|| "list items are not int64".to_string())
    }
}

/// A row struct declared with [`row_table!`].
pub trait RowTable: Sized {
    /// The columns, in the order they are written.
    fn schema() -> Arc<Schema>;
    /// One column per field, in schema order.
    fn columns(rows: &[Self]) -> Vec<ArrayRef>;
    /// The rows of a batch read from `path` (columns checked by name and type).
    fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Vec<Self>>;

    fn batch(rows: &[Self]) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(Self::schema(), Self::columns(rows))?)
    }
}

/// The column `name` of a batch read from `path`, checked to have `T`'s type;
/// None when it is missing and `T` may be absent.
pub fn column<T: Cell>(batch: &RecordBatch, name: &str, path: &Path) -> Result<Option<ArrayRef>> {
    match batch.column_by_name(name) {
        Some(c) if *c.data_type() == T::data_type() => Ok(Some(c.clone())),
        Some(c) => bail!(
            "{}: column `{name}` has type {:?}, expected {:?}",
            path.display(),
            c.data_type(),
            T::data_type()
        ),
        None if T::absent().is_some() => Ok(None),
        None => bail!("{}: column `{name}` is missing", path.display()),
    }
}

/// Row `i` of a column from [`column`].
pub fn cell<T: Cell>(col: Option<&ArrayRef>, i: usize, name: &str, path: &Path) -> Result<T> {
    match col {
        Some(c) => T::get(c.as_ref(), i)
            .map_err(|e| anyhow!("{}: column `{name}`, row {i}: {e}", path.display())),
        None => Ok(T::absent().expect("checked by column()")),
    }
}

/// Declares a row struct and implements [`RowTable`] for it from its field
/// list: the field names are the column names, in order.
macro_rules! row_table {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl $crate::store::row::RowTable for $name {
            fn schema() -> std::sync::Arc<arrow::datatypes::Schema> {
                std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
                    $( <$ty as $crate::store::row::Cell>::field(stringify!($field)) ),*
                ]))
            }
            fn columns(rows: &[Self]) -> Vec<arrow::array::ArrayRef> {
                vec![
                    $( <$ty as $crate::store::row::Cell>::column(
                        rows.iter().map(|r| r.$field.clone()).collect()
                    ) ),*
                ]
            }
            #[allow(non_snake_case)]
            fn from_batch(
                batch: &arrow::array::RecordBatch,
                path: &std::path::Path,
            ) -> anyhow::Result<Vec<Self>> {
                $( let $field = $crate::store::row::column::<$ty>(batch, stringify!($field), path)?; )*
                (0..batch.num_rows())
                    .map(|i| {
                        Ok(Self {
                            $( $field: $crate::store::row::cell::<$ty>(
                                $field.as_ref(), i, stringify!($field), path
                            )? ),*
                        })
                    })
                    .collect()
            }
        }
    };
}
pub(crate) use row_table;

/// Reads the rows of a table written by abcond, accepting any of `formats`
/// (its `abcond.format` metadata; the first is the current one); returns the
/// rows and the file's `abcond.*` metadata.
pub fn read_rows<T: RowTable>(
    path: &Path,
    formats: &[&str],
) -> Result<(Vec<T>, BTreeMap<String, String>)> {
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
            "{what}: metadata `abcond.format` is {other:?}, expected {:?} (is this the right file?)",
            formats[0]
        ),
    }
    // The current format has every column; an older one may lack nullable
    // columns added since (read as null).
    if meta.get("abcond.format").map(String::as_str) == Some(formats[0]) {
        crate::store::schema::check_columns(path, builder.schema(), &T::schema())?;
    }
    let mut batches = Vec::new();
    let got = crate::store::checksum::sum_batches(path, builder, &meta, |b| batches.push(b))?;
    // The values are checked against the checksum before they become rows.
    let current = meta.get("abcond.format").map(String::as_str) == Some(formats[0]);
    crate::store::checksum::verify(
        path,
        meta.get(crate::store::checksum::KEY).map(String::as_str),
        &got,
        current,
    )?;
    let mut rows = Vec::new();
    for b in &batches {
        rows.extend(T::from_batch(b, path)?);
    }
    Ok((rows, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    row_table! {
        #[derive(Debug, Clone, PartialEq)]
        pub struct Demo {
            pub n: i64,
            pub x: Option<f64>,
            pub label: ProbeLabel,
            pub ok: Option<bool>,
            pub name: String,
            pub idx: Option<Vec<i64>>,
        }
    }

    #[test]
    fn schema_columns_and_rows_come_from_one_list() {
        let s = Demo::schema();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["n", "x", "label", "ok", "name", "idx"]);
        assert!(!s.field(0).is_nullable() && s.field(1).is_nullable());
        let rows = vec![
            Demo {
                n: 3,
                x: None,
                label: ProbeLabel::Full,
                ok: Some(true),
                name: "a".into(),
                idx: Some(vec![1, 2]),
            },
            Demo {
                n: -1,
                x: Some(0.5),
                label: ProbeLabel::Train,
                ok: None,
                name: String::new(),
                idx: None,
            },
        ];
        let b = Demo::batch(&rows).unwrap();
        assert_eq!(Demo::from_batch(&b, Path::new("t")).unwrap(), rows);
        // a nullable column may be absent (older formats); others may not
        let keep = |drop: &str| {
            let idx: Vec<usize> = (0..6).filter(|&i| s.field(i).name() != drop).collect();
            b.project(&idx).unwrap()
        };
        let back = Demo::from_batch(&keep("x"), Path::new("t")).unwrap();
        assert_eq!(back[1].x, None);
        let err = Demo::from_batch(&keep("n"), Path::new("t.parquet")).unwrap_err();
        assert_eq!(err.to_string(), "t.parquet: column `n` is missing");
    }
}

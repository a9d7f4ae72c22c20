//! The Parquet tables of `analysis/`: ab_region, ab_grid, aiming, pl and
//! trends (column reference: README.md, section Schemas).

use anyhow::Result;
use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use std::path::Path;
use std::sync::Arc;

/// A table built column by column.
#[derive(Default)]
pub struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Columns {
    pub fn utf8<S: AsRef<str>>(mut self, name: &str, v: impl IntoIterator<Item = S>) -> Self {
        let a: Vec<String> = v.into_iter().map(|s| s.as_ref().to_string()).collect();
        self.fields.push(Field::new(name, DataType::Utf8, false));
        self.arrays.push(Arc::new(StringArray::from(a)));
        self
    }
    pub fn i64(mut self, name: &str, v: impl IntoIterator<Item = i64>) -> Self {
        self.fields.push(Field::new(name, DataType::Int64, false));
        self.arrays.push(Arc::new(Int64Array::from_iter_values(v)));
        self
    }
    pub fn f64(mut self, name: &str, v: impl IntoIterator<Item = f64>) -> Self {
        self.fields.push(Field::new(name, DataType::Float64, false));
        self.arrays
            .push(Arc::new(Float64Array::from_iter_values(v)));
        self
    }
    pub fn f64_opt(mut self, name: &str, v: impl IntoIterator<Item = Option<f64>>) -> Self {
        self.fields.push(Field::new(name, DataType::Float64, true));
        self.arrays
            .push(Arc::new(v.into_iter().collect::<Float64Array>()));
        self
    }
    pub fn bool(mut self, name: &str, v: impl IntoIterator<Item = bool>) -> Self {
        self.fields.push(Field::new(name, DataType::Boolean, false));
        let v: Vec<bool> = v.into_iter().collect();
        self.arrays.push(Arc::new(BooleanArray::from(v)));
        self
    }
    pub fn bool_opt(mut self, name: &str, v: impl IntoIterator<Item = Option<bool>>) -> Self {
        self.fields.push(Field::new(name, DataType::Boolean, true));
        let v: Vec<Option<bool>> = v.into_iter().collect();
        self.arrays.push(Arc::new(BooleanArray::from(v)));
        self
    }
    pub fn utf8_opt(mut self, name: &str, v: impl IntoIterator<Item = Option<String>>) -> Self {
        self.fields.push(Field::new(name, DataType::Utf8, true));
        let v: Vec<Option<String>> = v.into_iter().collect();
        self.arrays.push(Arc::new(StringArray::from(v)));
        self
    }

    /// Writes the table atomically with `abcond.format` = `format` and `meta`.
    pub fn write(self, path: &Path, format: &str, meta: &[(&str, String)]) -> Result<()> {
        let schema = Arc::new(Schema::new(self.fields));
        let batch = RecordBatch::try_new(schema, self.arrays)?;
        let mut m = vec![("abcond.format", format.to_string())];
        m.extend(meta.iter().cloned());
        crate::store::tables::write_batch(path, &batch, &m)
    }
}

pub const REGION_FORMAT: &str = "abcond.ab_region/1";
pub const GRID_FORMAT: &str = "abcond.ab_grid/1";
pub const AIMING_FORMAT: &str = "abcond.aiming/1";
pub const PL_FORMAT: &str = "abcond.pl/1";
pub const TRENDS_FORMAT: &str = "abcond.trends/1";

//! Parquet helpers shared by the tensor files and the row tables: schema
//! checks and abcond's key-value metadata.

use anyhow::{bail, Result};
use arrow::datatypes::Schema;
use parquet::file::metadata::KeyValue;
use std::collections::BTreeMap;
use std::path::Path;

/// Fails unless `got` has every column of `want` with the same type.
pub fn check_columns(path: &Path, got: &Schema, want: &Schema) -> Result<()> {
    for f in want.fields() {
        match got.field_with_name(f.name()) {
            Ok(g) if g.data_type() == f.data_type() => {}
            Ok(g) => bail!(
                "{}: column `{}` has type {:?}, expected {:?}",
                path.display(),
                f.name(),
                g.data_type(),
                f.data_type()
            ),
            Err(_) => bail!("{}: column `{}` is missing", path.display(), f.name()),
        }
    }
    Ok(())
}

/// The `abcond.*` entries of a Parquet file's key-value metadata.
pub fn kv_map(kv: Option<&Vec<KeyValue>>) -> BTreeMap<String, String> {
    kv.map(|kv| {
        kv.iter()
            .filter(|e| e.key.starts_with("abcond."))
            .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    })
    .unwrap_or_default()
}

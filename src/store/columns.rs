//! Column descriptions and units, in the Arrow field metadata of every table
//! abcond writes (keys `description` and `unit`; pyarrow:
//! `schema.field(name).metadata`). One source for the texts:
//! `python/abcond/columns.yaml`, embedded here and read by the Python
//! companion's writer; docs/schemas.md's column tables say the same (tested
//! below). Field metadata is not part of the content checksum and changes no
//! value.

use anyhow::{anyhow, bail, Result};
use arrow::datatypes::{Field, Schema};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// The descriptions file, as shipped with the Python companion.
pub const SOURCE: &str = include_str!("../../python/abcond/columns.yaml");

/// Field-metadata key of a column's description.
pub const DESCRIPTION: &str = "description";
/// Field-metadata key of a column's unit (only columns that have one).
pub const UNIT: &str = "unit";

/// One column's texts.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub description: String,
    #[serde(default)]
    pub unit: Option<String>,
}

/// Table name → column name (or `*`, the config-key columns) → texts.
pub type Columns = BTreeMap<String, BTreeMap<String, Column>>;

/// The parsed descriptions.
pub fn columns() -> &'static Columns {
    static PARSED: OnceLock<Columns> = OnceLock::new();
    PARSED.get_or_init(|| {
        serde_yaml::from_str(SOURCE)
            .unwrap_or_else(|e| panic!("python/abcond/columns.yaml (embedded): {e}"))
    })
}

/// The table name of a format: `abcond.steps/4` → `steps`.
pub fn table_of(format: &str) -> Option<&str> {
    format.strip_prefix("abcond.")?.split('/').next()
}

/// The texts of column `name` of table `table`: its own entry, else the
/// table's `*` entry with `{name}` replaced.
pub fn describe(table: &str, name: &str) -> Result<Column> {
    let t = columns().get(table).ok_or_else(|| {
        anyhow!("python/abcond/columns.yaml has no table `{table}` (expected one entry per table abcond writes)")
    })?;
    if let Some(c) = t.get(name) {
        return Ok(c.clone());
    }
    match t.get("*") {
        Some(c) => Ok(Column {
            description: c.description.replace("{name}", name),
            unit: c.unit.clone(),
        }),
        None => bail!(
            "python/abcond/columns.yaml: table `{table}` has no description of column `{name}` (expected one for every column it writes)"
        ),
    }
}

/// `schema` with every top-level field's description (and unit) from table
/// `table` in its metadata; other field metadata is kept.
pub fn with_descriptions(schema: &Schema, table: &str) -> Result<Schema> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let c = describe(table, f.name())?;
            let mut meta: HashMap<String, String> = f.metadata().clone().into();
            meta.insert(DESCRIPTION.to_string(), c.description);
            if let Some(u) = c.unit {
                meta.insert(UNIT.to_string(), u);
            }
            Ok(f.as_ref().clone().with_metadata(meta))
        })
        .collect::<Result<_>>()?;
    Ok(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::row::RowTable;

    /// docs/schemas.md's column tables (`| column | type | meaning |` after a
    /// heading naming the format `abcond.<table>/<n>`): table → column →
    /// meaning, with `\|` as `|`; rows of config-key columns (`*…*`) left out.
    fn doc_tables(doc: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let (mut table, mut inside) = (None::<String>, false);
        for line in doc.lines() {
            if !line.starts_with('|') {
                inside = false;
                if line.starts_with("**") || line.starts_with("<a id") {
                    table = line
                        .split("(`abcond.")
                        .nth(1)
                        .and_then(|r| r.split('/').next())
                        .map(str::to_string);
                }
                continue;
            }
            if line.starts_with("| column |") {
                inside = table.is_some();
                continue;
            }
            if !inside || line.starts_with("|---") {
                continue;
            }
            let cells: Vec<String> = line
                .replace("\\|", "\u{0}")
                .split('|')
                .map(|c| c.trim().replace('\u{0}', "|"))
                .collect();
            assert_eq!(cells.len(), 5, "docs/schemas.md: malformed row {line:?}");
            if cells[1].starts_with('*') {
                continue;
            }
            out.entry(table.clone().unwrap())
                .or_default()
                .insert(cells[1].clone(), cells[3].clone());
        }
        out
    }

    const DOC: &str = include_str!("../../docs/schemas.md");

    /// Each column table of docs/schemas.md lists exactly the columns of
    /// columns.yaml, with the same meaning; the tables the docs describe in
    /// prose name every column.
    #[test]
    fn docs_and_descriptions_agree() {
        let docs = doc_tables(DOC);
        for t in [
            "steps",
            "tensors",
            "landscape",
            "curvature",
            "data",
            "vocab",
        ] {
            assert!(
                docs.contains_key(t),
                "docs/schemas.md: no column table of {t}"
            );
        }
        for (table, cols) in &docs {
            let yaml = &columns()[table];
            for (name, meaning) in cols {
                let c = yaml.get(name).unwrap_or_else(|| {
                    panic!("columns.yaml: table `{table}` lacks column `{name}` of docs/schemas.md")
                });
                assert_eq!(
                    &c.description, meaning,
                    "columns.yaml and docs/schemas.md describe `{table}.{name}` differently"
                );
            }
            for name in yaml.keys().filter(|n| *n != "*") {
                assert!(
                    cols.contains_key(name),
                    "docs/schemas.md: the table of `{table}` lacks column `{name}` of columns.yaml"
                );
            }
        }
        let commands = include_str!("../../docs/commands.md");
        for (table, cols) in columns() {
            if docs.contains_key(table) {
                continue;
            }
            let marker = format!("(`abcond.{table}/");
            let text = if DOC.contains(&marker) { DOC } else { commands };
            let start = text.find(&marker).unwrap_or_else(|| {
                panic!("no section of `abcond.{table}` in docs/schemas.md or docs/commands.md")
            });
            let section = &text[start..];
            let section = &section[..section[1..].find("\n**").map_or(section.len(), |e| e + 1)];
            for name in cols.keys().filter(|n| *n != "*") {
                assert!(
                    section.contains(&format!("`{name}`")),
                    "the section of `abcond.{table}` does not name column `{name}`"
                );
            }
        }
    }

    /// Every column of the fixed row tables has a description; config-key
    /// columns take the table's template; an unknown column of a table
    /// without one is an error naming it.
    #[test]
    fn every_fixed_column_is_described() {
        use crate::analysis::tables::{AimingTableRow, GridRow, PlTableRow, RegionRow, TrendsRow};
        use crate::store::tables::{CurvatureRow, LandscapeRow, StepRow};
        let tables: [(&str, std::sync::Arc<Schema>); 8] = [
            ("steps", StepRow::schema()),
            ("landscape", LandscapeRow::schema()),
            ("curvature", CurvatureRow::schema()),
            ("ab_region", RegionRow::schema()),
            ("ab_grid", GridRow::schema()),
            ("aiming", AimingTableRow::schema()),
            ("pl", PlTableRow::schema()),
            ("trends", TrendsRow::schema()),
        ];
        for (t, s) in tables {
            let d = with_descriptions(&s, t).unwrap();
            for f in d.fields() {
                assert!(!f.metadata()[DESCRIPTION].is_empty(), "{t}.{}", f.name());
                assert!(
                    columns()[t].contains_key(f.name()),
                    "{t}.{} uses the template",
                    f.name()
                );
            }
        }
        let s = crate::store::tensors::schema(crate::config::Dtype::F32);
        with_descriptions(&s, "tensors").unwrap();
        assert_eq!(
            describe("landscape", "model.width").unwrap().description,
            "the run's value of the swept config key `model.width` (the same on every row)"
        );
        assert_eq!(
            describe("steps", "wall_time_s").unwrap().unit.as_deref(),
            Some("s")
        );
        let err = describe("steps", "nonsense").unwrap_err().to_string();
        assert!(
            err.contains("`steps`") && err.contains("`nonsense`"),
            "{err}"
        );
        assert_eq!(table_of("abcond.steps/4"), Some("steps"));
    }
}

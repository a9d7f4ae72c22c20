//! Checks shared by the config sections.

use anyhow::{bail, Result};

/// Fails when an option that does not apply to `what` is set.
pub(crate) fn only(
    section: &str,
    what: &str,
    set: &[(&str, bool)],
    allowed: &[&str],
) -> Result<()> {
    for (key, is_set) in set {
        if *is_set && !allowed.contains(key) {
            bail!(
                "key `{section}.{key}` does not apply to {what}; its settings are: {}",
                allowed.join(", ")
            );
        }
    }
    Ok(())
}

pub(crate) fn positive(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("key `{name}` must be a positive number, got {v}");
    }
    Ok(())
}

/// The settings of one variant of a tagged section (a model kind, a data
/// set): read from the section's keys with serde (`#[serde(default,
/// deny_unknown_fields)]`, so `Default` is the one place of its defaults) and
/// checked by [`Settings::check`].
pub trait Settings: serde::Serialize + serde::de::DeserializeOwned + Default {
    /// Range checks; `what` names the variant in messages (e.g. "model kind `vit`").
    fn check(&self, _what: &str) -> Result<()> {
        Ok(())
    }
}

/// Reads a variant's settings from the keys of its section (without the tag
/// key); an error names the full key, and for a key the variant does not have,
/// the keys it has (`fixed`: the section's keys every variant has).
pub(crate) fn read_keys<T: Settings>(
    section: &str,
    what: &str,
    fixed: &[&str],
    keys: serde_yaml::Mapping,
) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(serde_yaml::Value::Mapping(keys)).map_err(|e| {
        let inner = e.inner().to_string();
        if let Some(rest) = inner.strip_prefix("unknown field `") {
            let key = rest.split('`').next().unwrap_or_default();
            let valid: Vec<&str> = fixed
                .iter()
                .copied()
                .chain(rest.split('`').skip(2).step_by(2))
                .collect();
            return format!(
                "key `{section}.{key}` does not apply to {what}; its settings are: {}",
                valid.join(", ")
            );
        }
        match e.path().to_string().as_str() {
            "." | "" => format!("key `{section}`: {inner}"),
            path => format!("key `{section}.{path}`: {inner}"),
        }
    })
}

/// A variant's settings as the YAML keys of its section.
pub(crate) fn to_keys<T: serde::Serialize>(settings: &T) -> serde_yaml::Mapping {
    match serde_yaml::to_value(settings) {
        Ok(serde_yaml::Value::Mapping(m)) => m,
        _ => serde_yaml::Mapping::new(),
    }
}

/// A variant without settings of its own (e.g. the ResNets: their size is fixed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl Settings for NoSettings {}

/// Fails unless `v` ≥ 1.
pub(crate) fn at_least_one(key: &str, v: i64) -> Result<()> {
    if v < 1 {
        bail!("key `{key}` must be at least 1, got {v}");
    }
    Ok(())
}

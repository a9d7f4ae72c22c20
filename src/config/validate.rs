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

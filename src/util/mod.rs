//! Small helpers: timestamps, host name, human-readable sizes and durations.

pub mod hdf5;
pub mod json;
pub mod progress;
pub mod rng;

use serde_yaml::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// A value as one line of YAML (`32`, `0.09`, `sgd`, `[1, 2]`, `{name: sgd, lr: 0.01}`).
pub fn yaml_inline(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Sequence(items) => format!(
            "[{}]",
            items.iter().map(yaml_inline).collect::<Vec<_>>().join(", ")
        ),
        // A whole section as a value (`optim: [{name: sgd, lr: 0.01}, …]`).
        Value::Mapping(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", yaml_inline(k), yaml_inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_string(),
    }
}

/// Current UTC time as RFC 3339, e.g. `2026-11-28T06:41:00Z`.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs as i64)
}

/// Formats seconds since the Unix epoch (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

pub fn human_duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

/// The libtorch shared library this process actually loaded (from
/// /proc/self/maps) and the torch version next to it, when it can be told.
pub fn loaded_libtorch() -> (Option<String>, Option<String>) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let lib = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libtorch_cpu"))
        .map(str::to_string);
    let version = lib.as_ref().and_then(|l| {
        let dir = std::path::Path::new(l).parent()?.parent()?;
        let text = std::fs::read_to_string(dir.join("version.py")).ok()?;
        text.lines()
            .find(|l| l.starts_with("__version__"))
            .and_then(|l| l.split('\'').nth(1).map(str::to_string))
    });
    (lib, version)
}

/// Rewrites floats in exponent notation that serde_yaml emits (`1e-8`) into a
/// form YAML 1.1 readers such as PyYAML also take as numbers (`1.0e-08`
/// needs a dot and a signed exponent there; bare `1e-8` becomes a string).
pub fn yaml11_floats(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let split = line.rfind(": ").map(|i| i + 2).or_else(|| {
            line.trim_start()
                .starts_with("- ")
                .then(|| line.find("- ").unwrap() + 2)
        });
        match split {
            Some(at) if is_exp_float(&line[at..]) => {
                out.push_str(&line[..at]);
                out.push_str(&yaml11_float(&line[at..]));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn is_exp_float(tok: &str) -> bool {
    let t = tok.strip_prefix('-').unwrap_or(tok);
    let Some((mant, exp)) = t.split_once(['e', 'E']) else {
        return false;
    };
    let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    let (int, frac) = mant.split_once('.').unwrap_or((mant, "0"));
    !int.is_empty()
        && [int, frac, exp]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn yaml11_float(tok: &str) -> String {
    let (mant, exp) = tok.split_once(['e', 'E']).unwrap();
    let mant = if mant.contains('.') {
        mant.to_string()
    } else {
        format!("{mant}.0")
    };
    let exp = if exp.starts_with(['+', '-']) {
        exp.to_string()
    } else {
        format!("+{exp}")
    };
    format!("{mant}e{exp}")
}

/// `xxh64:<16 hex digits>` of a file's bytes (XXH64, seed 0), read in 1 MiB
/// pieces: what a data or module file is, for run identities.
pub fn file_digest(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::hash::Hasher;
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    if !f.metadata()?.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    let mut h = twox_hash::XxHash64::with_seed(0);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    Ok(format!("xxh64:{:016x}", h.finish()))
}

/// `xxh64:<16 hex digits>` of bytes in memory, as [`file_digest`] of a file
/// holding them.
pub fn bytes_digest(bytes: &[u8]) -> String {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash64::with_seed(0);
    h.write(bytes);
    format!("xxh64:{:016x}", h.finish())
}

/// The largest YAML file abcond reads (configs, presets, run.yaml): 4 MiB.
/// Real ones are a few KiB; the limit keeps `abcond train /dev/zero` or a
/// mistaken multi-GB path from filling memory.
pub const MAX_YAML_BYTES: u64 = 4 << 20;

/// Reads a UTF-8 text file of at most `limit` bytes that must be a regular
/// file (not a FIFO, a device or a directory: none of those is a config, and
/// reading one could block or never end). `what` names the file in errors
/// ("config file", "run manifest").
pub fn read_text_file(path: &std::path::Path, what: &str, limit: u64) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    let m = file
        .metadata()
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if !m.file_type().is_file() {
        anyhow::bail!(
            "{what} {} is not a regular file (a directory, device or pipe cannot be a {what})",
            path.display()
        );
    }
    if m.len() > limit {
        anyhow::bail!(
            "{what} {} is {} bytes, more than the {} bytes abcond reads (is this the right file?)",
            path.display(),
            m.len(),
            limit
        );
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if bytes.len() as u64 > limit {
        anyhow::bail!(
            "{what} {} grew past {limit} bytes while being read",
            path.display()
        );
    }
    String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{what} {} is not UTF-8 text: {e}", path.display()))
}

/// This process's command line, as recorded in lock files and run.yaml.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_848_060), "2026-11-28T06:41:00Z");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_duration(75.0), "1m15s");
    }

    #[test]
    fn exponent_floats_become_yaml11_numbers() {
        let text = "a: 1e-8\nb:\n- 2.5e10\n- 0.9\nname: 3e5x\nc: -1E+3\n";
        let fixed = yaml11_floats(text);
        assert_eq!(
            fixed,
            "a: 1.0e-8\nb:\n- 2.5e+10\n- 0.9\nname: 3e5x\nc: -1.0E+3\n".replace("E+3", "e+3")
        );
        // still the same numbers for serde_yaml
        let v: serde_yaml::Value = serde_yaml::from_str(&fixed).unwrap();
        assert_eq!(v["a"].as_f64(), Some(1e-8));
        assert_eq!(v["b"][0].as_f64(), Some(2.5e10));
        assert_eq!(v["c"].as_f64(), Some(-1e3));
    }
}

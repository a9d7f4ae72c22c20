//! YAML values written as JSON (`--json` output), without a JSON crate: the
//! values abcond prints are YAML trees of strings, numbers, booleans, nulls,
//! sequences and string-keyed mappings.

use serde_yaml::Value;

/// `v` as one line of JSON. Non-finite numbers become null (JSON has none);
/// a mapping key that is not a string is written as its YAML text.
pub fn to_json(v: &Value) -> String {
    let mut s = String::new();
    write(v, &mut s);
    s
}

fn write(v: &Value, s: &mut String) {
    match v {
        Value::Null => s.push_str("null"),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !f.is_finite() => s.push_str("null"),
            _ if n.is_f64() => {
                let f = n.as_f64().unwrap();
                // Rust's shortest round-trip form; JSON needs a digit before any exponent.
                s.push_str(&format!("{f:?}"));
            }
            _ => s.push_str(&n.to_string()),
        },
        Value::String(t) => string(t, s),
        Value::Sequence(items) => {
            s.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write(x, s);
            }
            s.push(']');
        }
        Value::Mapping(m) => {
            s.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                match k {
                    Value::String(t) => string(t, s),
                    other => string(
                        serde_yaml::to_string(other).unwrap_or_default().trim_end(),
                        s,
                    ),
                }
                s.push_str(": ");
                write(x, s);
            }
            s.push('}');
        }
        Value::Tagged(t) => write(&t.value, s),
    }
}

fn string(t: &str, s: &mut String) {
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_of_a_yaml_tree() {
        let v: Value = serde_yaml::from_str(
            "a: 1\nb: [0.5, 1.0e-7, true, null]\nc: \"q\\\"uote\\n\"\nd: {e: .inf}\n",
        )
        .unwrap();
        assert_eq!(
            to_json(&v),
            r#"{"a": 1, "b": [0.5, 1e-7, true, null], "c": "q\"uote\n", "d": {"e": null}}"#
        );
    }
}

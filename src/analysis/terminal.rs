//! The summary abcond prints after an analysis: the facts of
//! [`GroupSummary::facts`](super::summary::GroupSummary::facts), as report.md
//! shows them, or (`--json`) summary.yaml's document as JSON.

use super::result::Analysis;
use super::summary::Summary;

/// The concise summary printed by `abcond analyze` and `abcond run`.
pub fn render(a: &Analysis) -> String {
    let s = &a.settings;
    let summary = Summary::of(a);
    let mut out = String::new();
    let rows: usize = a.runs.iter().map(|r| r.rows.len()).sum();
    out.push_str(&format!(
        "analysis: {} run(s), {} group(s), {} landscape rows; f_i* = {}, alpha ≥ beta + {}, rows: {}\n",
        a.runs.len(),
        a.groups.len(),
        rows,
        s.f_star.describe(),
        s.margin,
        if s.train_only { "i_k only" } else { "i_k and extra minibatches" }
    ));
    out.push_str("slack T = inner − alpha·(loss_k − loss_ref) + beta·(loss_k − f_i*); feasible where T ≥ 0 on every row\n");
    for g in &summary.groups {
        out.push_str(&format!(
            "[{}] {} run(s), {} minibatch rows: region {}\n",
            g.label,
            g.runs.len(),
            g.rows,
            g.alpha_beta.region
        ));
        // The region's kind is in the heading.
        for f in g.facts(s.margin).iter().skip(1) {
            out.push_str(&format!("  {}: {}\n", f.label, f.value));
        }
    }
    for n in &a.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    for s in &a.skipped {
        out.push_str(&format!("skipped: {s}\n"));
    }
    out.push_str(&format!(
        "analysis: {} ({} files{})\n",
        a.dir.display(),
        a.written.len(),
        if a.settings.plots { ", report.md" } else { "" }
    ));
    out
}

/// `--json`: one line of JSON, `{"analysis_dir", "files", "notes", "summary"}`,
/// where `summary` is the document written to summary.yaml (its ±∞ and NaN
/// are the strings ".inf", "-.inf" and ".nan" there and here; JSON has no
/// such numbers) and `files` the paths written under `analysis_dir`.
pub fn json(a: &Analysis) -> anyhow::Result<String> {
    use serde_yaml::{Mapping, Value};
    let summary = match &a.summary {
        Some(s) => serde_yaml::to_value(s)?,
        None => serde_yaml::to_value(Summary::of(a))?,
    };
    let strings = |v: Vec<String>| Value::Sequence(v.into_iter().map(Value::String).collect());
    let mut m = Mapping::new();
    m.insert(
        "analysis_dir".into(),
        Value::String(a.dir.display().to_string()),
    );
    m.insert(
        "files".into(),
        strings(a.written.iter().map(|p| p.display().to_string()).collect()),
    );
    m.insert("notes".into(), strings(a.notes.clone()));
    m.insert("summary".into(), summary);
    Ok(crate::util::json::to_json(&Value::Mapping(m)))
}

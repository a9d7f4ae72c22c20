//! Phase 3 of the pipeline: `abcond analyze PATH` turns the landscape rows of
//! one run, or of an experiment of many runs (seeds, sweep values), into what
//! the paper reports and more — the exact feasible (alpha, beta) region per
//! group of runs, the slack grid of the heat maps, Aiming/PL/QCvx constants,
//! the interpolation error, sweep trends, figures and a report — all under
//! `PATH/analysis/`.

pub mod alphabeta;
pub mod bound;
pub mod conditions;
pub mod config;
pub mod inputs;
pub mod plots;
pub mod region;
pub mod report;
pub mod result;
pub mod summary;
pub mod tables;
pub mod terminal;

use crate::config::AnalysisConfig;
pub use result::{aggregate, Analysis, GroupResult, RunCurves, RunSigma};
pub use summary::{BOUND_TEXT, SUMMARY_FORMAT};
pub use terminal::render;

use anyhow::{Context, Result};
use conditions::{AimingRow, PlRow};
use inputs::{Group, RunData};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use tables::Columns;

/// Analyses PATH (a run directory or a directory of runs) and writes
/// `PATH/analysis/`. Settings: `base` when given, else the runs' own
/// `analysis` section; then the `--set analysis.*` overrides.
pub fn analyze(
    path: &Path,
    base: Option<AnalysisConfig>,
    overrides: &[String],
    quiet: bool,
) -> Result<Analysis> {
    let dirs = inputs::discover(path)?;
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    let runs = inputs::load_runs(&dirs, &mut skipped)?;
    if runs.is_empty() {
        anyhow::bail!(
            "nothing to analyse under {}: no run has landscape.parquet ({}); probe runs with `abcond probe RUN_DIR`",
            path.display(),
            skipped.join("; ")
        );
    }
    let settings = inputs::settings(&runs, base, overrides, &mut notes)?;
    let groups = inputs::group(&runs);
    crate::util::progress::note(
        quiet,
        &format!(
            "analysing {} run(s) in {} group(s) under {}",
            runs.len(),
            groups.len(),
            path.display()
        ),
    );
    let mut results = Vec::new();
    for g in groups {
        results.push(analyse_group(&runs, g, &settings));
    }
    let dir = path.join("analysis");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut a = Analysis {
        dir,
        settings,
        runs,
        groups: results,
        skipped,
        notes,
        written: Vec::new(),
    };
    write_outputs(&mut a)?;
    Ok(a)
}

fn analyse_group(runs: &[RunData], group: Group, s: &AnalysisConfig) -> GroupResult {
    let rows = alphabeta::rows(runs, &group, s);
    let ab = alphabeta::analyse(rows, s.margin);
    let frame = alphabeta::frame(&ab, s);
    let cells = alphabeta::grid(&ab.rows, frame, s.grid.points as usize, s.margin);
    let sigma: Vec<RunSigma> = group
        .runs
        .iter()
        .filter_map(|&run| {
            alphabeta::sigma_int2(&runs[run], s.f_star).map(|(sigma_int2, f_ref, from_full)| {
                RunSigma {
                    run,
                    sigma_int2,
                    f_ref,
                    from_full,
                }
            })
        })
        .collect();
    let conditions = group
        .runs
        .iter()
        .filter_map(|&ri| {
            let aiming = conditions::aiming_rows(&runs[ri].rows);
            if aiming.is_empty() {
                return None;
            }
            let pl = conditions::pl_rows(&aiming, &s.pl_deltas);
            let c = conditions::constants(&aiming, &pl, &s.pl_deltas);
            Some(RunCurves {
                run: ri,
                aiming,
                pl,
                constants: c,
            })
        })
        .collect();
    let curvature = bound::curvature(runs, &group.runs, s.train_only);
    let sig: Vec<(usize, f64, f64)> = sigma
        .iter()
        .map(|s| (s.run, s.sigma_int2, s.f_ref))
        .collect();
    let group_sigma2 =
        (!sig.is_empty()).then(|| sig.iter().map(|s| s.1).sum::<f64>() / sig.len() as f64);
    let (bound, run_bounds) = bound::for_group(
        runs,
        &group.runs,
        &ab.region,
        &curvature,
        &sig,
        group_sigma2,
    );
    GroupResult {
        group,
        ab,
        frame,
        cells,
        sigma,
        conditions,
        curvature,
        bound,
        run_bounds,
    }
}

fn settings_meta(a: &Analysis) -> Vec<(&'static str, String)> {
    vec![
        ("abcond.f_star", a.settings.f_star.describe()),
        ("abcond.margin", format!("{}", a.settings.margin)),
        (
            "abcond.rows",
            if a.settings.train_only {
                "train".to_string()
            } else {
                "train+extra".to_string()
            },
        ),
    ]
}

fn write_outputs(a: &mut Analysis) -> Result<()> {
    let dir = a.dir.clone();
    let meta = settings_meta(a);
    let mut written = Vec::new();

    // ab_region.parquet
    let mut g_col = Vec::new();
    let mut order = Vec::new();
    let mut kind = Vec::new();
    let mut alpha = Vec::new();
    let mut beta = Vec::new();
    for g in &a.groups {
        let r = &g.ab.region;
        // The boundary in order: the incoming direction, the vertices, the
        // outgoing direction.
        let boundary = r
            .ray_first
            .map(|d| ("direction", d))
            .into_iter()
            .chain(r.vertices.iter().map(|v| ("vertex", *v)))
            .chain(r.ray_last.map(|d| ("direction", d)));
        for (i, (k, v)) in boundary.enumerate() {
            g_col.push(g.group.label.clone());
            order.push(i as i64);
            kind.push(k.to_string());
            alpha.push(v.0);
            beta.push(v.1);
        }
    }
    let p = dir.join("ab_region.parquet");
    with_group_keys(Columns::default().utf8("group", &g_col), a, &g_col)
        .i64("order", order)
        .utf8("kind", &kind)
        .f64("alpha", alpha)
        .f64("beta", beta)
        .write(&p, tables::REGION_FORMAT, &meta)?;
    written.push(p);

    // ab_grid.parquet
    let mut c = GridCols::default();
    for g in &a.groups {
        // A group without minibatch rows has no slack to map.
        let cells = if g.ab.rows.is_empty() {
            &[][..]
        } else {
            &g.cells[..]
        };
        for cell in cells {
            let row = &g.ab.rows[cell.binding];
            let lr = &a.runs[row.run].rows[row.row];
            c.group.push(g.group.label.clone());
            c.alpha.push(cell.alpha);
            c.beta.push(cell.beta);
            c.in_domain.push(cell.in_domain);
            c.min_slack.push(cell.min_slack);
            c.violations.push(cell.violations as i64);
            c.rows.push(g.ab.rows.len() as i64);
            c.feasible.push(cell.feasible());
            c.run_id.push(lr.run_id.clone());
            c.step.push(lr.step);
            c.probe.push(lr.probe.to_string());
        }
    }
    let p = dir.join("ab_grid.parquet");
    with_group_keys(Columns::default().utf8("group", &c.group), a, &c.group)
        .f64("alpha", c.alpha)
        .f64("beta", c.beta)
        .bool("in_domain", c.in_domain)
        .f64("min_slack", c.min_slack)
        .i64("violations", c.violations)
        .i64("rows", c.rows)
        .bool("feasible", c.feasible)
        .utf8("binding_run_id", &c.run_id)
        .i64("binding_step", c.step)
        .utf8("binding_probe", &c.probe)
        .write(&p, tables::GRID_FORMAT, &meta)?;
    written.push(p);

    // aiming.parquet and pl.parquet
    let mut am = AimCols::default();
    let mut pl = PlCols::default();
    for g in &a.groups {
        for RunCurves {
            run: ri,
            aiming: rows,
            pl: plrows,
            ..
        } in &g.conditions
        {
            let run = &a.runs[*ri];
            for r in rows {
                am.group.push(g.group.label.clone());
                am.run_id.push(run.run_id.clone());
                am.seed.push(run.seed);
                am.rows.push(r.clone());
            }
            for r in plrows {
                let src = rows.iter().find(|x| x.step == r.step).expect("same steps");
                pl.group.push(g.group.label.clone());
                pl.run_id.push(run.run_id.clone());
                pl.seed.push(run.seed);
                pl.rows
                    .push((r.clone(), src.loss, src.loss_ref, src.grad_norm));
            }
        }
    }
    let p = dir.join("aiming.parquet");
    with_group_keys(Columns::default().utf8("group", &am.group), a, &am.group)
        .utf8("run_id", &am.run_id)
        .i64("seed", am.seed)
        .i64("step", am.rows.iter().map(|r| r.step))
        .f64("loss", am.rows.iter().map(|r| r.loss))
        .f64("loss_ref", am.rows.iter().map(|r| r.loss_ref))
        .f64("gap", am.rows.iter().map(|r| r.gap))
        .f64("inner", am.rows.iter().map(|r| r.inner))
        .f64("grad_norm", am.rows.iter().map(|r| r.grad_norm))
        .f64("dist", am.rows.iter().map(|r| r.dist))
        .f64("cos", am.rows.iter().map(|r| r.cos))
        .f64("angle_deg", am.rows.iter().map(|r| r.angle_deg))
        .f64("aiming_coef", am.rows.iter().map(|r| r.aiming_coef))
        .f64_opt("qcvx_ratio", am.rows.iter().map(|r| r.qcvx_ratio))
        .write(&p, tables::AIMING_FORMAT, &meta)?;
    written.push(p);
    let p = dir.join("pl.parquet");
    with_group_keys(Columns::default().utf8("group", &pl.group), a, &pl.group)
        .utf8("run_id", &pl.run_id)
        .i64("seed", pl.seed)
        .i64("step", pl.rows.iter().map(|r| r.0.step))
        .f64("delta", pl.rows.iter().map(|r| r.0.delta))
        .f64("loss", pl.rows.iter().map(|r| r.1))
        .f64("loss_ref", pl.rows.iter().map(|r| r.2))
        .f64("grad_norm", pl.rows.iter().map(|r| r.3))
        .f64_opt("log_2mu", pl.rows.iter().map(|r| r.0.log_2mu))
        .write(&p, tables::PL_FORMAT, &meta)?;
    written.push(p);

    // trends.parquet (a sweep: more than one group)
    if a.groups.len() > 1 {
        let p = dir.join("trends.parquet");
        trends_table(a).write(&p, tables::TRENDS_FORMAT, &meta)?;
        written.push(p);
    }

    let p = dir.join("summary.yaml");
    let text = crate::util::yaml11_floats(&serde_yaml::to_string(&summary::summary_yaml(a))?);
    crate::store::atomic::write_bytes(&p, text.as_bytes())?;
    written.push(p);

    if a.settings.plots {
        written.extend(report::figures_and_report(a)?);
    }

    // Outputs of an earlier analysis that this one did not write (other
    // groups, plots switched off) would mislead: remove them.
    let keep: std::collections::BTreeSet<PathBuf> = written.iter().cloned().collect();
    for e in std::fs::read_dir(&dir)?.flatten() {
        let p = e.path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        if p.is_file()
            && ["png", "svg", "parquet", "md", "yaml"].contains(&ext)
            && !keep.contains(&p)
        {
            std::fs::remove_file(&p).with_context(|| format!("removing stale {}", p.display()))?;
        }
    }
    a.written = written;
    Ok(())
}

#[derive(Default)]
struct GridCols {
    group: Vec<String>,
    alpha: Vec<f64>,
    beta: Vec<f64>,
    in_domain: Vec<bool>,
    min_slack: Vec<f64>,
    violations: Vec<i64>,
    rows: Vec<i64>,
    feasible: Vec<bool>,
    run_id: Vec<String>,
    step: Vec<i64>,
    probe: Vec<String>,
}

#[derive(Default)]
struct AimCols {
    group: Vec<String>,
    run_id: Vec<String>,
    seed: Vec<i64>,
    rows: Vec<AimingRow>,
}

#[derive(Default)]
struct PlCols {
    group: Vec<String>,
    run_id: Vec<String>,
    seed: Vec<i64>,
    rows: Vec<(PlRow, f64, f64, f64)>,
}

/// One column per grouping key (the sweep axes: `model.width`, `optim`, …), each
/// row taking the value of its group (`labels[i]` names row i's group): int64
/// when every group's value is an integer (as in runs.parquet and the landscape
/// columns), float64 when every one is a number, else the one-line YAML text.
/// A single group ("all") has no keys, so no columns are added.
fn with_group_keys(mut c: Columns, a: &Analysis, labels: &[String]) -> Columns {
    let Some(first) = a.groups.first() else {
        return c;
    };
    let by_label: std::collections::HashMap<&str, usize> = a
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.group.label.as_str(), i))
        .collect();
    let index: Vec<usize> = labels.iter().map(|l| by_label[l.as_str()]).collect();
    for (k, key) in first.group.values.iter().map(|v| v.0.clone()).enumerate() {
        let all: Vec<&Value> = a.groups.iter().map(|g| &g.group.values[k].1).collect();
        let val = |i: &usize| &a.groups[*i].group.values[k].1;
        if all.iter().all(|v| v.as_i64().is_some()) {
            c = c.i64(&key, index.iter().map(|i| val(i).as_i64().unwrap()));
        } else if all.iter().all(|v| v.as_f64().is_some()) {
            c = c.f64(&key, index.iter().map(|i| val(i).as_f64().unwrap()));
        } else {
            c = c.utf8(&key, index.iter().map(|i| inputs::show(val(i))));
        }
    }
    c
}

fn trends_table(a: &Analysis) -> Columns {
    let gs = &a.groups;
    let labels: Vec<String> = gs.iter().map(|g| g.group.label.clone()).collect();
    let c = with_group_keys(Columns::default().utf8("group", &labels), a, &labels);
    let best = |g: &GroupResult| g.ab.best.clone();
    c.i64("runs", gs.iter().map(|g| g.group.runs.len() as i64))
        .i64("rows", gs.iter().map(|g| g.ab.rows.len() as i64))
        .utf8("region", gs.iter().map(|g| g.ab.region.kind()))
        .f64_opt(
            "alpha_min",
            gs.iter().map(|g| g.ab.min_alpha.map(|m| m.alpha)),
        )
        .f64_opt(
            "beta_at_alpha_min",
            gs.iter().map(|g| g.ab.min_alpha.map(|m| m.beta_min)),
        )
        .f64_opt(
            "alpha_beta_minus_one",
            gs.iter().map(|g| g.ab.gap_one.map(|m| m.alpha)),
        )
        .f64_opt("alpha", gs.iter().map(|g| best(g).map(|b| b.alpha)))
        .f64_opt("beta", gs.iter().map(|g| best(g).map(|b| b.beta)))
        .f64_opt("gap", gs.iter().map(|g| best(g).map(|b| b.alpha - b.beta)))
        .f64_opt("ratio", gs.iter().map(|g| best(g).map(|b| b.ratio)))
        .bool_opt(
            "ratio_attained",
            gs.iter().map(|g| best(g).map(|b| b.attained)),
        )
        .f64_opt("sigma_int2", gs.iter().map(|g| g.sigma_int2()))
        .f64_opt(
            "beta_sigma_int2",
            gs.iter().map(|g| g.bound_terms().map(|t| t.0)),
        )
        .f64_opt(
            "bound_term",
            gs.iter().map(|g| g.bound_terms().map(|t| t.1)),
        )
        .f64_opt(
            "L",
            gs.iter()
                .map(|g| g.curvature.minibatch.as_ref().map(|m| m.value)),
        )
        .f64_opt(
            "L_full",
            gs.iter()
                .map(|g| g.curvature.full.as_ref().map(|m| m.value)),
        )
        .f64_opt(
            "sgd_bound",
            gs.iter()
                .map(|g| g.bound.bound.as_ref().map(|b| b.at.value)),
        )
        .bool(
            "sgd_bound_applicable",
            gs.iter().map(|g| g.bound.applicable()),
        )
        .f64_opt(
            "sgd_observed",
            gs.iter()
                .map(|g| g.bound.observed.as_ref().map(|o| o.value)),
        )
}

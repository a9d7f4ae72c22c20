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
pub mod output;
pub mod plots;
pub mod region;
pub mod report;
pub mod result;
pub mod summary;
pub mod tables;
pub mod terminal;

use crate::config::AnalysisConfig;
pub use result::{aggregate, Analysis, GroupResult, RunCurves, RunSigma};
pub use summary::{Summary, BOUND_TEXT, SUMMARY_FORMAT};
pub use terminal::{json, render};

use anyhow::Result;
use inputs::{Group, RunData};
use std::path::Path;
use tables::{write_grouped, AimingTableRow, GridRow, PlTableRow, RegionRow, TrendsRow};

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
    // Written into a staging directory, swapped in whole (output.rs).
    let staging = output::stage(path)?;
    let mut a = Analysis {
        dir: staging.dir.clone(),
        settings,
        runs,
        groups: results,
        skipped,
        notes,
        written: Vec::new(),
        summary: None,
    };
    write_outputs(&mut a)?;
    a.written = staging.commit(&a.written)?;
    a.dir = path.join("analysis");
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
            "abcond.grid_axes",
            match a.settings.grid.effective_axes() {
                crate::config::GridAxes::Gap => "gap (alpha and alpha − beta, log-spaced)",
                crate::config::GridAxes::AlphaBeta => "alpha-beta (alpha and beta, evenly spaced)",
            }
            .to_string(),
        ),
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
    let mut region = Vec::new();
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
            region.push(RegionRow {
                group: g.group.label.clone(),
                order: i as i64,
                kind: k.to_string(),
                alpha: v.0,
                beta: v.1,
            });
        }
    }
    let p = dir.join("ab_region.parquet");
    write_grouped(&p, a, &region, |r| &r.group, tables::REGION_FORMAT, &meta)?;
    written.push(p);

    // ab_grid.parquet
    let mut grid = Vec::new();
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
            grid.push(GridRow {
                group: g.group.label.clone(),
                alpha: cell.alpha,
                beta: cell.beta,
                in_domain: cell.in_domain,
                min_slack: cell.min_slack,
                violations: cell.violations as i64,
                rows: g.ab.rows.len() as i64,
                feasible: cell.feasible(),
                binding_run_id: lr.run_id.clone(),
                binding_step: lr.step,
                binding_probe: lr.probe.to_string(),
            });
        }
    }
    let p = dir.join("ab_grid.parquet");
    write_grouped(&p, a, &grid, |r| &r.group, tables::GRID_FORMAT, &meta)?;
    written.push(p);

    // aiming.parquet and pl.parquet
    let mut aiming = Vec::new();
    let mut pl = Vec::new();
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
                aiming.push(AimingTableRow {
                    group: g.group.label.clone(),
                    run_id: run.run_id.clone(),
                    seed: run.seed,
                    step: r.step,
                    loss: r.loss,
                    loss_ref: r.loss_ref,
                    gap: r.gap,
                    inner: r.inner,
                    grad_norm: r.grad_norm,
                    dist: r.dist,
                    cos: r.cos,
                    angle_deg: r.angle_deg,
                    aiming_coef: r.aiming_coef,
                    qcvx_ratio: r.qcvx_ratio,
                });
            }
            for r in plrows {
                let src = rows.iter().find(|x| x.step == r.step).expect("same steps");
                pl.push(PlTableRow {
                    group: g.group.label.clone(),
                    run_id: run.run_id.clone(),
                    seed: run.seed,
                    step: r.step,
                    delta: r.delta,
                    loss: src.loss,
                    loss_ref: src.loss_ref,
                    grad_norm: src.grad_norm,
                    log_2mu: r.log_2mu,
                });
            }
        }
    }
    let p = dir.join("aiming.parquet");
    write_grouped(&p, a, &aiming, |r| &r.group, tables::AIMING_FORMAT, &meta)?;
    written.push(p);
    let p = dir.join("pl.parquet");
    write_grouped(&p, a, &pl, |r| &r.group, tables::PL_FORMAT, &meta)?;
    written.push(p);

    // trends.parquet (a sweep: more than one group)
    if a.groups.len() > 1 {
        let p = dir.join("trends.parquet");
        let rows = trends(a);
        write_grouped(&p, a, &rows, |r| &r.group, tables::TRENDS_FORMAT, &meta)?;
        written.push(p);
    }

    let p = dir.join("summary.yaml");
    let summary = summary::Summary::of(a);
    crate::store::seal::write_sealed(&p, &summary.yaml()?, crate::store::seal::Comment::Hash)?;
    written.push(p);

    if a.settings.plots {
        written.extend(report::figures_and_report(a, &summary)?);
    }

    a.written = written;
    a.summary = Some(summary);
    Ok(())
}

/// One row per group of a sweep.
fn trends(a: &Analysis) -> Vec<TrendsRow> {
    a.groups
        .iter()
        .map(|g| {
            let best = g.ab.best.as_ref();
            TrendsRow {
                group: g.group.label.clone(),
                runs: g.group.runs.len() as i64,
                rows: g.ab.rows.len() as i64,
                region: g.ab.region.kind().to_string(),
                alpha_min: g.ab.min_alpha.map(|m| m.alpha),
                beta_at_alpha_min: g.ab.min_alpha.map(|m| m.beta_min),
                alpha_beta_minus_one: g.ab.gap_one.map(|m| m.alpha),
                alpha: best.map(|b| b.alpha),
                beta: best.map(|b| b.beta),
                gap: best.map(|b| b.alpha - b.beta),
                ratio: best.map(|b| b.ratio),
                ratio_attained: best.map(|b| b.attained),
                sigma_int2: g.sigma_int2(),
                beta_sigma_int2: g.bound_terms().map(|t| t.0),
                bound_term: g.bound_terms().map(|t| t.1),
                L: g.curvature.minibatch.as_ref().map(|m| m.value),
                L_full: g.curvature.full.as_ref().map(|m| m.value),
                sgd_bound: g.bound.bound.as_ref().map(|b| b.at.value),
                sgd_bound_applicable: g.bound.applicable(),
                sgd_observed: g.bound.observed.as_ref().map(|o| o.value),
            }
        })
        .collect()
}

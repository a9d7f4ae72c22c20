//! `abcond analyze` end to end: an experiment of half-space runs (two seeds ×
//! two learning rates) checked by an independent numpy computation
//! (tests/check_analysis.py: exact region vs brute-force grid, grid cells,
//! landmarks, sigma_int², Aiming/PL, trends, dtypes), an empty region, the
//! figures' pixels, and bad input.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const HALFSPACE: &str = "experiment: hs
seed: 0
device: cpu
model: {preset: halfspace}
data: {dataset: halfspace, dim: 2, per_class: 20, variance: 2.0}
train: {batch_size: 1, steps: 600}
optim: {name: sgd, lr: 0.25}
snapshots: {every: 50}
probe: {extra_batches: 3, full: true, curvature: {enabled: true, probes: [train, extra, full]}}
";

/// Trains and probes the half-space experiment for seeds 0, 1 and learning
/// rates 0.25, 0.1 (once per test binary run) and returns the experiment directory.
fn experiment(dir: &Path) -> PathBuf {
    let cfg = write_config(dir, "hs.yaml", HALFSPACE);
    for seed in ["0", "1"] {
        for lr in ["0.25", "0.1"] {
            let out = abcond(
                dir,
                &[
                    "--quiet",
                    "--out",
                    "out",
                    "run",
                    cfg.to_str().unwrap(),
                    "--set",
                    &format!("seed={seed}"),
                    "--set",
                    &format!("optim.lr={lr}"),
                ],
            );
            ok(&out);
        }
    }
    dir.join("out/hs")
}

/// `abcond --quiet analyze PATH --set S …`, checked to succeed; returns stdout.
fn analyze(dir: &Path, path: &Path, sets: &[&str]) -> String {
    let mut args = vec!["--quiet", "analyze", path.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(&abcond(dir, &args))
}

#[test]
fn experiment_analysis_matches_independent_computation() {
    let dir = scratch("analysis-experiment");
    let exp = experiment(&dir);
    let stdout = analyze(&dir, &exp, &[]);
    assert!(stdout.contains("4 run(s), 2 group(s)"), "{stdout}");
    assert!(stdout.contains("[optim.lr=0.1] 2 run(s)"), "{stdout}");
    assert!(stdout.contains("[optim.lr=0.25] 2 run(s)"), "{stdout}");
    let adir = exp.join("analysis");
    for f in [
        "ab_region.parquet",
        "ab_grid.parquet",
        "aiming.parquet",
        "pl.parquet",
        "trends.parquet",
        "summary.yaml",
        "report.md",
        "trends.png",
        "trends.svg",
        "ab_heatmap-optim.lr-0.1.png",
        "ab_heatmap-optim.lr-0.25.svg",
        "pl-optim.lr-0.1.png",
        "aiming-optim.lr-0.25.png",
        "loss-optim.lr-0.1.png",
    ] {
        assert!(adir.join(f).is_file(), "{f} missing");
    }
    let out = run_python("check_analysis.py", &[adir.to_str().unwrap()]);
    assert!(
        out.contains("ok trends: 2 rows") && out.contains("ok dtypes"),
        "{out}"
    );

    // f_i* = the smallest observed loss, i_k only, and margin 2: the region
    // is empty; the least-violation pair and the most violating rows are
    // checked by the same script.
    let stdout = analyze(
        &dir,
        &exp,
        &[
            "analysis.f_star=min-observed",
            "analysis.train_only=true",
            "analysis.margin=2",
            "analysis.plots=false",
        ],
    );
    assert!(stdout.contains("region empty"), "{stdout}");
    assert!(stdout.contains("most violating rows"), "{stdout}");
    let out = run_python("check_analysis.py", &[adir.to_str().unwrap()]);
    assert!(out.contains("ok region/grid/summary"), "{out}");
    // Plots off: the figures of the earlier analysis are gone, not stale.
    assert!(!adir.join("trends.png").exists());
    assert!(!adir.join("report.md").exists());

    // min-observed with the default margin: a non-empty region again.
    analyze(
        &dir,
        &exp,
        &["analysis.f_star=min-observed", "analysis.grid.points=31"],
    );
    let out = run_python("check_analysis.py", &[adir.to_str().unwrap()]);
    assert!(out.contains("ok region/grid/summary"), "{out}");

    // One run of the experiment: its own analysis/, one group, no trends.
    let one = std::fs::read_dir(&exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("run.yaml").is_file())
        .unwrap();
    analyze(&dir, &one, &[]);
    assert!(one.join("analysis/ab_heatmap.png").is_file());
    assert!(!one.join("analysis/trends.parquet").exists());
    let out = run_python(
        "check_analysis.py",
        &[one.join("analysis").to_str().unwrap()],
    );
    assert!(out.contains("ok aiming/pl"), "{out}");
}

/// Pixel statistics of a PNG: (width, height, distinct colours, share of
/// non-white pixels, red-ish, blue-ish, near-black pixel counts).
fn pixels(path: &Path) -> (u32, u32, usize, f64, usize, usize, usize) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = img.dimensions();
    let mut colours = std::collections::HashSet::new();
    let (mut ink, mut red, mut blue, mut black) = (0usize, 0, 0, 0);
    for p in img.pixels() {
        let [r, g, b] = p.0;
        colours.insert(p.0);
        if (r, g, b) != (255, 255, 255) {
            ink += 1;
        }
        if r > 150 && g < 130 && b < 130 {
            red += 1;
        }
        if b > 150 && r < 130 && g < 170 {
            blue += 1;
        }
        if r < 40 && g < 40 && b < 40 {
            black += 1;
        }
    }
    (
        w,
        h,
        colours.len(),
        ink as f64 / (w * h) as f64,
        red,
        blue,
        black,
    )
}

#[test]
fn figures_show_the_data() {
    let dir = scratch("analysis-figures");
    let cfg = write_config(&dir, "hs.yaml", HALFSPACE);
    // Stdout of `run` ends with the analysis summary and the run directory.
    let stdout = ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    assert!(stdout.contains("[all] 1 run(s)"), "{stdout}");
    let run = run_dir(&dir.join("out"), "hs");
    let a = run.join("analysis");

    // Heat map: a colour field with both signs of slack, the black region
    // outline, legible text; not a blank canvas.
    let (w, h, colours, ink, red, blue, black) = pixels(&a.join("ab_heatmap.png"));
    assert_eq!((w, h), (1000, 800));
    assert!(colours > 200, "{colours} colours");
    assert!(ink > 0.5, "only {ink} of the heat map is drawn");
    assert!(red > 20_000 && blue > 20_000, "red {red}, blue {blue}");
    assert!(black > 1_000, "black {black}");
    for f in ["pl.png", "aiming.png", "loss.png"] {
        let (w, h, colours, ink, _, blue, _) = pixels(&a.join(f));
        assert_eq!((w, h), (900, 640), "{f}");
        assert!(
            colours > 20 && ink > 0.05 && blue > 300,
            "{f}: {colours} colours, ink {ink}, blue {blue}"
        );
    }
    // SVG: one rectangle per grid cell, the outline, axis labels as text.
    let svg = std::fs::read_to_string(a.join("ab_heatmap.svg")).unwrap();
    assert!(svg.matches("<rect").count() > 101 * 101, "few rects");
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "no outline"
    );
    assert!(
        svg.contains(">\nalpha\n</text>") && svg.contains(">\nbeta\n</text>"),
        "axis labels"
    );
    // report.md links every figure it shows, and they exist.
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    for img in md.split("](").skip(1) {
        let name = img.split(')').next().unwrap();
        assert!(a.join(name).is_file(), "report links missing {name}");
    }
    assert!(md.contains("| beta = alpha − 1 | smallest alpha "), "{md}");
    // The printed summary and report.md state the same facts (one source:
    // the summary structure): every `  label: value` line of the group is a
    // `| label | value |` row of the report.
    let facts: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("[all]"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(facts.len() >= 6, "{stdout}");
    for f in facts {
        let (label, value) = f.trim_start().split_once(": ").unwrap();
        let row = format!("| {label} | {} |", value.replace('|', "\\|"));
        assert!(md.contains(&row), "report.md lacks `{row}`:\n{md}");
    }
}

#[test]
fn bad_analysis_input_is_explained() {
    let dir = scratch("analysis-bad");
    let out = abcond(&dir, &["analyze", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nowhere is not a directory"),
        "{}",
        stderr(&out)
    );
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let out = abcond(&dir, &["analyze", "empty"]);
    assert!(
        stderr(&out).contains("no run directories under empty"),
        "{}",
        stderr(&out)
    );

    // A trained but unprobed run is skipped, and with nothing else it is an error.
    let cfg = write_config(
        &dir,
        "hs.yaml",
        &HALFSPACE.replace("steps: 600", "steps: 50"),
    );
    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "train", cfg.to_str().unwrap()],
    ));
    let out = abcond(&dir, &["analyze", "out/hs"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no landscape.parquet") && err.contains("abcond probe"),
        "{err}"
    );

    ok(&abcond(
        &dir,
        &["--quiet", "--out", "out", "run", cfg.to_str().unwrap()],
    ));
    for (set, want) in [
        ("analysis.margin=-1", "analysis.margin"),
        ("analysis.f_star=lowest", "min-observed"),
        ("analysis.grid.points=1", "analysis.grid.points"),
        ("analysis.colour=red", "colour"),
        ("probe.extra_batches=3", "only takes analysis.*"),
    ] {
        let out = abcond(&dir, &["analyze", "out/hs", "--set", set]);
        assert_eq!(out.status.code(), Some(1), "{set}");
        assert!(stderr(&out).contains(want), "{set}: {}", stderr(&out));
    }
}

//! The README quotes the quickstart's output: this test runs the quickstart
//! (`configs/quickstart.yaml`, the full 50 epochs on the real Fashion-MNIST,
//! about a minute on 2 cores) and compares what it prints with the quote, so
//! the quote cannot go stale. libtorch's f32 kernels round differently on
//! Intel and AMD CPUs (tests/pins.rs), so the numbers are compared exactly on
//! the CPU vendor the quote names and, on another vendor, every line but its
//! numbers. The quote was made with 2 intra-op threads (the default on a
//! 2-core machine), which the test sets.

mod common;
use common::*;
use std::path::Path;

/// The quoted block between the README's markers, and the CPU vendor named
/// in its begin marker.
fn quote() -> (String, String) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let begin = "<!-- quickstart-output: begin, cpu ";
    let start = readme
        .find(begin)
        .expect("README: no quickstart-output begin marker");
    let rest = &readme[start + begin.len()..];
    let (vendor, rest) = rest.split_once(" -->\n").expect("README: begin marker");
    let end = rest
        .find("<!-- quickstart-output: end -->")
        .expect("README: no quickstart-output end marker");
    let block = rest[..end]
        .strip_prefix("```text\n")
        .and_then(|b| b.strip_suffix("```\n"))
        .expect("README: the quote is a ```text block");
    (block.to_string(), vendor.to_string())
}

/// `text` with every number replaced by `#`.
fn masked(text: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in text.chars() {
        if c.is_ascii_digit() || (in_num && c == '.') {
            if !in_num {
                out.push('#');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}

#[test]
fn quickstart_output_is_the_quoted_one() {
    let (quoted, vendor) = quote();
    let real = Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    assert!(
        real.exists(),
        "{} is missing: install the Debian package dataset-fashion-mnist (./dev test does)",
        real.display()
    );
    let dir = scratch("readme-quickstart");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/quickstart.yaml");
    // As `./dev quickstart` runs it on a 2-core machine (libtorch's intra-op
    // thread count changes the rounding of its reductions), from a directory
    // whose results/ is the default output.
    let out = cmd(&dir)
        .env_remove("OMP_NUM_THREADS")
        .args(["--quiet", "--threads", "2", "run", config.to_str().unwrap()])
        .output()
        .expect("running abcond");
    let printed = ok(&out);
    if cpu_vendor() == vendor {
        assert_eq!(
            printed, quoted,
            "the quickstart printed (left) what the README does not quote (right): update the README's quote"
        );
    } else {
        eprintln!(
            "CPU vendor {} is not the quote's ({vendor}): comparing the lines without their numbers",
            cpu_vendor()
        );
        assert_eq!(masked(&printed), masked(&quoted), "printed:\n{printed}");
    }
    // The figure the README shows is the one this run draws.
    assert!(dir
        .join("results/quickstart")
        .read_dir()
        .unwrap()
        .flatten()
        .any(|d| d.path().join("analysis/overview.png").is_file()));
}

#[test]
fn masking_keeps_words() {
    assert_eq!(
        masked("smallest alpha: 0.100 (beta in [0, 0]) seed0-5f20edb5"),
        "smallest alpha: # (beta in [#, #]) seed#-#f#edb#"
    );
}

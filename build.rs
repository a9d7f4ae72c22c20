//! Build script: bakes an rpath to libtorch, compiles the C++ shims in
//! `csrc/` (libtorch settings and operations tch does not expose, the CPU
//! block cache), embeds the
//! model presets from `models/*.yaml`, and records provenance (git commit,
//! torch version) that `run.yaml` reports.
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn main() {
    // torch-sys (links = "tch") exports the libtorch library directory it linked
    // against. Baking it as an rpath lets the binary run on the machine that built
    // it without LD_LIBRARY_PATH. `--enable-new-dtags` makes it a DT_RUNPATH, which
    // the loader searches *after* LD_LIBRARY_PATH, so LD_LIBRARY_PATH still wins
    // elsewhere (e.g. on a GPU machine with its own torch).
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,{dir}");
        println!("cargo:rustc-env=ABCOND_LIBTORCH_LIB={dir}");
        // torch-sys asks for libtorch_cuda, but nothing references its symbols, so
        // the linker's --as-needed drops it and CUDA never registers itself.
        // Keep it as a dependency when this libtorch has it (CPU-only ones don't).
        if Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
        let version_py = Path::new(&dir).join("..").join("version.py");
        let version = std::fs::read_to_string(&version_py)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("__version__"))
                    .and_then(|l| l.split('\'').nth(1).map(str::to_string))
            })
            .or_else(|| {
                std::fs::read_to_string(Path::new(&dir).join("..").join("build-version"))
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        println!("cargo:rustc-env=ABCOND_TORCH_VERSION={version}");
        compile_shim(Path::new(&dir));
    } else {
        println!("cargo:rustc-env=ABCOND_LIBTORCH_LIB=");
        println!("cargo:rustc-env=ABCOND_TORCH_VERSION=unknown");
        panic!("DEP_TCH_LIBTORCH_LIB is not set: torch-sys did not report its libtorch directory, so the C++ shims in csrc/ cannot be compiled");
    }

    // Git commit of the source tree, when built from a checkout.
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let commit = match (commit.is_empty(), dirty) {
        (true, _) => String::new(),
        (false, true) => format!("{commit}-dirty"),
        (false, false) => commit,
    };
    println!("cargo:rustc-env=ABCOND_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");

    // Model presets: every models/*.yaml becomes a built-in preset, so the binary
    // works from any directory.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let models = Path::new(&manifest).join("models");
    println!("cargo:rerun-if-changed=models");
    let mut entries: Vec<_> = std::fs::read_dir(&models)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    entries.sort();
    let mut code = String::from(
        "/// Built-in model presets: (name, YAML text).\npub const PRESETS: &[(&str, &str)] = &[\n",
    );
    for path in &entries {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_stem().unwrap().to_string_lossy();
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("presets.rs");
    std::fs::write(out, code).unwrap();
}

/// Compiles the C++ shims (csrc/*.cpp, sharing csrc/guarded.h) against the
/// libtorch torch-sys links, with the flags torch-sys uses for its own libtch (C++17, the C++11 ABI setting of
/// that libtorch). `lib` is libtorch's lib directory; the headers are beside it
/// (`<lib>/../include`, for a pip torch and a libtorch archive alike).
fn compile_shim(lib: &Path) {
    let include = lib.join("..").join("include");
    // A directory: any file in it (headers included) triggers a rebuild.
    println!("cargo:rerun-if-changed=csrc");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        // -isystem: warnings for our files, not for libtorch's headers.
        .warnings(true)
        .flag("-isystem")
        .flag(include.display().to_string())
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // The f64 reductions of csrc/ops.cpp must round each operation as
        // written (no fused multiply-add), on every target.
        .flag("-ffp-contract=off")
        .file("csrc/torch_ctx.cpp")
        .file("csrc/ops.cpp")
        .file("csrc/cpu_cache.cpp")
        .compile("abcond_torch_ctx");
}

/// The _GLIBCXX_USE_CXX11_ABI of the libtorch in use, found as torch-sys finds
/// it: $LIBTORCH_CXX11_ABI, else (with $LIBTORCH_USE_PYTORCH) what the Python
/// torch reports, else 1 (every libtorch since 2.7 uses the C++11 ABI).
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if let Ok(v) = std::env::var("LIBTORCH_CXX11_ABI") {
        return v;
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        // torch-sys's choice of interpreter.
        let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
            "python"
        } else {
            "python3"
        };
        let out = Command::new(python)
            .args([
                "-c",
                "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
            ])
            .output()
            .unwrap_or_else(|e| panic!("running {python} to ask torch for its C++ ABI: {e}"));
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !(out.status.success() && (v == "0" || v == "1")) {
            panic!(
                "{python} did not report torch._C._GLIBCXX_USE_CXX11_ABI (got {v:?}; stderr: {}); set LIBTORCH_CXX11_ABI=0 or 1",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        return v;
    }
    "1".to_string()
}

//! Times abcond's snapshot I/O on the tensors of an existing tensor file; the
//! driver is bench/snapshot_io.py, which times torch.save/torch.load and
//! safetensors on the same tensors (docs/benchmarks-storage.md).
//!
//!   snapshot_io write SRC DST [--warmup]
//!       reads SRC (untimed), then writes its tensors to DST with
//!       `tensors::write_timed`, the writer of `abcond train` (atomic: fsync,
//!       rename); --warmup first writes them once untimed (to DST.warmup)
//!   snapshot_io read FILE [--warmup OTHER]
//!       opens FILE and streams its values into tensors allocated (and
//!       touched) beforehand, as `Model::load_from` does for the probe;
//!       --warmup first reads OTHER the same way, untimed
//!
//! Prints one JSON line: op, values, bytes, seconds (and for writes
//! seconds_before_sync: until the bytes were handed to the OS, before fsync).
//! The timing is in-process, so process start and libtorch loading are
//! excluded, and the warm-up puts the process where a training or probe
//! process is after its first snapshot (code paths and allocator warm), as
//! the Python side is after its first repeat. Intra-op threads: libtorch's
//! default, i.e. $OMP_NUM_THREADS (the driver sets 1, as for PyTorch).

use abcond::store::atomic::Durability;
use abcond::store::tensors::{self, TensorReader, DEFAULT_CHUNK};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", src, dst] => write(Path::new(src), Path::new(dst), false),
        ["write", src, dst, "--warmup"] => write(Path::new(src), Path::new(dst), true),
        ["read", file] => read(Path::new(file), None),
        ["read", file, "--warmup", other] => read(Path::new(file), Some(Path::new(other))),
        _ => bail!(
            "usage: snapshot_io write SRC DST [--warmup] | snapshot_io read FILE [--warmup OTHER]"
        ),
    }
}

fn write(src: &Path, dst: &Path, warmup: bool) -> Result<()> {
    let file =
        tensors::read(src, Device::Cpu).with_context(|| format!("reading {}", src.display()))?;
    let values: usize = file.tensors.iter().map(|t| t.tensor.numel()).sum();
    let meta = [("abcond.content", "iterate".to_string())];
    if warmup {
        let scratch = dst.with_extension("warmup");
        tensors::write(&scratch, &file.tensors, file.dtype, &meta, DEFAULT_CHUNK)?;
        std::fs::remove_file(&scratch)?;
    }
    let w = tensors::write_timed(
        dst,
        &file.tensors,
        file.dtype,
        &meta,
        DEFAULT_CHUNK,
        Durability::Durable,
    )?;
    println!(
        "{{\"op\": \"write\", \"values\": {values}, \"bytes\": {}, \"seconds\": {}, \"seconds_before_sync\": {}}}",
        w.bytes, w.seconds, w.seconds_before_sync
    );
    Ok(())
}

/// Streams the file at `path` into `dest` (one flat tensor per tensor of the file).
fn stream_into(path: &Path, dest: &[Tensor]) -> Result<TensorReader> {
    let reader = TensorReader::open(path)?;
    reader.for_each_chunk(
        |_| true,
        |t, offset, chunk| {
            chunk.copy_into(&dest[t].narrow(0, offset as i64, chunk.len() as i64));
            Ok(())
        },
    )?;
    Ok(reader)
}

/// Flat zero tensors for the tensors of the file at `path` (allocated and
/// written, as a model's parameters are).
fn destination(path: &Path) -> Result<Vec<Tensor>> {
    let toc = TensorReader::open(path)?;
    Ok(toc
        .tensors
        .iter()
        .map(|h| Tensor::zeros([h.numel as i64], (toc.dtype.kind(), Device::Cpu)))
        .collect())
}

fn read(path: &Path, warmup: Option<&Path>) -> Result<()> {
    if let Some(other) = warmup {
        stream_into(other, &destination(other)?)?;
    }
    let dest = destination(path)?;
    let t0 = Instant::now();
    let reader = stream_into(path, &dest)?;
    let seconds = t0.elapsed().as_secs_f64();
    let values: usize = reader.tensors.iter().map(|h| h.numel).sum();
    let bytes = std::fs::metadata(path)?.len();
    println!(
        "{{\"op\": \"read\", \"values\": {values}, \"bytes\": {bytes}, \"seconds\": {seconds}}}"
    );
    Ok(())
}

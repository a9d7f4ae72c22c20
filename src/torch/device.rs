//! Device selection: `auto`, `cpu`, `cuda`, `cuda:N`.

use anyhow::{bail, Result};
use tch::Device;

/// What the config asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

pub fn parse(s: &str) -> Result<DeviceSpec> {
    Ok(match s {
        "auto" => DeviceSpec::Auto,
        "cpu" => DeviceSpec::Cpu,
        "cuda" => DeviceSpec::Cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => DeviceSpec::Cuda(n),
            _ => bail!("expected auto, cpu, cuda or cuda:N, got {s:?}"),
        },
    })
}

/// Resolves a device spec against what this machine has.
pub fn select(s: &str) -> Result<Device> {
    Ok(match parse(s)? {
        DeviceSpec::Auto => Device::cuda_if_available(),
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Cuda(n) => {
            if !tch::Cuda::is_available() {
                bail!("device {s:?} was asked for, but CUDA is not available here (libtorch sees no GPU); use device: cpu or auto");
            }
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                bail!("device {s:?} was asked for, but this machine has {count} CUDA device(s): cuda:0..cuda:{}", count.saturating_sub(1));
            }
            Device::Cuda(n)
        }
    })
}

pub fn name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

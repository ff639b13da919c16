//! Where a model's tensors live and its arithmetic runs: the CPU or a CUDA device, as the user
//! names it (`cpu`, `cuda`, `cuda:1`, `auto`), checked before any model is loaded, with what
//! the device can hold.
//!
//! A CUDA device needs both a build with the `cuda` feature and a working driver; either
//! missing is an error that names it ([`DeviceChoice::resolve`]), never a silent fall-back to
//! the CPU — except for `auto`, which means "a GPU if there is one".

use std::fmt;
use std::str::FromStr;

use crate::EngineError;

/// Where the model's tensors live and its arithmetic runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Device {
    /// The CPU; always available.
    #[default]
    Cpu,
    /// The CUDA device with this ordinal; only in builds with the `cuda` feature.
    Cuda(usize),
}

/// A device as the user names it (`--device`, `KOKUSHI_DEVICE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A given device.
    Given(Device),
    /// The first CUDA device when this build and this machine have one, else the CPU.
    #[default]
    Auto,
}

/// The accepted spellings, for errors and `--help`.
pub const DEVICE_FORMS: &str = "cpu, cuda, cuda:N (N = 0, 1, …) or auto";

/// Whether this build has CUDA support (the `cuda` feature).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

impl FromStr for DeviceChoice {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        let choice = match text.as_str() {
            "cpu" => Some(Self::Given(Device::Cpu)),
            "auto" => Some(Self::Auto),
            "cuda" | "gpu" => Some(Self::Given(Device::Cuda(0))),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < 1024)
                .map(|n| Self::Given(Device::Cuda(n))),
        };
        choice.ok_or_else(|| EngineError::NoSuchDevice {
            given: s.to_owned(),
            forms: DEVICE_FORMS,
        })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Given(device) => device.fmt(f),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// The CUDA devices opened so far, by ordinal.
static OPENED: std::sync::Mutex<Vec<(usize, candle_core::Device)>> =
    std::sync::Mutex::new(Vec::new());

/// What a device can hold, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    pub total: u64,
    /// What a new model could take now (the CPU's available memory; the GPU's free memory).
    pub free: u64,
}

impl DeviceChoice {
    /// The device this names, checked on this machine: a CUDA device needs a build with the
    /// `cuda` feature and a driver that opens it. `auto` is the first CUDA device when both are
    /// there, else the CPU.
    pub fn resolve(self) -> Result<Device, EngineError> {
        match self {
            Self::Given(device) => {
                device.open()?;
                Ok(device)
            }
            Self::Auto if CUDA_BUILT => match Device::Cuda(0).open() {
                Ok(_) => Ok(Device::Cuda(0)),
                Err(error) => {
                    tracing::info!(%error, "no usable CUDA device: the CPU it is");
                    Ok(Device::Cpu)
                }
            },
            Self::Auto => Ok(Device::Cpu),
        }
    }
}

impl Device {
    /// Opens the device in candle: an error names what is missing (the build's CUDA support,
    /// the driver, the device).
    pub(crate) fn open(self) -> Result<candle_core::Device, EngineError> {
        match self {
            Self::Cpu => Ok(candle_core::Device::Cpu),
            Self::Cuda(ordinal) if !CUDA_BUILT => {
                let _ = ordinal;
                Err(EngineError::CudaNotBuilt {
                    device: self.to_string(),
                })
            }
            Self::Cuda(ordinal) => {
                // One context per device for the process: a worker asks its memory at every
                // report, and a new context each time would cost time and memory.
                let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, device)) = opened.iter().find(|(n, _)| *n == ordinal) {
                    return Ok(device.clone());
                }
                let device = candle_core::Device::new_cuda(ordinal).map_err(|source| {
                    EngineError::Device {
                        device: self.to_string(),
                        source: Box::new(source),
                    }
                })?;
                opened.push((ordinal, device.clone()));
                Ok(device)
            }
        }
    }

    /// What the device holds and has free now; `None` when it cannot be asked.
    pub fn memory(self) -> Option<DeviceMemory> {
        match self {
            Self::Cpu => cpu_memory(),
            Self::Cuda(_) => cuda_memory(&self.open().ok()?),
        }
    }

    /// The device's own name (`NVIDIA A100-SXM4-40GB`), when the driver tells it.
    pub fn model_name(self) -> Option<String> {
        match self {
            Self::Cpu => cpu_model_name(),
            Self::Cuda(_) => cuda_name(&self.open().ok()?),
        }
    }

    pub fn is_cpu(self) -> bool {
        self == Self::Cpu
    }
}

/// The machine's memory from `/proc/meminfo`: `MemTotal` and `MemAvailable`.
fn cpu_memory() -> Option<DeviceMemory> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

pub(crate) fn parse_meminfo(text: &str) -> Option<DeviceMemory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        kib.checked_mul(1024)
    };
    Some(DeviceMemory {
        total: field("MemTotal:")?,
        free: field("MemAvailable:")?,
    })
}

fn cpu_model_name() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

#[cfg(feature = "cuda")]
fn cuda_memory(device: &candle_core::Device) -> Option<DeviceMemory> {
    let candle_core::Device::Cuda(cuda) = device else {
        return None;
    };
    cuda.cuda_stream().context().bind_to_thread().ok()?;
    let (free, total) = candle_core::cuda_backend::cudarc::driver::result::mem_get_info().ok()?;
    Some(DeviceMemory {
        total: total as u64,
        free: free as u64,
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_memory(_device: &candle_core::Device) -> Option<DeviceMemory> {
    None
}

#[cfg(feature = "cuda")]
fn cuda_name(device: &candle_core::Device) -> Option<String> {
    let candle_core::Device::Cuda(cuda) = device else {
        return None;
    };
    cuda.cuda_stream().context().name().ok()
}

#[cfg(not(feature = "cuda"))]
fn cuda_name(_device: &candle_core::Device) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_as_users_write_them() {
        for (text, choice) in [
            ("cpu", DeviceChoice::Given(Device::Cpu)),
            (" CPU ", DeviceChoice::Given(Device::Cpu)),
            ("auto", DeviceChoice::Auto),
            ("cuda", DeviceChoice::Given(Device::Cuda(0))),
            ("cuda:0", DeviceChoice::Given(Device::Cuda(0))),
            ("cuda:3", DeviceChoice::Given(Device::Cuda(3))),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().expect(text), choice, "{text}");
        }
        for bad in [
            "",
            "gpu0",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "metal",
            "cuda:99999",
        ] {
            let error = bad.parse::<DeviceChoice>().expect_err(bad).to_string();
            assert!(error.contains(DEVICE_FORMS), "{bad}: {error}");
        }
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        assert_eq!(DeviceChoice::Auto.to_string(), "auto");
    }

    #[test]
    fn the_cpu_is_always_there_and_cuda_only_when_built() {
        assert_eq!(
            DeviceChoice::Given(Device::Cpu).resolve().expect("cpu"),
            Device::Cpu
        );
        if !CUDA_BUILT {
            assert_eq!(DeviceChoice::Auto.resolve().expect("auto"), Device::Cpu);
            let error = DeviceChoice::Given(Device::Cuda(0))
                .resolve()
                .expect_err("no CUDA in this build")
                .to_string();
            assert!(
                error.contains("cuda:0") && error.contains("--features cuda"),
                "{error}"
            );
        }
    }

    #[test]
    fn memory_is_read_from_meminfo() {
        let text =
            "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   20480000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(DeviceMemory {
                total: 24_576_000 * 1024,
                free: 20_480_000 * 1024
            })
        );
        assert_eq!(parse_meminfo("MemTotal: x kB\n"), None);
        let here = Device::Cpu.memory().expect("this machine's memory");
        assert!(here.total >= here.free && here.total > 0, "{here:?}");
    }
}

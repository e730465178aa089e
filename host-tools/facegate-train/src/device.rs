//! Where training runs: burn's pure-Rust `flex` CPU backend (always built,
//! nothing to install), or LibTorch on the CPU or a CUDA GPU through burn's
//! `tch` backend (the `tch` cargo feature, built against the PyTorch that
//! `bench/setup-torch.sh` installs: `scripts/build-tch.sh`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A compute device for training and for embedding during training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ComputeDevice {
    /// burn's `flex` backend: CPU, SIMD + rayon.
    #[default]
    Flex,
    /// LibTorch on the CPU (`tch` feature).
    TchCpu,
    /// LibTorch on CUDA GPU `n` (`tch` feature and a CUDA build of PyTorch).
    TchCuda(usize),
}

/// Why a device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Not a device name.
    #[error("unknown device {0:?}: use flex, tch-cpu or tch-cuda[:N]")]
    Unknown(String),
    /// LibTorch was asked for but this build lacks it.
    #[error(
        "{0} needs LibTorch, and this facegate was built without it: run bench/setup-torch.sh, then scripts/build-tch.sh (builds facegate with --features tch against that PyTorch)"
    )]
    NotBuilt(ComputeDevice),
    /// The CUDA GPU is not there.
    #[error("{device}: LibTorch sees {count} CUDA GPU(s)")]
    NoGpu {
        /// What was asked for.
        device: ComputeDevice,
        /// GPUs LibTorch can use.
        count: usize,
    },
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flex => f.write_str("flex"),
            Self::TchCpu => f.write_str("tch-cpu"),
            Self::TchCuda(n) => write!(f, "tch-cuda:{n}"),
        }
    }
}

impl FromStr for ComputeDevice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" => Ok(Self::Flex),
            "tch-cpu" => Ok(Self::TchCpu),
            "tch-cuda" => Ok(Self::TchCuda(0)),
            _ => s
                .strip_prefix("tch-cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::TchCuda)
                .ok_or_else(|| DeviceError::Unknown(s.to_owned())),
        }
    }
}

impl ComputeDevice {
    /// burn's device (without autodiff), after checking it can be used;
    /// `threads` (0: LibTorch's default) sizes LibTorch's CPU thread pool
    /// (flex uses the global rayon pool instead).
    pub fn device(self, threads: usize) -> Result<Device, DeviceError> {
        match self {
            Self::Flex => Ok(Device::flex()),
            #[cfg(feature = "tch")]
            Self::TchCpu => {
                if threads > 0 {
                    tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
                }
                #[allow(deprecated)] // burn-tch is deprecated upstream; it is our fast path today
                Ok(Device::libtorch())
            }
            #[cfg(feature = "tch")]
            Self::TchCuda(n) => {
                let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
                if n >= count {
                    return Err(DeviceError::NoGpu {
                        device: self,
                        count,
                    });
                }
                #[allow(deprecated)]
                Ok(Device::libtorch_cuda(n))
            }
            #[cfg(not(feature = "tch"))]
            Self::TchCpu | Self::TchCuda(_) => {
                let _ = threads;
                Err(DeviceError::NotBuilt(self))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in [
            ComputeDevice::Flex,
            ComputeDevice::TchCpu,
            ComputeDevice::TchCuda(0),
            ComputeDevice::TchCuda(3),
        ] {
            assert_eq!(d.to_string().parse::<ComputeDevice>().unwrap(), d);
        }
        assert_eq!(
            "tch-cuda".parse::<ComputeDevice>().unwrap(),
            ComputeDevice::TchCuda(0)
        );
        for bad in ["", "cuda", "tch-cuda:", "tch-cuda:x", "Flex"] {
            assert!(bad.parse::<ComputeDevice>().is_err(), "{bad}");
        }
    }

    #[test]
    fn flex_is_always_there_and_libtorch_only_when_built() {
        assert!(ComputeDevice::Flex.device(0).is_ok());
        let tch = ComputeDevice::TchCpu.device(0);
        assert_eq!(tch.is_ok(), cfg!(feature = "tch"));
        if let Err(e) = tch {
            assert!(e.to_string().contains("scripts/build-tch.sh"), "{e}");
        }
    }
}

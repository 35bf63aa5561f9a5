//! Choosing a burn backend and compute dtype at run time from `--device` / `--dtype`.
//!
//! Which backends exist depends on the package features (`flex` is the default CPU
//! backend; `ndarray`, `wgpu` and `cuda` are additive).

use std::fmt;
use std::str::FromStr;

use burn::tensor::DType;

/// A device named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The default CPU backend (`flex`, else `ndarray`).
    Cpu,
    /// burn's `ndarray` backend (feature `ndarray`).
    NdArray,
    /// The default GPU through wgpu (feature `wgpu`).
    Wgpu,
    /// CUDA device N (feature `cuda`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "ndarray" => Ok(DeviceSpec::NdArray),
            "wgpu" => Ok(DeviceSpec::Wgpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(DeviceSpec::Cuda(n)),
                _ => Err(format!("unknown device `{s}` (expected cpu, ndarray, wgpu, cuda or cuda:N)")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::NdArray => f.write_str("ndarray"),
            DeviceSpec::Wgpu => f.write_str("wgpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Parses `f32`, `bf16` or `f16`.
pub fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        _ => Err(format!("unknown dtype `{s}` (expected f32, bf16 or f16)")),
    }
}

/// Runs `$body` with `B` bound to the backend type and `device` to the device named by
/// `$spec`, or evaluates to an error when that backend was not compiled in.
#[macro_export]
macro_rules! with_backend {
    ($spec:expr, |$b:ident, $device:ident| $body:block) => {{
        #[allow(unreachable_patterns)]
        match $spec {
            #[cfg(feature = "flex")]
            $crate::device::DeviceSpec::Cpu => {
                type $b = burn::backend::Flex;
                let $device: <$b as burn::tensor::backend::BackendTypes>::Device = Default::default();
                $body
            }
            #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
            $crate::device::DeviceSpec::Cpu => {
                type $b = burn::backend::NdArray;
                let $device: <$b as burn::tensor::backend::BackendTypes>::Device = Default::default();
                $body
            }
            #[cfg(feature = "ndarray")]
            $crate::device::DeviceSpec::NdArray => {
                type $b = burn::backend::NdArray;
                let $device: <$b as burn::tensor::backend::BackendTypes>::Device = Default::default();
                $body
            }
            #[cfg(feature = "wgpu")]
            $crate::device::DeviceSpec::Wgpu => {
                type $b = burn::backend::Wgpu;
                let $device: <$b as burn::tensor::backend::BackendTypes>::Device = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::device::DeviceSpec::Cuda(n) => {
                type $b = burn::backend::Cuda;
                let $device = burn::backend::cuda::CudaDevice { index: n };
                $body
            }
            other => Err(anyhow::anyhow!(
                "device `{other}` is not available in this build (rebuild with the matching feature: \
                 --features ndarray, wgpu or cuda)"
            )),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_dtypes() {
        assert_eq!("cuda:1".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert_eq!(parse_dtype("bf16"), Ok(DType::BF16));
        assert!(parse_dtype("int8").is_err());
    }
}

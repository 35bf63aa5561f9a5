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

impl DeviceSpec {
    /// Whether the backend computes on the host CPU (its memory is the machine's).
    pub fn is_cpu(&self) -> bool {
        matches!(self, DeviceSpec::Cpu | DeviceSpec::NdArray)
    }
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

/// `--device` and `--dtype`, as every command that computes takes them
/// (`#[command(flatten)]`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ComputeArgs {
    /// cpu, ndarray, wgpu, cuda or cuda:N (the backends this build has).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Compute dtype: f32 (default), bf16 or f16; weights are converted on load (SAEs and
    /// optimizer state stay f32).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: DType,
}

/// `--device` alone, for commands that compute in f32 only.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DeviceArgs {
    /// cpu, ndarray, wgpu, cuda or cuda:N (the backends this build has).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
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

/// The device named is not compiled into this build of `resa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceUnavailable(pub DeviceSpec);

impl fmt::Display for DeviceUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device `{}` is not available in this build (rebuild `resa` with the matching feature: \
             --features ndarray, wgpu or cuda)",
            self.0
        )
    }
}

impl std::error::Error for DeviceUnavailable {}

#[doc(hidden)]
pub use burn as __burn;

/// Runs `$body` with `B` bound to the backend type and `device` to the device named by
/// `$spec`; evaluates to `Err(DeviceUnavailable(spec).into())` when that backend is not
/// compiled into `resa`. Which backends exist is decided by `resa`'s own features, not by
/// the crate that calls the macro (each arm goes through a helper macro defined under
/// `resa`'s `cfg`).
#[macro_export]
macro_rules! with_backend {
    ($spec:expr, |$b:ident, $device:ident| $body:block) => {{
        let spec: $crate::device::DeviceSpec = $spec;
        match spec {
            $crate::device::DeviceSpec::Cpu => $crate::__resa_cpu!(spec, $b, $device, $body),
            $crate::device::DeviceSpec::NdArray => $crate::__resa_ndarray!(spec, $b, $device, $body),
            $crate::device::DeviceSpec::Wgpu => $crate::__resa_wgpu!(spec, $b, $device, $body),
            $crate::device::DeviceSpec::Cuda(n) => $crate::__resa_cuda!(spec, n, $b, $device, $body),
        }
    }};
}

/// The CPU arm: flex, else ndarray, else unavailable.
#[cfg(feature = "flex")]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_cpu {
    ($spec:ident, $b:ident, $device:ident, $body:block) => {{
        type $b = $crate::device::__burn::backend::Flex;
        let $device: <$b as $crate::device::__burn::tensor::backend::BackendTypes>::Device = Default::default();
        $body
    }};
}

/// The CPU arm: flex, else ndarray, else unavailable.
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_cpu {
    ($spec:ident, $b:ident, $device:ident, $body:block) => {{
        type $b = $crate::device::__burn::backend::NdArray;
        let $device: <$b as $crate::device::__burn::tensor::backend::BackendTypes>::Device = Default::default();
        $body
    }};
}

/// The CPU arm: flex, else ndarray, else unavailable.
#[cfg(not(any(feature = "flex", feature = "ndarray")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_cpu {
    ($spec:ident, $b:ident, $device:ident, $body:block) => {
        Err($crate::device::DeviceUnavailable($spec).into())
    };
}

/// The ndarray arm.
#[cfg(feature = "ndarray")]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_ndarray {
    ($spec:ident, $b:ident, $device:ident, $body:block) => {{
        type $b = $crate::device::__burn::backend::NdArray;
        let $device: <$b as $crate::device::__burn::tensor::backend::BackendTypes>::Device = Default::default();
        $body
    }};
}

/// The ndarray arm.
#[cfg(not(feature = "ndarray"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_ndarray {
    ($spec:ident, $b:ident, $device:ident, $body:block) => {
        Err($crate::device::DeviceUnavailable($spec).into())
    };
}

/// The wgpu arm.
#[cfg(feature = "wgpu")]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_wgpu {
    ($spec:ident, $b:ident, $device:ident, $body:block) => {{
        type $b = $crate::device::__burn::backend::Wgpu;
        let $device: <$b as $crate::device::__burn::tensor::backend::BackendTypes>::Device = Default::default();
        $body
    }};
}

/// The wgpu arm.
#[cfg(not(feature = "wgpu"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_wgpu {
    ($spec:ident, $b:ident, $device:ident, $body:block) => {
        Err($crate::device::DeviceUnavailable($spec).into())
    };
}

/// The CUDA arm.
#[cfg(feature = "cuda")]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_cuda {
    ($spec:ident, $n:ident, $b:ident, $device:ident, $body:block) => {{
        type $b = $crate::device::__burn::backend::Cuda;
        let $device = $crate::device::__burn::backend::cuda::CudaDevice { index: $n };
        $body
    }};
}

/// The CUDA arm.
#[cfg(not(feature = "cuda"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __resa_cuda {
    ($spec:ident, $n:ident, $b:ident, $device:ident, $body:block) => {{
        let _ = $n;
        Err($crate::device::DeviceUnavailable($spec).into())
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

    #[test]
    fn with_backend_runs_compiled_backends_and_names_the_missing_ones() {
        let run = |spec: DeviceSpec| -> Result<String, Box<dyn std::error::Error>> {
            crate::with_backend!(spec, |B, device| {
                let t = burn::tensor::Tensor::<B, 1>::from_floats([1.0, 2.0], &device);
                Ok(format!("{}", t.sum().into_scalar()))
            })
        };
        assert_eq!(run(DeviceSpec::Cpu).expect("flex is the default"), "3");
        #[cfg(not(feature = "cuda"))]
        {
            let err = run(DeviceSpec::Cuda(2)).expect_err("no cuda in this build").to_string();
            assert!(err.contains("`cuda:2` is not available") && err.contains("--features"), "{err}");
        }
    }
}

/// `--memory-limit GIB` / `--no-memory-check`: the memory one Stage II step may use, checked
/// before any stage starts.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct MemoryArgs {
    /// The memory one Stage II step may use, GiB; checked before Stage I starts (default on
    /// the CPU backends: what this machine has available, Linux `MemAvailable`; on a GPU no
    /// check unless given — the estimate is logged).
    #[arg(long, value_name = "GIB", conflicts_with = "no_memory_check")]
    pub memory_limit: Option<f64>,
    /// Skip the memory check (the estimate is still logged).
    #[arg(long)]
    pub no_memory_check: bool,
}

impl MemoryArgs {
    /// The limit for `device`: the one given, else on a CPU backend the memory available.
    pub fn limit(&self, device: DeviceSpec) -> Result<Option<resa_pipeline::MemoryLimit>, String> {
        use resa_pipeline::MemoryLimit;
        Ok(match (self.memory_limit, self.no_memory_check) {
            (_, true) => None,
            (Some(gib), false) => {
                if !(gib.is_finite() && gib > 0.0) {
                    return Err(format!("--memory-limit {gib}: a positive number of GiB"));
                }
                Some(MemoryLimit {
                    bytes: (gib * (1u64 << 30) as f64) as u64,
                    source: "given with --memory-limit".into(),
                    shared_by_replicas: device.is_cpu(),
                })
            }
            (None, false) if device.is_cpu() => resa_tune::memory::available_host_memory().map(|bytes| MemoryLimit {
                bytes,
                source: "available on this machine (MemAvailable)".into(),
                shared_by_replicas: true,
            }),
            (None, false) => None,
        })
    }
}

//! Keyed dropout masks for the adapters' inputs in [`AdapterMode::Train`](crate::AdapterMode).
//!
//! A mask is a function of a 64-bit key and the input's shape: the trainer derives a key
//! from its seed, the step and the micro-batch, and the forward derives one per module
//! (layer, then `q`…`down`). So a mask does not depend on what else was drawn before it —
//! a forward that starts after the hookpoint (Stage II's shared prefix) draws for the layers
//! it runs exactly the masks the full forward draws for them, data-parallel replicas running
//! at the same time draw the masks one device would, and a resumed run those of the
//! uninterrupted one.
//!
//! On the CPU backends (flex, ndarray) the mask is made on the host by a counter-based
//! generator on all threads (each element from a hash of the key and its index); elsewhere
//! by the backend's own generator, seeded with the key (under a lock, so that concurrent
//! replicas do not interleave seeding and drawing). The two give different masks for the
//! same key; each is the same on every run. Either way an element is kept with probability
//! `keep` and then scaled by `1 / keep`, as `torch.nn.Dropout` does.

use std::sync::Mutex;

use burn::tensor::{DType, Distribution, Tensor, TensorData, backend::Backend};
use rayon::prelude::*;

/// SplitMix64's finaliser: a bijection of `u64` with good avalanche.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A key derived from `key` and `part` (a layer, a module, a step, a micro-batch): distinct
/// parts give unrelated keys.
pub fn mix(key: u64, part: u64) -> u64 {
    splitmix(key ^ splitmix(part.wrapping_mul(0xD6E8_FEB8_6659_FD93)))
}

/// A tensor's values on the host as f32: the tensor's own buffer when it is already f32 in
/// host memory (no copy), otherwise a converted copy.
pub fn host_values<B: Backend, const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    let data = if t.dtype() == burn::tensor::DType::F32 {
        t.into_data()
    } else {
        t.cast(burn::tensor::DType::F32).into_data()
    };
    // `into_vec` takes the buffer over when it reads as f32, which `as_slice` has checked;
    // otherwise (a misaligned buffer) the values are copied.
    if data.as_slice::<f32>().is_ok() {
        data.into_vec::<f32>().unwrap_or_default()
    } else {
        data.iter::<f32>().collect()
    }
}

/// Whether the backend keeps its tensors in host memory, so that work done on the host with
/// all threads costs no transfer: flex and ndarray, also under autodiff (by the backend's
/// name, the one thing every burn backend reports).
pub fn on_host<B: Backend>(device: &B::Device) -> bool {
    let name = B::name(device);
    let mut inner = name.as_str();
    while let Some(rest) = inner.strip_prefix("autodiff<").and_then(|r| r.strip_suffix('>')) {
        inner = rest;
    }
    matches!(inner, "flex" | "ndarray")
}

/// The host mask: element `i` is kept when the upper 32 bits of `hash(key, i)` fall below
/// `keep · 2³²`.
pub fn host_mask(len: usize, keep: f64, key: u64) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let threshold = (keep * 4_294_967_296.0).round() as u64;
    let scale = (1.0 / keep) as f32;
    let mut out = vec![0.0f32; len];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        let start = (c * CHUNK) as u64;
        for (j, v) in chunk.iter_mut().enumerate() {
            let u = splitmix(key ^ (start + j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 32;
            *v = if u < threshold { scale } else { 0.0 };
        }
    });
    out
}

static SEEDING: Mutex<()> = Mutex::new(());

/// The dropout factor for an input of `shape`: `1 / keep` where an element is kept, `0`
/// where it is dropped, in `dtype`, on `device`. `keep` is in `(0, 1]`.
pub fn mask<B: Backend, const D: usize>(
    shape: [usize; D],
    keep: f64,
    key: u64,
    device: &B::Device,
    dtype: DType,
) -> Tensor<B, D> {
    if on_host::<B>(device) {
        let len = shape.iter().product();
        return Tensor::from_data(TensorData::new(host_mask(len, keep, key), shape), (device, dtype));
    }
    let drawn = {
        // A poisoned lock only means another thread panicked while drawing; the generator
        // is seeded afresh here anyway.
        let _guard = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(device, key);
        Tensor::<B, D>::random(shape, Distribution::Bernoulli(keep), device)
    };
    drawn.cast(dtype).div_scalar(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_mask_keeps_the_share_asked_for_and_scales_it() {
        let m = host_mask(1 << 20, 0.95, 7);
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.95).abs() < 1e-3, "kept {kept}");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.95).abs() < 1e-6));
        // The same key gives the same mask; another key another one.
        assert_eq!(m, host_mask(1 << 20, 0.95, 7));
        assert_ne!(m, host_mask(1 << 20, 0.95, 8));
        // A prefix of a longer mask is the shorter mask (elements do not depend on the length).
        assert_eq!(host_mask(1000, 0.5, 3)[..], host_mask(40_000, 0.5, 3)[..1000]);
    }

    #[test]
    fn neighbouring_elements_and_keys_are_not_correlated() {
        let (a, b) = (host_mask(1 << 18, 0.5, mix(1, 0)), host_mask(1 << 18, 0.5, mix(1, 1)));
        let both = a.iter().zip(&b).filter(|(x, y)| **x != 0.0 && **y != 0.0).count() as f64 / a.len() as f64;
        assert!((both - 0.25).abs() < 5e-3, "kept by both keys: {both}");
        let pairs = a.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count() as f64 / (a.len() - 1) as f64;
        assert!((pairs - 0.25).abs() < 5e-3, "kept pairs of neighbours: {pairs}");
    }

    #[test]
    fn the_cpu_backends_are_recognised_through_autodiff() {
        type F = burn::backend::Flex;
        assert!(on_host::<F>(&Default::default()));
        assert!(on_host::<burn::backend::Autodiff<F>>(&Default::default()));
    }
}

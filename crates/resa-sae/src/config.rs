//! `cfg.json` of a sparsify sparse coder.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How latents are selected from the encoder pre-activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// The k largest of ReLU(pre-activations).
    #[default]
    TopK,
    /// The largest of each of k equal groups of latents.
    GroupMax,
}

/// The configuration sparsify writes to `cfg.json` (its `SparseCoderConfig` plus `d_in`).
///
/// Unknown keys are ignored; files written before `activation` and `transcode` existed
/// load with their defaults (`topk`, `false`). Writing gives exactly sparsify's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    /// Latent selection.
    #[serde(default)]
    pub activation: Activation,
    /// Latents = `d_in * expansion_factor` when `num_latents` is 0.
    #[serde(default = "default_expansion")]
    pub expansion_factor: usize,
    /// Keep decoder rows at unit norm.
    #[serde(default = "default_true")]
    pub normalize_decoder: bool,
    /// Number of latents; 0 means `d_in * expansion_factor`.
    #[serde(default)]
    pub num_latents: usize,
    /// Active latents per token.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Train with the Multi-TopK loss as well.
    #[serde(default)]
    pub multi_topk: bool,
    /// A linear skip connection `W_skip` `[d_in, d_in]`.
    #[serde(default)]
    pub skip_connection: bool,
    /// A transcoder (predicts a module's output from its input) rather than an autoencoder.
    #[serde(default)]
    pub transcode: bool,
    /// Input width (the model's hidden size).
    pub d_in: usize,
}

fn default_expansion() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_k() -> usize {
    32
}

impl SaeConfig {
    /// A TopK autoencoder with `num_latents` latents and `k` active, decoder normalised.
    pub fn new(d_in: usize, num_latents: usize, k: usize) -> Self {
        SaeConfig {
            activation: Activation::TopK,
            expansion_factor: default_expansion(),
            normalize_decoder: true,
            num_latents,
            k,
            multi_topk: false,
            skip_connection: false,
            transcode: false,
            d_in,
        }
    }

    /// The number of latents (`num_latents`, or `d_in * expansion_factor` when that is 0).
    pub fn latents(&self) -> usize {
        if self.num_latents > 0 { self.num_latents } else { self.d_in * self.expansion_factor }
    }

    /// Checks that the numbers describe a runnable coder; `origin` names the source in errors.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |message: String| Err(Error::Config { path: origin.to_path_buf(), message });
        let l = self.latents();
        if self.d_in == 0 {
            return bad("field `d_in` must be positive".into());
        }
        if l == 0 {
            return bad("`num_latents` and `expansion_factor` give 0 latents".into());
        }
        if self.k == 0 {
            return bad("field `k` must be positive".into());
        }
        if self.k > l {
            return bad(format!("field `k` = {} exceeds the number of latents {l}", self.k));
        }
        if self.activation == Activation::GroupMax && !l.is_multiple_of(self.k) {
            return bad(format!("groupmax needs the number of latents ({l}) to be a multiple of `k` ({})", self.k));
        }
        Ok(())
    }

    /// Reads and validates `cfg.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: SaeConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Config { path: path.to_path_buf(), message: e.to_string() })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The JSON sparsify writes (all config keys and `d_in`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

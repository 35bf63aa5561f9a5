//! Hookpoints: named places in the decoder stack where activations can be captured or
//! replaced.
//!
//! Names follow EleutherAI sparsify, relative to the decoder stack:
//! - `layers.N` is the output hidden state of decoder layer `N` (the residual stream after
//!   the layer, 0-based; Hugging Face's `hidden_states[N + 1]`);
//! - `layers.N.mlp` is the output of layer `N`'s MLP, before it is added to the residual.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{Error, Result};

/// A place in the decoder stack. Parse one from its sparsify name with [`str::parse`].
/// Serialised as its name (`"layers.12"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Hookpoint {
    /// `layers.N`: output of decoder layer `N` (residual stream).
    Residual(usize),
    /// `layers.N.mlp`: output of decoder layer `N`'s MLP.
    Mlp(usize),
}

impl Hookpoint {
    /// The decoder layer this hookpoint belongs to.
    pub fn layer(&self) -> usize {
        match *self {
            Hookpoint::Residual(l) | Hookpoint::Mlp(l) => l,
        }
    }

    /// Parses a name and checks that the layer exists in a model with `num_layers` layers.
    pub fn parse_for(name: &str, num_layers: usize) -> Result<Self> {
        let hp: Hookpoint = name.parse()?;
        hp.check(num_layers)?;
        Ok(hp)
    }

    /// Checks that the layer exists in a model with `num_layers` layers.
    pub fn check(&self, num_layers: usize) -> Result<()> {
        if self.layer() >= num_layers {
            return Err(Error::Hookpoint {
                name: self.to_string(),
                reason: format!(
                    "the model has {num_layers} layers (valid: layers.0 .. layers.{})",
                    num_layers.saturating_sub(1)
                ),
            });
        }
        Ok(())
    }
}

impl From<Hookpoint> for String {
    fn from(h: Hookpoint) -> String {
        h.to_string()
    }
}

impl TryFrom<String> for Hookpoint {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl fmt::Display for Hookpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hookpoint::Residual(l) => write!(f, "layers.{l}"),
            Hookpoint::Mlp(l) => write!(f, "layers.{l}.mlp"),
        }
    }
}

impl FromStr for Hookpoint {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Hookpoint { name: name.to_string(), reason: reason.to_string() };
        let rest = name.strip_prefix("layers.").ok_or_else(|| bad("expected `layers.N` or `layers.N.mlp`"))?;
        let (num, mlp) = match rest.strip_suffix(".mlp") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected `layers.N` or `layers.N.mlp` with N a layer index"));
        }
        let layer: usize = num.parse().map_err(|_| bad("layer index out of range"))?;
        Ok(if mlp { Hookpoint::Mlp(layer) } else { Hookpoint::Residual(layer) })
    }
}

/// Why a [`Splice`] could not replace an activation (its own error, boxed).
pub type SpliceError = Box<dyn std::error::Error + Send + Sync>;

/// A function that replaces the activation at a hookpoint (the SAE splice of Stage II).
/// A splice that fails fails the forward pass ([`Error::Splice`]); it never hands the
/// activation back unchanged.
///
/// Any `Fn(Tensor<B, 3>) -> Tensor<B, 3>` is a `Splice` that cannot fail.
pub trait Splice<B: Backend> {
    /// Maps the activation `[batch, seq, hidden]` to its replacement of the same shape.
    fn splice(&self, x: Tensor<B, 3>) -> std::result::Result<Tensor<B, 3>, SpliceError>;
}

impl<B: Backend, F: Fn(Tensor<B, 3>) -> Tensor<B, 3>> Splice<B> for F {
    fn splice(&self, x: Tensor<B, 3>) -> std::result::Result<Tensor<B, 3>, SpliceError> {
        Ok(self(x))
    }
}

/// How gradients pass a splice. In configuration files and on the command line it is
/// named `detach`, `straight-through` or `flow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpliceGrad {
    /// The replacement is computed from a detached input and detached itself, so no
    /// gradient reaches the layers at or below the hookpoint (what Resa's reference code
    /// does: the SAE runs under `no_grad`).
    #[default]
    Detach,
    /// Gradients flow through the splice function into earlier layers (the true
    /// gradient of a frozen SAE: through its decoder, top-k selection and encoder).
    Flow,
    /// The straight-through estimator: the forward value is the replacement, the backward
    /// pass treats the splice as the identity (`x + (f(x) − x).detach()`), so earlier layers
    /// get the gradient the activation itself would get.
    StraightThrough,
}

impl SpliceGrad {
    /// The names, as configuration files write them.
    pub const NAMES: [&'static str; 3] = ["detach", "straight-through", "flow"];

    /// The name of this mode.
    pub fn name(self) -> &'static str {
        match self {
            SpliceGrad::Detach => "detach",
            SpliceGrad::StraightThrough => "straight-through",
            SpliceGrad::Flow => "flow",
        }
    }
}

impl fmt::Display for SpliceGrad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SpliceGrad {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "detach" => Ok(SpliceGrad::Detach),
            "straight-through" => Ok(SpliceGrad::StraightThrough),
            "flow" => Ok(SpliceGrad::Flow),
            _ => Err(Error::Input(format!(
                "unknown SAE gradient mode `{s}` (expected {})",
                SpliceGrad::NAMES.join(", ")
            ))),
        }
    }
}

/// A replacement at one hookpoint.
pub struct SpliceHook<'a, B: Backend> {
    /// Where the activation is replaced.
    pub at: Hookpoint,
    /// The replacement function.
    pub func: &'a dyn Splice<B>,
    /// Whether gradients pass the replacement.
    pub grad: SpliceGrad,
}

/// What a forward pass captures and replaces. The default does neither.
pub struct Hooks<'a, B: Backend> {
    /// Hookpoints whose activations are returned in
    /// [`ForwardOutput::captured`](crate::ForwardOutput::captured). A captured hookpoint that
    /// is also spliced is captured *before* the replacement.
    pub capture: Vec<Hookpoint>,
    /// At most one replacement.
    pub splice: Option<SpliceHook<'a, B>>,
}

impl<B: Backend> Default for Hooks<'_, B> {
    fn default() -> Self {
        Hooks { capture: Vec::new(), splice: None }
    }
}

impl<'a, B: Backend> Hooks<'a, B> {
    /// Captures the given hookpoints, replaces nothing.
    pub fn capture(points: impl IntoIterator<Item = Hookpoint>) -> Self {
        Hooks { capture: points.into_iter().collect(), splice: None }
    }

    /// Adds a replacement.
    pub fn with_splice(mut self, at: Hookpoint, func: &'a dyn Splice<B>, grad: SpliceGrad) -> Self {
        self.splice = Some(SpliceHook { at, func, grad });
        self
    }

    /// Deepest layer any hook touches.
    pub(crate) fn last_layer(&self) -> Option<usize> {
        self.capture.iter().map(Hookpoint::layer).chain(self.splice.as_ref().map(|s| s.at.layer())).max()
    }

    pub(crate) fn apply(
        &self,
        at: Hookpoint,
        x: Tensor<B, 3>,
        captured: &mut Vec<(Hookpoint, Tensor<B, 3>)>,
    ) -> Result<Tensor<B, 3>> {
        if self.capture.contains(&at) {
            captured.push((at, x.clone()));
        }
        let failed = |cause: SpliceError| Error::Splice { at, cause };
        Ok(match &self.splice {
            Some(s) if s.at == at => match s.grad {
                SpliceGrad::Detach => s.func.splice(x.detach()).map_err(failed)?.detach(),
                SpliceGrad::Flow => s.func.splice(x).map_err(failed)?,
                SpliceGrad::StraightThrough => {
                    let replaced = s.func.splice(x.clone().detach()).map_err(failed)?;
                    x.clone() + (replaced - x).detach()
                }
            },
            _ => x,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["layers.0", "layers.12", "layers.3.mlp"] {
            let hp: Hookpoint = name.parse().expect("parses");
            assert_eq!(hp.to_string(), name);
        }
        assert_eq!("layers.12".parse::<Hookpoint>().expect("parses"), Hookpoint::Residual(12));
        assert_eq!("layers.2.mlp".parse::<Hookpoint>().expect("parses"), Hookpoint::Mlp(2));
    }

    #[test]
    fn bad_names() {
        for name in ["layer.1", "layers.", "layers.x", "layers.1.attn", "layers.-1", "embed", "layers.1.mlp.x"] {
            assert!(matches!(name.parse::<Hookpoint>(), Err(Error::Hookpoint { .. })), "{name}");
        }
        assert!(matches!(Hookpoint::parse_for("layers.28", 28), Err(Error::Hookpoint { .. })));
        assert!(Hookpoint::parse_for("layers.27", 28).is_ok());
    }
}

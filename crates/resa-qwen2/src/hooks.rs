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

use crate::error::{Error, Result, SpliceError};

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

    /// This hookpoint in a model with `num_layers` decoder layers: the one place where a
    /// hookpoint's layer is checked. Everything that touches a model's activations (hooks,
    /// splices, Stage II) takes the [`CheckedHookpoint`] this returns.
    pub fn within(self, num_layers: usize) -> Result<CheckedHookpoint> {
        if self.layer() >= num_layers {
            return Err(Error::Hookpoint {
                name: self.to_string(),
                reason: format!(
                    "the model has {num_layers} layers (valid: layers.0 .. layers.{})",
                    num_layers.saturating_sub(1)
                ),
            });
        }
        Ok(CheckedHookpoint { at: self, num_layers })
    }
}

/// A [`Hookpoint`] whose layer exists in a model of [`num_layers`](Self::num_layers) decoder
/// layers; made only by [`Hookpoint::within`]. A forward pass refuses one checked against a
/// model of another depth. Displayed and serialised as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub struct CheckedHookpoint {
    at: Hookpoint,
    num_layers: usize,
}

impl CheckedHookpoint {
    /// The hookpoint.
    pub fn hookpoint(self) -> Hookpoint {
        self.at
    }

    /// Its decoder layer (below [`num_layers`](Self::num_layers)).
    pub fn layer(self) -> usize {
        self.at.layer()
    }

    /// The depth of the model it was checked against.
    pub fn num_layers(self) -> usize {
        self.num_layers
    }

    /// Refuses a model of another depth than the one this hookpoint was checked against
    /// (what a forward pass and Stage II's objective ask before using it).
    pub fn check_depth(self, num_layers: usize) -> Result<()> {
        if num_layers != self.num_layers {
            return Err(Error::Hookpoint {
                name: self.to_string(),
                reason: format!("checked against a model of {} layers; this one has {num_layers}", self.num_layers),
            });
        }
        Ok(())
    }
}

impl From<CheckedHookpoint> for Hookpoint {
    fn from(h: CheckedHookpoint) -> Hookpoint {
        h.at
    }
}

impl From<CheckedHookpoint> for String {
    fn from(h: CheckedHookpoint) -> String {
        h.at.to_string()
    }
}

impl fmt::Display for CheckedHookpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.at.fmt(f)
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
            _ => Err(Error::Input {
                field: "sae_grad",
                message: format!("unknown SAE gradient mode `{s}` (expected {})", SpliceGrad::NAMES.join(", ")),
            }),
        }
    }
}

/// A replacement at one hookpoint.
pub struct SpliceHook<'a, B: Backend> {
    /// Where the activation is replaced.
    pub at: CheckedHookpoint,
    /// The replacement function.
    pub func: &'a dyn Splice<B>,
    /// Whether gradients pass the replacement.
    pub grad: SpliceGrad,
}

impl<B: Backend> SpliceHook<'_, B> {
    /// The activation `x` at [`at`](Self::at) replaced, with gradients passing as
    /// [`grad`](Self::grad) says: the one implementation of the splice, used by every
    /// forward pass with [`Hooks`] and by Stage II when its student starts at the hookpoint.
    pub fn replace(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        let failed = |cause: SpliceError| Error::Splice { at: self.at.to_string(), cause };
        Ok(match self.grad {
            SpliceGrad::Detach => self.func.splice(x.detach()).map_err(failed)?.detach(),
            SpliceGrad::Flow => self.func.splice(x).map_err(failed)?,
            SpliceGrad::StraightThrough => {
                let replaced = self.func.splice(x.clone().detach()).map_err(failed)?;
                x.clone() + (replaced - x).detach()
            }
        })
    }
}

/// What a forward pass captures and replaces. The default does neither.
pub struct Hooks<'a, B: Backend> {
    /// Hookpoints whose activations are returned in
    /// [`ForwardOutput::captured`](crate::ForwardOutput::captured). A captured hookpoint that
    /// is also spliced is captured *before* the replacement.
    pub capture: Vec<CheckedHookpoint>,
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
    pub fn capture(points: impl IntoIterator<Item = CheckedHookpoint>) -> Self {
        Hooks { capture: points.into_iter().collect(), splice: None }
    }

    /// Adds a replacement.
    pub fn with_splice(mut self, at: CheckedHookpoint, func: &'a dyn Splice<B>, grad: SpliceGrad) -> Self {
        self.splice = Some(SpliceHook { at, func, grad });
        self
    }

    /// Every hookpoint a hook touches.
    pub(crate) fn hookpoints(&self) -> impl Iterator<Item = CheckedHookpoint> + '_ {
        self.capture.iter().copied().chain(self.splice.as_ref().map(|s| s.at))
    }

    /// Deepest layer any hook touches.
    pub(crate) fn last_layer(&self) -> Option<usize> {
        self.hookpoints().map(CheckedHookpoint::layer).max()
    }

    pub(crate) fn apply(
        &self,
        at: Hookpoint,
        x: Tensor<B, 3>,
        captured: &mut Vec<(Hookpoint, Tensor<B, 3>)>,
    ) -> Result<Tensor<B, 3>> {
        if self.capture.iter().any(|c| c.hookpoint() == at) {
            captured.push((at, x.clone()));
        }
        match &self.splice {
            Some(s) if s.at.hookpoint() == at => s.replace(x),
            _ => Ok(x),
        }
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
        let late: Hookpoint = "layers.28".parse().expect("parses");
        assert!(matches!(late.within(28), Err(Error::Hookpoint { .. })));
        let last = Hookpoint::Mlp(27).within(28).expect("in range");
        assert_eq!((last.layer(), last.num_layers(), last.to_string()), (27, 28, "layers.27.mlp".to_string()));
        assert!(last.check_depth(28).is_ok() && last.check_depth(27).is_err());
    }
}

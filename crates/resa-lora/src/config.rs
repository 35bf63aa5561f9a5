//! `adapter_config.json`: the subset of PEFT's `LoraConfig` this crate implements.

use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The config file of a PEFT adapter folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The weights file of a PEFT adapter folder.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The seven linear layers of a Qwen2 decoder layer (the reference's default targets).
pub const ALL_LINEAR: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Which modules get an adapter: PEFT's `target_modules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    /// Module names; a module matches when its full name equals one or ends in `.NAME`.
    Names(Vec<String>),
    /// A regular expression the full module name must match entirely (PEFT's string form).
    Regex(String),
}

/// PEFT's `layers_to_transform`: one layer index or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Layers {
    /// One layer.
    One(usize),
    /// Several layers.
    Many(Vec<usize>),
}

impl Layers {
    fn contains(&self, l: usize) -> bool {
        match self {
            Layers::One(x) => *x == l,
            Layers::Many(v) => v.contains(&l),
        }
    }
}

/// A LoRA configuration, read from and written to PEFT's `adapter_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Always `"LORA"`.
    #[serde(default = "lora")]
    pub peft_type: String,
    /// `"CAUSAL_LM"` for the adapters this crate writes.
    #[serde(default)]
    pub task_type: Option<String>,
    /// Rank.
    pub r: usize,
    /// Scaling numerator: scale = alpha / r (or alpha / √r with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the adapter input during training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Modules to adapt.
    pub target_modules: Targets,
    /// Only these decoder layers (all when `None`).
    #[serde(default)]
    pub layers_to_transform: Option<Layers>,
    /// Must be `"none"` (no bias training).
    #[serde(default = "none")]
    pub bias: String,
    /// rsLoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
    /// The base model the adapter was trained on (informational).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// PEFT writes `true` for saved adapters.
    #[serde(default)]
    pub inference_mode: bool,
    /// Other PEFT keys, checked for features this crate does not implement.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

fn lora() -> String {
    "LORA".into()
}
fn none() -> String {
    "none".into()
}

/// PEFT options that change what an adapter computes; an adapter using any is refused.
const UNSUPPORTED: [&str; 12] = [
    "use_dora",
    "lora_bias",
    "fan_in_fan_out",
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
    "alora_invocation_tokens",
    "use_qalora",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "exclude_modules",
];

impl LoraConfig {
    /// A configuration with PEFT's defaults for everything but rank, alpha, dropout and targets.
    pub fn new(r: usize, lora_alpha: f64, lora_dropout: f64, targets: &[&str]) -> Self {
        LoraConfig {
            peft_type: lora(),
            task_type: Some("CAUSAL_LM".into()),
            r,
            lora_alpha,
            lora_dropout,
            target_modules: Targets::Names(targets.iter().map(|s| s.to_string()).collect()),
            layers_to_transform: None,
            bias: none(),
            use_rslora: false,
            base_model_name_or_path: None,
            inference_mode: true,
            other: serde_json::Map::new(),
        }
    }

    /// The reference's Stage II adapter: r 32, alpha 128, dropout 0.05, all seven linear layers.
    pub fn reference() -> Self {
        Self::new(32, 128.0, 0.05, &ALL_LINEAR)
    }

    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora { self.lora_alpha / (self.r as f64).sqrt() } else { self.lora_alpha / self.r as f64 }
    }

    /// Checks the values; `origin` names the file in errors.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::Config { path: origin.to_path_buf(), field: field.into(), message })
        };
        if self.peft_type != "LORA" {
            return bad("peft_type", format!("expected \"LORA\", found {:?}", self.peft_type));
        }
        if self.r == 0 {
            return bad("r", "the rank must be at least 1".into());
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return bad("lora_alpha", format!("must be positive, found {}", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad("lora_dropout", format!("must be in [0, 1), found {}", self.lora_dropout));
        }
        if self.bias != "none" {
            return bad("bias", format!("only \"none\" is supported, found {:?}", self.bias));
        }
        match &self.target_modules {
            Targets::Names(v) if v.is_empty() => return bad("target_modules", "is empty".into()),
            Targets::Regex(r) => {
                if let Err(e) = Regex::new(&format!("^(?:{r})$")) {
                    return bad("target_modules", format!("invalid regular expression: {e}"));
                }
            }
            _ => {}
        }
        for key in UNSUPPORTED {
            if let Some(v) = self.other.get(key)
                && !is_falsy(v)
            {
                return bad(key, format!("is set ({v}); this option is not supported"));
            }
        }
        if let Some(v) = self.other.get("layers_pattern")
            && !is_falsy(v)
            && v != &serde_json::json!("layers")
            && v != &serde_json::json!(["layers"])
        {
            return bad("layers_pattern", format!("only \"layers\" is supported, found {v}"));
        }
        Ok(())
    }

    /// Reads and validates `adapter_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: LoraConfig = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            field: json_field(&e.to_string()),
            message: e.to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The JSON PEFT reads (its usual keys, unsupported options at their neutral values).
    pub fn to_json(&self) -> Result<String> {
        let mut v = serde_json::to_value(self).map_err(|e| Error::State(e.to_string()))?;
        if let serde_json::Value::Object(map) = &mut v {
            for (k, neutral) in [
                ("fan_in_fan_out", serde_json::json!(false)),
                ("use_dora", serde_json::json!(false)),
                ("modules_to_save", serde_json::Value::Null),
                ("rank_pattern", serde_json::json!({})),
                ("alpha_pattern", serde_json::json!({})),
                ("init_lora_weights", serde_json::json!(true)),
                ("layers_pattern", serde_json::Value::Null),
                ("revision", serde_json::Value::Null),
            ] {
                map.entry(k).or_insert(neutral);
            }
        }
        serde_json::to_string_pretty(&v).map_err(|e| Error::State(e.to_string()))
    }

    /// Whether the module named `key` (e.g. `model.layers.3.self_attn.q_proj`) gets an
    /// adapter, by PEFT's rules (names: equal or suffix after a dot; regex: full match;
    /// then `layers_to_transform` on the first `.N.` index).
    pub fn matches(&self, key: &str) -> bool {
        let found = match &self.target_modules {
            Targets::Names(v) => v.iter().any(|t| key == t || key.ends_with(&format!(".{t}"))),
            Targets::Regex(r) => Regex::new(&format!("^(?:{r})$")).is_ok_and(|re| re.is_match(key)),
        };
        if !found {
            return false;
        }
        match (&self.layers_to_transform, &self.target_modules) {
            (Some(layers), Targets::Names(_)) => layer_index(key).is_some_and(|l| layers.contains(l)),
            _ => true,
        }
    }
}

fn is_falsy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Bool(b) => !b,
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Number(_) => false,
    }
}

/// The layer index of `model.layers.N.…`.
fn layer_index(key: &str) -> Option<usize> {
    let rest = key.split_once("layers.")?.1;
    rest.split('.').next()?.parse().ok()
}

/// Best effort: the field serde complains about (`missing field `r``).
fn json_field(message: &str) -> String {
    message.split('`').nth(1).unwrap_or("(document)").to_string()
}

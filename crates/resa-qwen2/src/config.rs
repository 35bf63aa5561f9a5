//! Model configuration: a serde mirror of Hugging Face `config.json` ([`HfConfig`]) and the
//! validated runtime form the model is built from ([`Qwen2Config`]).
//!
//! `config.json` comes in two styles. Older files (transformers < 4.56) keep `rope_theta` and
//! `torch_dtype` at the top level; newer ones write `rope_parameters.rope_theta` and `dtype`.
//! Both are accepted, unknown keys are ignored, and the result is checked for what this
//! implementation can run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A field that is either one value or a list of values (`eos_token_id` is either).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list of values.
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    /// All values as a vector.
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `rope_parameters` of new-style configs (and `rope_scaling` of old ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HfRopeParameters {
    /// `"default"` is the only type this implementation runs.
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    /// RoPE base frequency.
    #[serde(default)]
    pub rope_theta: Option<f64>,
}

/// Field-for-field mirror of a Qwen2 `config.json`. Every field is optional here; the
/// conversion into [`Qwen2Config`] decides what is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HfConfig {
    /// `"qwen2"` for the models this crate runs.
    #[serde(default)]
    pub model_type: Option<String>,
    /// e.g. `["Qwen2ForCausalLM"]`.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Vocabulary size (rows of `embed_tokens`).
    pub vocab_size: Option<usize>,
    /// Width of the residual stream.
    pub hidden_size: Option<usize>,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: Option<usize>,
    /// Number of decoder layers.
    pub num_hidden_layers: Option<usize>,
    /// Number of query heads.
    pub num_attention_heads: Option<usize>,
    /// Number of key/value heads (GQA); defaults to `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// MLP activation; only `"silu"` is supported.
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// Longest position the model was trained for.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// Epsilon of every RMSNorm.
    #[serde(default)]
    pub rms_norm_eps: Option<f64>,
    /// Old style: RoPE base at the top level.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// New style: RoPE parameters.
    #[serde(default)]
    pub rope_parameters: Option<HfRopeParameters>,
    /// Old style: RoPE scaling (must be absent or of type `default`).
    #[serde(default)]
    pub rope_scaling: Option<HfRopeParameters>,
    /// Whether `lm_head` shares `embed_tokens`' weight.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Qwen2's switch for sliding-window attention.
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Window size (ignored unless `use_sliding_window`).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Layers below this index use full attention even with sliding windows on.
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    /// New style: `"full_attention"` or `"sliding_attention"` per layer.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id or ids.
    #[serde(default)]
    pub eos_token_id: Option<OneOrMany<u32>>,
    /// Old style: dtype of the stored weights.
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// New style: dtype of the stored weights.
    #[serde(default)]
    pub dtype: Option<String>,
    /// Attention dropout (must be 0 for inference parity; training never uses it).
    #[serde(default)]
    pub attention_dropout: Option<f64>,
}

impl HfConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), cause: source })
    }
}

/// Validated Qwen2 hyper-parameters. Holds no paths and no devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream (`d_model`).
    pub hidden_size: usize,
    /// Width of the MLP hidden layer.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads; divides `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// Per-head width (even, for rotary embeddings).
    pub head_dim: usize,
    /// Longest position the model was trained for (informational; longer inputs still run).
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Whether the output head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence id, if the config names one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (generation stops on any of them).
    pub eos_token_ids: Vec<u32>,
    /// Stored weight dtype as the config names it (`"bfloat16"`, `"float32"`, ...), if any.
    pub torch_dtype: Option<String>,
}

impl Qwen2Config {
    /// Reads `config.json` (either style) and validates it.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::try_from(HfConfig::from_file(path)?)
    }

    /// A small configuration for tests and examples (random weights).
    pub fn tiny() -> Self {
        Qwen2Config {
            vocab_size: 256,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            tie_word_embeddings: true,
            bos_token_id: None,
            eos_token_ids: vec![],
            torch_dtype: Some("float32".into()),
        }
    }

    /// The benchmarks' model, about 24M parameters: big enough that matrix products
    /// dominate a step, small enough for a CPU (random weights).
    pub fn bench() -> Self {
        Qwen2Config {
            vocab_size: 8192,
            hidden_size: 512,
            intermediate_size: 1408,
            num_hidden_layers: 4,
            num_attention_heads: 8,
            num_key_value_heads: 2,
            head_dim: 64,
            ..Qwen2Config::tiny()
        }
    }

    /// Number of query heads sharing one key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// The old-style (`rope_theta`, `torch_dtype` at the top level) `config.json` for this
    /// configuration, as transformers writes it for `Qwen2ForCausalLM`.
    pub fn to_hf(&self) -> HfConfig {
        HfConfig {
            model_type: Some("qwen2".into()),
            architectures: Some(vec!["Qwen2ForCausalLM".into()]),
            vocab_size: Some(self.vocab_size),
            hidden_size: Some(self.hidden_size),
            intermediate_size: Some(self.intermediate_size),
            num_hidden_layers: Some(self.num_hidden_layers),
            num_attention_heads: Some(self.num_attention_heads),
            num_key_value_heads: Some(self.num_key_value_heads),
            head_dim: (self.head_dim * self.num_attention_heads != self.hidden_size).then_some(self.head_dim),
            hidden_act: Some("silu".into()),
            max_position_embeddings: Some(self.max_position_embeddings),
            rms_norm_eps: Some(self.rms_norm_eps),
            rope_theta: Some(self.rope_theta),
            tie_word_embeddings: Some(self.tie_word_embeddings),
            use_sliding_window: Some(false),
            bos_token_id: self.bos_token_id,
            eos_token_id: match self.eos_token_ids.as_slice() {
                [] => None,
                [one] => Some(OneOrMany::One(*one)),
                many => Some(OneOrMany::Many(many.to_vec())),
            },
            torch_dtype: self.torch_dtype.clone(),
            attention_dropout: Some(0.0),
            ..HfConfig::default()
        }
    }
}

fn required(value: Option<usize>, field: &str) -> Result<usize> {
    match value {
        Some(0) => Err(Error::config(field, "a positive integer", 0)),
        Some(v) => Ok(v),
        None => Err(Error::config(field, "a positive integer", "nothing (field missing)")),
    }
}

impl TryFrom<HfConfig> for Qwen2Config {
    type Error = Error;

    fn try_from(raw: HfConfig) -> Result<Self> {
        if let Some(model_type) = &raw.model_type
            && model_type != "qwen2"
        {
            return Err(Error::config("model_type", "\"qwen2\"", format!("{model_type:?}")));
        }
        let hidden_size = required(raw.hidden_size, "hidden_size")?;
        let num_attention_heads = required(raw.num_attention_heads, "num_attention_heads")?;
        let num_key_value_heads = required(raw.num_key_value_heads.or(raw.num_attention_heads), "num_key_value_heads")?;
        if raw.head_dim.is_none() && hidden_size % num_attention_heads != 0 {
            return Err(Error::config(
                "num_attention_heads",
                format!("a divisor of hidden_size ({hidden_size})"),
                num_attention_heads,
            ));
        }
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(Error::config(
                "num_key_value_heads",
                format!("a divisor of num_attention_heads ({num_attention_heads})"),
                num_key_value_heads,
            ));
        }
        let head_dim = required(raw.head_dim.or(Some(hidden_size / num_attention_heads)), "head_dim")?;
        if head_dim % 2 != 0 {
            return Err(Error::config("head_dim", "an even number (rotary embeddings)", head_dim));
        }
        let act = raw.hidden_act.as_deref().unwrap_or("silu");
        if act != "silu" {
            return Err(Error::config("hidden_act", "\"silu\"", format!("{act:?}")));
        }
        if raw.use_sliding_window == Some(true) {
            let window = raw.sliding_window.map_or("null".to_string(), |w| w.to_string());
            return Err(Error::config(
                "use_sliding_window",
                "false (sliding-window attention is not implemented)",
                format!("true (sliding_window = {window})"),
            ));
        }
        if let Some(types) = &raw.layer_types
            && let Some((i, t)) = types.iter().enumerate().find(|(_, t)| *t != "full_attention")
        {
            return Err(Error::config(
                format!("layer_types[{i}]"),
                "\"full_attention\" (sliding-window attention is not implemented)",
                format!("{t:?}"),
            ));
        }
        for (field, rope) in
            [("rope_parameters.rope_type", &raw.rope_parameters), ("rope_scaling.type", &raw.rope_scaling)]
        {
            if let Some(kind) = rope.as_ref().and_then(|r| r.rope_type.as_deref())
                && kind != "default"
            {
                return Err(Error::config(field, "\"default\" (no RoPE scaling)", format!("{kind:?}")));
            }
        }
        let rope_theta = raw.rope_parameters.as_ref().and_then(|r| r.rope_theta).or(raw.rope_theta).unwrap_or(10000.0);
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(Error::config("rope_theta", "a positive number", rope_theta));
        }
        let rms_norm_eps = raw.rms_norm_eps.unwrap_or(1e-6);
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(Error::config("rms_norm_eps", "a positive number", rms_norm_eps));
        }
        Ok(Qwen2Config {
            vocab_size: required(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: required(raw.intermediate_size, "intermediate_size")?,
            num_hidden_layers: required(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(32768),
            rms_norm_eps,
            rope_theta,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            bos_token_id: raw.bos_token_id,
            eos_token_ids: raw.eos_token_id.map(|e| e.to_vec()).unwrap_or_default(),
            torch_dtype: raw.dtype.or(raw.torch_dtype),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Qwen2Config> {
        Qwen2Config::try_from(serde_json::from_str::<HfConfig>(json).expect("valid json"))
    }

    const OLD: &str = r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":100,
        "hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"hidden_act":"silu","rope_theta":1000.0,"rms_norm_eps":1e-6,
        "tie_word_embeddings":false,"torch_dtype":"bfloat16","use_sliding_window":false,
        "sliding_window":null,"eos_token_id":[1,2],"bos_token_id":0,"some_new_key":42}"#;

    #[test]
    fn old_style() {
        let c = parse(OLD).expect("parses");
        assert_eq!(c.head_dim, 8);
        assert_eq!(c.rope_theta, 1000.0);
        assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert_eq!(c.kv_groups(), 2);
    }

    #[test]
    fn new_style() {
        let c = parse(
            r#"{"model_type":"qwen2","vocab_size":100,"hidden_size":32,"intermediate_size":64,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4,
            "rope_parameters":{"rope_type":"default","rope_theta":5000.0},"dtype":"float32",
            "layer_types":["full_attention","full_attention"],"eos_token_id":7}"#,
        )
        .expect("parses");
        assert_eq!(c.rope_theta, 5000.0);
        assert_eq!(c.torch_dtype.as_deref(), Some("float32"));
        assert_eq!(c.eos_token_ids, vec![7]);
    }

    #[test]
    fn round_trip_through_hf() {
        let c = parse(OLD).expect("parses");
        let back = Qwen2Config::try_from(c.to_hf()).expect("round trip");
        assert_eq!(back, c);
    }

    fn field_of(err: Error) -> String {
        match err {
            Error::Config { field, .. } => field,
            other => panic!("expected Error::Config, got {other:?}"),
        }
    }

    #[test]
    fn rejects_what_cannot_run() {
        let cases = [
            (OLD.replace("\"silu\"", "\"gelu\""), "hidden_act"),
            (OLD.replace("\"num_attention_heads\":4", "\"num_attention_heads\":5"), "num_attention_heads"),
            (OLD.replace("\"num_key_value_heads\":2", "\"num_key_value_heads\":3"), "num_key_value_heads"),
            (OLD.replace("\"use_sliding_window\":false", "\"use_sliding_window\":true"), "use_sliding_window"),
            (OLD.replace("\"hidden_size\":32,", ""), "hidden_size"),
            (OLD.replace("\"qwen2\"", "\"llama\""), "model_type"),
            (OLD.replace("\"rope_theta\":1000.0", "\"rope_scaling\":{\"type\":\"yarn\"}"), "rope_scaling.type"),
        ];
        for (json, field) in cases {
            assert_eq!(field_of(parse(&json).expect_err(field)), field);
        }
        let sliding = OLD.replace("\"some_new_key\":42", "\"layer_types\":[\"full_attention\",\"sliding_attention\"]");
        assert_eq!(field_of(parse(&sliding).expect_err("sliding")), "layer_types[1]");
    }
}

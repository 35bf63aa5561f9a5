//! The model's tokenizer (`tokenizer.json`, through the `tokenizers` crate) and its chat
//! template (from `tokenizer_config.json`, rendered with minijinja the way transformers'
//! `apply_chat_template` renders it with Jinja2).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: "user".into(), content: content.into() }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage { role: "system".into(), content: content.into() }
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage { role: "assistant".into(), content: content.into() }
    }
}

/// A special token in `tokenizer_config.json`: a plain string or an `AddedToken` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TokenField {
    Plain(String),
    Added { content: String },
}

impl TokenField {
    fn content(&self) -> &str {
        match self {
            TokenField::Plain(s) | TokenField::Added { content: s } => s,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TokenizerConfigFile {
    #[serde(default)]
    chat_template: Option<serde_json::Value>,
    #[serde(default)]
    bos_token: Option<TokenField>,
    #[serde(default)]
    eos_token: Option<TokenField>,
    #[serde(default)]
    pad_token: Option<TokenField>,
}

/// Tokenizer plus chat template and special tokens of a model folder.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    config_path: Option<PathBuf>,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` and, when present, `tokenizer_config.json` from a model folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = dir.join("tokenizer_config.json");
        Self::from_files(dir.join("tokenizer.json"), config.is_file().then_some(config.as_path()))
    }

    /// Loads a `tokenizer.json` and an optional `tokenizer_config.json`.
    pub fn from_files(tokenizer_json: impl AsRef<Path>, tokenizer_config: Option<&Path>) -> Result<Self> {
        let path = tokenizer_json.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(Error::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer.json not found"),
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::Tokenizer { path: path.clone(), message: e.to_string() })?;
        let cfg = match tokenizer_config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                serde_json::from_str::<TokenizerConfigFile>(&text)
                    .map_err(|source| Error::Json { path: p.to_path_buf(), cause: source })?
            }
            None => TokenizerConfigFile::default(),
        };
        let chat_template = match cfg.chat_template {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            // A list of named templates: use the one named "default".
            Some(serde_json::Value::Array(list)) => list.iter().find_map(|t| {
                (t.get("name")?.as_str()? == "default").then(|| t.get("template")?.as_str().map(str::to_string))?
            }),
            Some(_) => None,
        };
        Ok(Tokenizer {
            inner,
            path,
            config_path: tokenizer_config.map(Path::to_path_buf),
            chat_template,
            bos_token: cfg.bos_token.map(|t| t.content().to_string()),
            eos_token: cfg.eos_token.map(|t| t.content().to_string()),
            pad_token: cfg.pad_token.map(|t| t.content().to_string()),
        })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes text; `add_special_tokens` runs the post-processor (R1-Distill adds BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// Decodes ids; `skip_special_tokens` drops tokens marked special (BOS, EOS, padding).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// The id of a token string (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// BOS text from `tokenizer_config.json`.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// EOS text from `tokenizer_config.json`.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// EOS id, if the EOS token is known and in the vocabulary.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// BOS id, if known.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// Padding id (the pad token, else EOS), if known.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_token.as_deref().and_then(|t| self.token_to_id(t)).or_else(|| self.eos_token_id())
    }

    /// The raw chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Renders the chat template as transformers does (`tokenize=False`).
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let source = self.config_path.clone().unwrap_or_else(|| self.path.clone());
        let template = self.chat_template.as_deref().ok_or_else(|| Error::ChatTemplate {
            path: source.clone(),
            message: "the tokenizer has no chat_template".into(),
        })?;
        render_chat_template(template, messages, add_generation_prompt, self.bos_token(), self.eos_token())
            .map_err(|message| Error::ChatTemplate { path: source, message })
    }

    /// Renders the chat template and tokenises the text without adding special tokens
    /// again (the template writes BOS itself), as `apply_chat_template(tokenize=True)` does.
    pub fn encode_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        self.encode(&text, false)
    }
}

/// Renders a Hugging Face chat template with minijinja. Python string methods used by
/// templates (`split`, `strip`, `startswith`, ...) come from minijinja-contrib's `pycompat`.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> std::result::Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    // transformers renders with trim_blocks and lstrip_blocks.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_template("chat", template).map_err(|e| e.to_string())?;
    let tmpl = env.get_template("chat").map_err(|e| e.to_string())?;
    tmpl.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token.unwrap_or(""),
        eos_token => eos_token.unwrap_or(""),
    })
    .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_simple_template() {
        let t = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content.strip() }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}";
        let out = render_chat_template(t, &[ChatMessage::user(" hi ")], true, Some("<s>"), None).expect("renders");
        assert_eq!(out, "<s><user>hi<a>");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = "{{ raise_exception('no system role') }}";
        let err = render_chat_template(t, &[], false, None, None).expect_err("raises");
        assert!(err.contains("no system role"), "{err}");
    }
}
